package sqlite

import (
	"context"
	"database/sql"
)

// BumpVersion sets the database's schema version past this build's, as a
// newer Glasshouse would.
func BumpVersion(path string) error {
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.ExecContext(context.Background(), "PRAGMA user_version = 99")
	return err
}
