package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/backend/fake"
	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/core/receipt/schema"
	"glasshouse.dev/glasshouse/server"
	"glasshouse.dev/glasshouse/store"
	"glasshouse.dev/glasshouse/store/sqlite"
)

// control lets a test steer the scripted workloads.
type control struct {
	started chan struct{} // "block" and "stream" signal here when running
	release chan struct{} // closing it lets "block" and "stream" go on
}

func newControl() *control {
	return &control{started: make(chan struct{}, 64), release: make(chan struct{})}
}

func scripts(ctl *control) map[string]fake.Script {
	wait := func(p *fake.Proc) bool {
		select {
		case <-ctl.release:
			return true
		case <-p.Ctx.Done():
			return false
		}
	}
	return map[string]fake.Script{
		"print(2+2)": func(p *fake.Proc) fake.Exit { fmt.Fprint(p.Stdout, "4\n"); return fake.Exit{} },
		"fail":       func(p *fake.Proc) fake.Exit { fmt.Fprint(p.Stderr, "boom\n"); return fake.Exit{Code: 3} },
		"sleep":      func(p *fake.Proc) fake.Exit { <-p.Ctx.Done(); return fake.Exit{Code: -1, Signal: "SIGKILL"} },
		"env":        func(p *fake.Proc) fake.Exit { fmt.Fprint(p.Stdout, p.Env["FOO"]); return fake.Exit{} },
		"cat":        func(p *fake.Proc) fake.Exit { io.Copy(p.Stdout, p.Stdin); return fake.Exit{} },
		"short": func(p *fake.Proc) fake.Exit {
			select {
			case <-time.After(150 * time.Millisecond):
				fmt.Fprint(p.Stdout, "done\n")
				return fake.Exit{}
			case <-p.Ctx.Done():
				return fake.Exit{Code: -1, Signal: "SIGKILL"}
			}
		},
		"stream": func(p *fake.Proc) fake.Exit {
			fmt.Fprint(p.Stdout, "a\n")
			fmt.Fprint(p.Stderr, "warn\n")
			ctl.started <- struct{}{}
			if !wait(p) {
				return fake.Exit{Code: -1, Signal: "SIGKILL"}
			}
			fmt.Fprint(p.Stdout, "b\n")
			return fake.Exit{}
		},
		"euro": func(p *fake.Proc) fake.Exit {
			p.Stdout.Write([]byte("\xe2\x82"))
			time.Sleep(30 * time.Millisecond)
			p.Stdout.Write([]byte("\xac\n"))
			return fake.Exit{}
		},
		"block": func(p *fake.Proc) fake.Exit {
			ctl.started <- struct{}{}
			if !wait(p) {
				return fake.Exit{Code: -1, Signal: "SIGKILL"}
			}
			fmt.Fprint(p.Stdout, "released\n")
			return fake.Exit{}
		},
	}
}

type env struct {
	t     testing.TB
	srv   *server.Server
	http  *httptest.Server
	store *sqlite.Store
	dir   string
	ctl   *control
	fake  *fake.Backend
}

// newEnv starts a server on a fake backend (isolation microvm, so no
// --allow-unisolated is needed) with a real SQLite store, behind a real
// HTTP listener. mod adjusts the config.
func newEnv(t *testing.T, mod func(*server.Config)) *env {
	t.Helper()
	dir := t.TempDir()
	return newEnvAt(t, dir, mod)
}

func newEnvAt(t testing.TB, dir string, mod func(*server.Config)) *env {
	t.Helper()
	st, err := sqlite.Open(context.Background(), sqlite.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctl := newControl()
	fb := fake.New(fake.Config{Scripts: scripts(ctl), Isolation: execution.IsolationMicroVM})
	cfg := server.Config{
		Backends:       []execution.Backend{fb},
		Store:          st,
		MaxConcurrency: 2,
		Node:           "test",
		ShutdownGrace:  5 * time.Second,
		Limits: server.Limits{
			MaxBodyBytes: 64 << 10, MaxBatchBodyBytes: 256 << 10, MaxBatch: 8,
			MaxCodeBytes: 1024, MaxFiles: 3, MaxFileBytes: 100, MaxFilesBytes: 150,
			MaxEnv: 4, MaxEnvBytes: 200, MaxStdinBytes: 100, MaxTimeout: 10 * time.Second,
			MaxMemoryBytes: 1 << 30, MaxPIDs: 100, MaxCPUMillis: 4000, MaxOutputBytes: 1 << 20,
			MaxPolicyBytes: 100, MaxExpectBytes: 100,
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		st.Close()
		t.Fatalf("server.New: %v", err)
	}
	hs := httptest.NewServer(srv.Handler())
	e := &env{t: t, srv: srv, http: hs, store: st, dir: dir, ctl: ctl, fake: fb}
	t.Cleanup(e.close)
	return e
}

func (e *env) close() {
	select {
	case <-e.ctl.release:
	default:
		close(e.ctl.release)
	}
	e.srv.Shutdown(context.Background())
	e.http.Close()
	e.store.Close()
	if n := e.fake.Live(); n != 0 {
		e.t.Errorf("%d scripted processes still live after shutdown", n)
	}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// apiError is the error body.
type apiError struct {
	Error string          `json:"error"`
	Field string          `json:"field"`
	Limit json.RawMessage `json:"limit"`
}

func (r reply) apiErr(t testing.TB) apiError {
	t.Helper()
	var e apiError
	r.json(t, &e)
	if e.Error == "" {
		t.Fatalf("error body without a message: %s", r.body)
	}
	return e
}

func (e *env) do(method, path, token string, body []byte, hdr ...string) reply {
	e.t.Helper()
	req, err := http.NewRequest(method, e.http.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *env) run(token, body string) (reply, server.RunResponse) {
	e.t.Helper()
	r := e.do("POST", "/run", token, []byte(body))
	var resp server.RunResponse
	if r.status == http.StatusOK {
		r.json(e.t, &resp)
	}
	return r, resp
}

// receipt fetches and fully checks a stored receipt.
func (e *env) receipt(token, id string) *receipt.Receipt {
	e.t.Helper()
	r := e.do("GET", "/receipts/"+id, token, nil)
	if r.status != http.StatusOK {
		e.t.Fatalf("GET receipt %s: %d %s", id, r.status, r.body)
	}
	return checkReceipt(e.t, r.body)
}

func checkReceipt(t testing.TB, b []byte) *receipt.Receipt {
	t.Helper()
	if err := receipt.Verify(b); err != nil {
		t.Fatalf("receipt does not verify: %v\n%s", err, b)
	}
	if err := schema.Validate(b); err != nil {
		t.Fatalf("receipt does not match the schema: %v", err)
	}
	rc, err := receipt.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return rc
}

func newBenchEnv(b *testing.B) *env {
	return newEnvAt(b, b.TempDir(), func(c *server.Config) { c.Limits = server.Limits{} })
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func storePending(id string, draft []byte) store.Pending {
	return store.Pending{ID: id, Tenant: "t", Node: "n", Backend: "fake", StartedAt: time.Now().Add(-time.Second), Draft: draft}
}
