package store

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// EncodeCursor returns the opaque cursor of the page that continues after
// the run (startedAt, id) in newest-first order.
func EncodeCursor(startedAt time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(startedAt.UnixNano(), 10) + "/" + id))
}

// DecodeCursor parses a cursor made by EncodeCursor. Cursors come from
// clients, so every part is checked; errors wrap ErrInvalid.
func DecodeCursor(s string) (startedAt time.Time, id string, err error) {
	if len(s) > 512 {
		return time.Time{}, "", fmt.Errorf("%w: cursor is %d bytes, the limit is 512", ErrInvalid, len(s))
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s)
	// The decoder skips newlines; re-encoding catches them, so a cursor has
	// exactly one spelling.
	if err != nil || base64.RawURLEncoding.EncodeToString(raw) != s {
		return time.Time{}, "", fmt.Errorf("%w: cursor is not base64url", ErrInvalid)
	}
	ns, id, ok := strings.Cut(string(raw), "/")
	if !ok || id == "" || len(id) > 128 || !utf8.ValidString(id) || strings.ContainsFunc(id, unicode.IsControl) {
		return time.Time{}, "", fmt.Errorf("%w: cursor is malformed", ErrInvalid)
	}
	n, err := strconv.ParseInt(ns, 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != ns {
		return time.Time{}, "", fmt.Errorf("%w: cursor is malformed", ErrInvalid)
	}
	return time.Unix(0, n), id, nil
}
