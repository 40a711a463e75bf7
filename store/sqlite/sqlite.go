// Package sqlite is the embedded store.Store: one SQLite database (pure Go,
// modernc.org/sqlite) in WAL mode inside a data directory.
//
// Every write is one autocommitted statement on a single writer connection,
// so a process killed at any instant leaves either the whole change or none
// of it: receipts completed before a kill -9 are intact after restart, and
// runs begun but not completed are found by InFlight. With the default
// synchronous=NORMAL a committed write survives a crash of the process;
// Synchronous "full" also makes it survive a power loss, at the price of an
// fsync per write.
//
// A Store is safe for concurrent use. The caller must Close it.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"modernc.org/sqlite" // also registers the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

	"glasshouse.dev/glasshouse/store"
)

// FileName is the database's file name inside Config.Dir.
const FileName = "glasshouse.db"

// schemaVersion is the PRAGMA user_version this build writes.
const schemaVersion = 1

// Config configures a store.
type Config struct {
	// Dir is the data directory; it is created (mode 0700) if missing.
	Dir string
	// Synchronous is "normal" (default: durable across process crashes) or
	// "full" (durable across power loss).
	Synchronous string
	// Readers is the number of reader connections; default 4.
	Readers int
	// Logger receives warnings. Nil discards.
	Logger *slog.Logger
}

// Validate checks c.
func (c *Config) Validate() error {
	if c.Dir == "" {
		return fmt.Errorf("%w: data directory is empty", store.ErrInvalid)
	}
	switch c.Synchronous {
	case "", "normal", "full":
	default:
		return fmt.Errorf("%w: synchronous %q: want normal or full", store.ErrInvalid, c.Synchronous)
	}
	if c.Readers < 0 || c.Readers > 64 {
		return fmt.Errorf("%w: readers %d is outside [0, 64]", store.ErrInvalid, c.Readers)
	}
	return nil
}

// Store is the SQLite store.
type Store struct {
	w, r   *sql.DB
	path   string
	log    *slog.Logger
	closed atomic.Bool
	// The statements every run executes, prepared once: compiling the SQL
	// cost more CPU than executing it.
	begin, complete, get *sql.Stmt
}

// SQL of the statements prepared at Open.
const (
	beginSQL    = `INSERT INTO runs (id, tenant, node, state, backend, started_ns, draft) VALUES (?, ?, ?, 'running', ?, ?, ?)`
	completeSQL = `
INSERT INTO runs (id, tenant, node, state, backend, started_ns, finished_ns, failure, verdict, digest, receipt)
VALUES (?1, ?2, '', 'done', ?3, ?4, ?5, ?6, ?7, ?8, ?9)
ON CONFLICT (id) DO UPDATE SET
	state = 'done', backend = ?3, started_ns = ?4, finished_ns = ?5,
	failure = ?6, verdict = ?7, digest = ?8, receipt = ?9, draft = NULL
WHERE runs.state = 'running' AND runs.tenant = ?2`
	getSQL = `SELECT ` + summaryColumns + `, receipt FROM runs WHERE id = ? AND tenant = ?`
)

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the database in cfg.Dir.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Synchronous == "" {
		cfg.Synchronous = "normal"
	}
	if cfg.Readers == 0 {
		cfg.Readers = 4
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path := filepath.Join(cfg.Dir, FileName)
	// Create the file with owner-only permissions before SQLite does, so
	// receipts are never world-readable.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open database file: %w", err)
	}
	f.Close()

	pragmas := "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(" + cfg.Synchronous + ")"
	w, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_txlock=immediate&"+pragmas)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	s := &Store{w: w, path: path, log: log}
	if err := s.migrate(ctx); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", "file:"+path+"?_pragma=query_only(1)&"+pragmas)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open database: %w", err)
	}
	r.SetMaxOpenConns(cfg.Readers)
	r.SetMaxIdleConns(cfg.Readers)
	s.r = r
	if err := s.prepare(ctx); err != nil {
		w.Close()
		r.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) prepare(ctx context.Context) error {
	var err error
	if s.begin, err = s.w.PrepareContext(ctx, beginSQL); err != nil {
		return fmt.Errorf("prepare statement: %w", err)
	}
	if s.complete, err = s.w.PrepareContext(ctx, completeSQL); err != nil {
		return fmt.Errorf("prepare statement: %w", err)
	}
	if s.get, err = s.r.PrepareContext(ctx, getSQL); err != nil {
		return fmt.Errorf("prepare statement: %w", err)
	}
	return nil
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.path }

