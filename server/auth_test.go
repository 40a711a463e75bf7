package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseTokens(t *testing.T) {
	tok, err := ParseTokens([]byte("# comment\n\n  tok-0123456789abcdef   alice  \ntok-fedcba9876543210\tbob\ntok-aaaaaaaaaaaaaaaa alice\n"))
	if err != nil {
		t.Fatal(err)
	}
	if tok.Len() != 3 {
		t.Fatalf("Len = %d", tok.Len())
	}
	for token, want := range map[string]string{"tok-0123456789abcdef": "alice", "tok-fedcba9876543210": "bob", "tok-aaaaaaaaaaaaaaaa": "alice"} {
		if got, ok := tok.Tenant(token); !ok || got != want {
			t.Errorf("Tenant(%q) = %q, %v", token, got, ok)
		}
	}
	for _, bad := range []string{"", "tok-0123456789abcde alice", "x", "tok-0123456789abcdeF"} {
		if _, ok := tok.Tenant(bad); ok {
			t.Errorf("Tenant(%q) matched", bad)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"", "no tokens"},
		{"# only comments\n", "no tokens"},
		{"short alice\n", "line 1: token is 5 bytes"},
		{"tok-0123456789abcdef\n", "line 1: want"},
		{"tok-0123456789abcdef alice extra\n", "got 3 fields"},
		{"tok-0123456789abcdef al/ice\n", "may only hold"},
		{"tok-0123456789abcdef alice\ntok-0123456789abcdef bob\n", "line 2: token already given on line 1"},
		{"tok-0123456789abcd\xffef alice\n", "outside printable ASCII"},
		{"tok-0123456789abcdef " + strings.Repeat("t", 65) + "\n", "1..64"},
	} {
		_, err := ParseTokens([]byte(tc.in))
		if !errors.Is(err, ErrTokens) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseTokens(%q) = %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestLoadTokensRefusesWritableFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(p, []byte("tok-0123456789abcdef alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTokens(p); err != nil {
		t.Fatalf("LoadTokens(0600) = %v", err)
	}
	if err := os.Chmod(p, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTokens(p); !errors.Is(err, ErrTokens) {
		t.Fatalf("LoadTokens(0666) = %v, want refusal", err)
	}
}

func FuzzParseTokens(f *testing.F) {
	f.Add([]byte("tok-0123456789abcdef alice\n# c\n\ntok-fedcba9876543210 bob"))
	f.Add([]byte("a b c"))
	f.Add([]byte("\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := ParseTokens(data)
		if err != nil {
			if !errors.Is(err, ErrTokens) {
				t.Fatalf("error %v does not wrap ErrTokens", err)
			}
			return
		}
		// Every token in the file resolves to its tenant.
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) == 2 && !strings.HasPrefix(strings.TrimSpace(line), "#") {
				if got, ok := tok.Tenant(f[0]); !ok || got != f[1] {
					t.Fatalf("Tenant(%q) = %q, %v; want %q", f[0], got, ok, f[1])
				}
			}
		}
	})
}

func TestIsLoopback(t *testing.T) {
	ctx := context.Background()
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:8080": true, "localhost:8080": true, "127.1.2.3:1": true,
		":8080": false, "0.0.0.0:8080": false, "[::]:8080": false, "10.0.0.1:8080": false, "192.0.2.1:80": false,
	} {
		got, err := IsLoopback(ctx, addr)
		if err != nil || got != want {
			t.Errorf("IsLoopback(%q) = %v, %v; want %v", addr, got, err, want)
		}
	}
	if _, err := IsLoopback(ctx, "no-port"); err == nil {
		t.Error("IsLoopback without a port succeeded")
	}
}
