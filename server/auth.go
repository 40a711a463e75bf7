package server

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
)

// Token file bounds.
const (
	MinTokenBytes  = 16
	MaxTokenBytes  = 256
	MaxTenantBytes = 64
	MaxTokens      = 10000
	maxTokensFile  = 4 << 20
)

// ErrTokens means a tokens file is malformed; the message names the line.
var ErrTokens = errors.New("invalid tokens file")

// Tokens maps bearer tokens to tenants. Only SHA-256 hashes of the tokens
// are kept, and a lookup compares against every entry in constant time, so
// neither memory dumps nor timing reveal a token. Safe for concurrent use.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	hash   [sha256.Size]byte
	tenant string
}

// ParseTokens parses a tokens file: one "TOKEN TENANT" pair per line,
// separated by spaces or tabs; blank lines and lines starting with '#' are
// ignored. Tokens are 16..256 printable ASCII characters without spaces;
// tenants are 1..64 of [A-Za-z0-9._-]. A token may appear once; a tenant
// may have many tokens.
func ParseTokens(data []byte) (*Tokens, error) {
	if len(data) > maxTokensFile {
		return nil, fmt.Errorf("%w: %d bytes exceeds the limit of %d", ErrTokens, len(data), maxTokensFile)
	}
	t := &Tokens{}
	seen := map[[sha256.Size]byte]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxTokensFile)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return nil, fmt.Errorf("%w: line %d: want \"TOKEN TENANT\", got %d fields", ErrTokens, line, len(fields))
		}
		token, tenant := fields[0], fields[1]
		if err := checkToken(token); err != nil {
			return nil, fmt.Errorf("%w: line %d: token %v", ErrTokens, line, err)
		}
		if err := CheckTenant(tenant); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrTokens, line, err)
		}
		h := sha256.Sum256([]byte(token))
		if prev, dup := seen[h]; dup {
			return nil, fmt.Errorf("%w: line %d: token already given on line %d", ErrTokens, line, prev)
		}
		seen[h] = line
		if len(t.entries) == MaxTokens {
			return nil, fmt.Errorf("%w: more than %d tokens", ErrTokens, MaxTokens)
		}
		t.entries = append(t.entries, tokenEntry{hash: h, tenant: tenant})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTokens, err)
	}
	if len(t.entries) == 0 {
		return nil, fmt.Errorf("%w: no tokens", ErrTokens)
	}
	return t, nil
}

// LoadTokens reads and parses a tokens file. It refuses a file that other
// users may write.
func LoadTokens(path string) (*Tokens, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read tokens: %w", err)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("%w: %s is writable by group or others (mode %v)", ErrTokens, path, fi.Mode().Perm())
	}
	if fi.Size() > maxTokensFile {
		return nil, fmt.Errorf("%w: %d bytes exceeds the limit of %d", ErrTokens, fi.Size(), maxTokensFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read tokens: %w", err)
	}
	return ParseTokens(data)
}

func checkToken(tok string) error {
	if len(tok) < MinTokenBytes || len(tok) > MaxTokenBytes {
		return fmt.Errorf("is %d bytes; want %d..%d", len(tok), MinTokenBytes, MaxTokenBytes)
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c > '~' {
			return fmt.Errorf("has a byte 0x%02x outside printable ASCII", c)
		}
	}
	return nil
}

// CheckTenant checks a tenant name: 1..64 of [A-Za-z0-9._-].
func CheckTenant(s string) error {
	if s == "" || len(s) > MaxTenantBytes {
		return fmt.Errorf("tenant %q must be 1..%d bytes", s, MaxTenantBytes)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("tenant %q may only hold A-Z a-z 0-9 . _ -", s)
		}
	}
	return nil
}

// Len returns the number of tokens.
func (t *Tokens) Len() int { return len(t.entries) }

// Tenant returns the tenant of token. It touches every entry whatever the
// token, so its time does not depend on which entry (if any) matches.
func (t *Tokens) Tenant(token string) (string, bool) {
	h := sha256.Sum256([]byte(token))
	found := -1
	for i := range t.entries {
		if subtle.ConstantTimeCompare(h[:], t.entries[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	return t.entries[found].tenant, true
}

// authenticate returns the request's tenant.
func (s *Server) authenticate(r *http.Request) (string, *Error) {
	if s.cfg.Tokens == nil {
		return LocalTenant, nil
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", errorf(http.StatusUnauthorized, "missing bearer token (Authorization: Bearer TOKEN)")
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return "", errorf(http.StatusUnauthorized, "authorization must be \"Bearer TOKEN\"")
	}
	tenant, ok := s.cfg.Tokens.Tenant(strings.TrimSpace(tok))
	if !ok {
		return "", errorf(http.StatusUnauthorized, "invalid token")
	}
	return tenant, nil
}