func (s *Store) migrate(ctx context.Context) error {
	var mode string
	if err := s.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("database is in %s mode, not WAL", mode)
	}
	var v int
	if err := s.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	switch {
	case v == schemaVersion:
		return nil
	case v > schemaVersion:
		return fmt.Errorf("database schema version %d is newer than this build's %d", v, schemaVersion)
	}
	const ddl = `
CREATE TABLE IF NOT EXISTS runs (
	id          TEXT PRIMARY KEY,
	tenant      TEXT NOT NULL,
	node        TEXT NOT NULL,
	state       TEXT NOT NULL CHECK (state IN ('running', 'done')),
	backend     TEXT NOT NULL,
	started_ns  INTEGER NOT NULL,
	finished_ns INTEGER NOT NULL DEFAULT 0,
	failure     TEXT NOT NULL DEFAULT '',
	verdict     TEXT NOT NULL DEFAULT '',
	digest      TEXT NOT NULL DEFAULT '',
	draft       BLOB,
	receipt     BLOB
) STRICT;
CREATE INDEX IF NOT EXISTS runs_by_tenant ON runs (tenant, state, started_ns DESC, id DESC);
CREATE INDEX IF NOT EXISTS runs_by_state ON runs (state, node);
CREATE INDEX IF NOT EXISTS runs_by_finish ON runs (state, finished_ns);
PRAGMA user_version = 1;`
	if _, err := s.w.ExecContext(ctx, ddl); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	return nil
}

func (s *Store) check() error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return nil
}

// Begin implements store.Store.
func (s *Store) Begin(ctx context.Context, p store.Pending) error {
	if err := s.check(); err != nil {
		return err
	}
	if p.ID == "" || p.Tenant == "" {
		return fmt.Errorf("%w: begin needs an id and a tenant", store.ErrInvalid)
	}
	_, err := s.begin.ExecContext(ctx, p.ID, p.Tenant, p.Node, p.Backend, p.StartedAt.UnixNano(), p.Draft)
	if err != nil {
		if isConstraint(err) {
			return fmt.Errorf("begin run %s: %w", p.ID, store.ErrExists)
		}
		return fmt.Errorf("begin run %s: %w", p.ID, err)
	}
	return nil
}

