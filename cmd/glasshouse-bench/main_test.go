package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/backend/fake"
	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/server"
	"glasshouse.dev/glasshouse/store/sqlite"
)

// newServer serves a real server on the fake backend; wrap may intercept
// its responses.
func newServer(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	fb := fake.New(fake.Config{Isolation: execution.IsolationMicroVM, Scripts: map[string]fake.Script{
		"print(2+2)": func(p *fake.Proc) fake.Exit { fmt.Fprint(p.Stdout, "4\n"); return fake.Exit{} },
	}})
	srv, err := server.New(server.Config{Backends: []execution.Backend{fb}, Store: st, MaxConcurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	h := srv.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(func() {
		hs.Close()
		srv.Shutdown(context.Background())
		st.Close()
	})
	return hs.URL
}

func TestBenchAgainstServer(t *testing.T) {
	url := newServer(t, nil)
	s := run(context.Background(), config{mode: "server", url: url, code: "print(2+2)", profile: "off", expect: "4\n",
		clients: 4, count: 40, verify: true, timeout: time.Minute})
	if s.Requests != 40 || s.OK != 40 || len(s.Errors) != 0 || s.Verified != 40 || s.VerifyErrors != nil {
		t.Fatalf("summary %+v", s)
	}
	if s.P50MS <= 0 || s.P99MS < s.P50MS || s.Throughput <= 0 || s.Failures["none"] != 40 {
		t.Fatalf("figures %+v", s)
	}
	// A wrong expectation is an error, and its receipts still verify.
	s = run(context.Background(), config{mode: "server", url: url, code: "print(2+2)", profile: "off", expect: "5\n",
		clients: 2, count: 4, verify: true, timeout: time.Minute})
	if s.Errors["unexpected stdout"] != 4 || s.Verified != 4 {
		t.Fatalf("summary %+v", s)
	}
	// Statuses are counted: code the fake backend cannot run is a 503.
	s = run(context.Background(), config{mode: "server", url: url, code: "nope", profile: "off",
		clients: 2, count: 4, verify: true, timeout: time.Minute})
	if s.Errors["status 503"] != 4 || s.OK != 0 {
		t.Fatalf("summary %+v", s)
	}
}

func TestBenchCatchesTamperedReceipts(t *testing.T) {
	url := newServer(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasPrefix(r.URL.Path, "/receipts/") {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			body := bytes.Replace(rec.Body.Bytes(), []byte(`"exit_code":0`), []byte(`"exit_code":1`), 1)
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	})
	s := run(context.Background(), config{mode: "server", url: url, code: "print(2+2)", profile: "off", expect: "4\n",
		clients: 2, count: 6, verify: true, timeout: time.Minute})
	if s.Verified != 0 || s.VerifyErrors["verify: receipt digest does not match its content"] != 6 {
		t.Fatalf("tampered receipts: verified %d, errors %v", s.Verified, s.VerifyErrors)
	}
}

func TestProcCPU(t *testing.T) {
	total, children := procCPU(1)
	if total < children || total < 0 {
		t.Fatalf("procCPU(1) = %v, %v", total, children)
	}
	if total, _ := procCPU(0); total != 0 {
		t.Fatal("procCPU(0) != 0")
	}
}