// Complete implements store.Store.
func (s *Store) Complete(ctx context.Context, c store.Completed) error {
	if err := s.check(); err != nil {
		return err
	}
	if c.ID == "" || c.Tenant == "" || len(c.Receipt) == 0 {
		return fmt.Errorf("%w: complete needs an id, a tenant and a receipt", store.ErrInvalid)
	}
	res, err := s.complete.ExecContext(ctx, c.ID, c.Tenant, c.Backend, c.StartedAt.UnixNano(), c.FinishedAt.UnixNano(),
		c.Failure, c.Verdict, c.Digest, c.Receipt)
	if err != nil {
		return fmt.Errorf("complete run %s: %w", c.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("complete run %s: %w", c.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("complete run %s: %w", c.ID, store.ErrExists)
	}
	return nil
}

// Abandon implements store.Store.
func (s *Store) Abandon(ctx context.Context, id string) error {
	if err := s.check(); err != nil {
		return err
	}
	res, err := s.w.ExecContext(ctx, `DELETE FROM runs WHERE id = ? AND state = 'running'`, id)
	if err != nil {
		return fmt.Errorf("abandon run %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("abandon run %s: %w", id, store.ErrNotFound)
	}
	return nil
}

const summaryColumns = `id, tenant, state, backend, started_ns, finished_ns, failure, verdict, digest`

func scanSummary(sc interface{ Scan(...any) error }, extra ...any) (store.Summary, error) {
	var sm store.Summary
	var state string
	var started, finished int64
	dest := append([]any{&sm.ID, &sm.Tenant, &state, &sm.Backend, &started, &finished, &sm.Failure, &sm.Verdict, &sm.Digest}, extra...)
	if err := sc.Scan(dest...); err != nil {
		return sm, err
	}
	sm.State = store.State(state)
	sm.StartedAt = time.Unix(0, started)
	if finished != 0 {
		sm.FinishedAt = time.Unix(0, finished)
	}
	return sm, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, tenant, id string) (store.Record, error) {
	if err := s.check(); err != nil {
		return store.Record{}, err
	}
	var rec store.Record
	row := s.get.QueryRowContext(ctx, id, tenant)
	sm, err := scanSummary(row, &rec.Receipt)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Record{}, fmt.Errorf("get run %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Record{}, fmt.Errorf("get run %s: %w", id, err)
	}
	rec.Summary = sm
	return rec, nil
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, tenant string, q store.Query) (store.Page, error) {
	if err := s.check(); err != nil {
		return store.Page{}, err
	}
	if err := q.Validate(); err != nil {
		return store.Page{}, err
	}
	where := []string{"tenant = ?", "state = 'done'"}
	args := []any{tenant}
	if q.Failure != "" {
		where, args = append(where, "failure = ?"), append(args, q.Failure)
	}
	if q.Verdict != "" {
		where, args = append(where, "verdict = ?"), append(args, q.Verdict)
	}
	if !q.Since.IsZero() {
		where, args = append(where, "started_ns >= ?"), append(args, q.Since.UnixNano())
	}
	if q.Cursor != "" {
		t, id, err := store.DecodeCursor(q.Cursor)
		if err != nil {
			return store.Page{}, err
		}
		where = append(where, "(started_ns < ? OR (started_ns = ? AND id < ?))")
		args = append(args, t.UnixNano(), t.UnixNano(), id)
	}
	args = append(args, q.Limit+1)
	rows, err := s.r.QueryContext(ctx, `SELECT `+summaryColumns+` FROM runs WHERE `+strings.Join(where, " AND ")+
		` ORDER BY started_ns DESC, id DESC LIMIT ?`, args...)
	if err != nil {
		return store.Page{}, fmt.Errorf("list runs: %w", err)
	}
	defer rows.Close()
	page := store.Page{Runs: []store.Summary{}}
	for rows.Next() {
		sm, err := scanSummary(rows)
		if err != nil {
			return store.Page{}, fmt.Errorf("list runs: %w", err)
		}
		page.Runs = append(page.Runs, sm)
	}
	if err := rows.Err(); err != nil {
		return store.Page{}, fmt.Errorf("list runs: %w", err)
	}
	if len(page.Runs) > q.Limit {
		page.Runs = page.Runs[:q.Limit]
		last := page.Runs[q.Limit-1]
		page.Next = store.EncodeCursor(last.StartedAt, last.ID)
	}
	return page, nil
}

// InFlight implements store.Store.
func (s *Store) InFlight(ctx context.Context, node string) ([]store.Pending, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	rows, err := s.w.QueryContext(ctx,
		`SELECT id, tenant, node, backend, started_ns, draft FROM runs WHERE state = 'running' AND node = ? ORDER BY started_ns, id`, node)
	if err != nil {
		return nil, fmt.Errorf("list in-flight runs: %w", err)
	}
	defer rows.Close()
	var out []store.Pending
	for rows.Next() {
		var p store.Pending
		var started int64
		if err := rows.Scan(&p.ID, &p.Tenant, &p.Node, &p.Backend, &started, &p.Draft); err != nil {
			return nil, fmt.Errorf("list in-flight runs: %w", err)
		}
		p.StartedAt = time.Unix(0, started)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list in-flight runs: %w", err)
	}
	return out, nil
}

// Prune implements store.Store.
func (s *Store) Prune(ctx context.Context, r store.Retention, now time.Time) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	if r.MaxAge < 0 || r.MaxCount < 0 {
		return 0, fmt.Errorf("%w: retention must not be negative", store.ErrInvalid)
	}
	var total int64
	if r.MaxAge > 0 {
		res, err := s.w.ExecContext(ctx, `DELETE FROM runs WHERE state = 'done' AND finished_ns < ?`, now.Add(-r.MaxAge).UnixNano())
		if err != nil {
			return total, fmt.Errorf("prune by age: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
	}
	if r.MaxCount > 0 {
		res, err := s.w.ExecContext(ctx, `DELETE FROM runs WHERE id IN (
	SELECT id FROM runs WHERE state = 'done' ORDER BY finished_ns DESC, id DESC LIMIT -1 OFFSET ?)`, r.MaxCount)
		if err != nil {
			return total, fmt.Errorf("prune by count: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
	}
	return total, nil
}

// Ping implements store.Store: it reads through a reader connection and
// writes through the writer.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.check(); err != nil {
		return err
	}
	var one int
	if err := s.r.QueryRowContext(ctx, "SELECT 1 FROM sqlite_schema LIMIT 1").Scan(&one); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	// A write transaction that changes nothing proves the writer lock can
	// be taken and the file is writable.
	if _, err := s.w.ExecContext(ctx, "DELETE FROM runs WHERE 0"); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// Close implements store.Store. It checkpoints the WAL into the database.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	var errs []error
	for _, st := range []*sql.Stmt{s.begin, s.complete, s.get} {
		errs = append(errs, st.Close())
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if _, err := s.w.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		s.log.Warn("checkpoint on close failed", "err", err)
	}
	errs = append(errs, s.w.Close())
	return errors.Join(errs...)
}

func isConstraint(err error) bool {
	var se *sqlite.Error
	// Extended codes (SQLITE_CONSTRAINT_PRIMARYKEY) keep the primary code
	// in their low byte.
	return errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
}

// Snapshot writes a consistent copy of the database to path (which must
// not exist) without stopping writers: a backup, or a copy for tests.
func (s *Store) Snapshot(ctx context.Context, path string) error {
	if err := s.check(); err != nil {
		return err
	}
	if _, err := s.w.ExecContext(ctx, "VACUUM INTO ?", path); err != nil {
		return fmt.Errorf("snapshot database: %w", err)
	}
	return nil
}
