package server_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/server"
	"glasshouse.dev/glasshouse/store"
)

// serveEnv runs Serve on a real listener, as the binary does.
func serveEnv(t *testing.T, grace time.Duration) (*env, string, context.CancelFunc, chan error) {
	t.Helper()
	e := newEnv(t, func(c *server.Config) { c.ShutdownGrace = grace })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ln) }()
	return e, "http://" + ln.Addr().String(), cancel, done
}

func post(t *testing.T, url, body string) (int, string) {
	resp, err := http.Post(url+"/run", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestShutdownDrainsWithinGrace(t *testing.T) {
	e, url, cancel, done := serveEnv(t, 10*time.Second)
	type res struct {
		code int
		body string
	}
	got := make(chan res, 1)
	go func() {
		c, b := post(t, url, `{"code":"block"}`)
		got <- res{c, b}
	}()
	<-e.ctl.started
	cancel()
	// Draining: new runs are refused while the one in flight finishes.
	deadline := time.Now().Add(5 * time.Second)
	for !e.srv.Health(context.Background()).Draining {
		if time.Now().After(deadline) {
			t.Fatal("server never started draining")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(e.ctl.release)
	r := <-got
	if r.code != 200 || !strings.Contains(r.body, `"failure":"none"`) {
		t.Fatalf("in-flight run during shutdown: %d %s", r.code, r.body)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if ids := mustInFlight(t, e); len(ids) != 0 {
		t.Fatalf("runs left in flight: %v", ids)
	}
}

func TestShutdownKillsAfterGrace(t *testing.T) {
	e, url, cancel, done := serveEnv(t, 300*time.Millisecond)
	type res struct {
		code int
		body string
	}
	got := make(chan res, 1)
	go func() {
		c, b := post(t, url, `{"code":"sleep","timeout_ms":10000}`)
		got <- res{c, b}
	}()
	// Wait until the run is recorded as in flight.
	deadline := time.Now().Add(5 * time.Second)
	for len(mustInFlight(t, e)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("run never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	id := mustInFlight(t, e)[0]
	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown took %v with a 300ms grace", d)
	}
	r := <-got
	if r.code != 200 || !strings.Contains(r.body, `"failure":"infrastructure"`) {
		t.Fatalf("killed run: %d %s", r.code, r.body)
	}
	rc := e.receipt("", id)
	if rc.Outcome.Failure != "infrastructure" || !strings.Contains(rc.Outcome.Error, "context canceled") {
		t.Fatalf("killed run's receipt: %+v", rc.Outcome)
	}
	if ids := mustInFlight(t, e); len(ids) != 0 {
		t.Fatalf("runs left in flight: %v", ids)
	}
}

func TestRetention(t *testing.T) {
	e := newEnv(t, func(c *server.Config) {
		c.Retention = store.Retention{MaxCount: 2}
		c.RetentionEvery = 20 * time.Millisecond
	})
	for range 5 {
		if r, _ := e.run("", `{"code":"print(2+2)"}`); r.status != 200 {
			t.Fatal(r.status)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.srv.Serve(ctx, ln) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var list server.ListResponse
		e.do("GET", "/receipts", "", nil).json(t, &list)
		if len(list.Runs) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("retention kept %d runs, want 2", len(list.Runs))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestHugeChunkedBody(t *testing.T) {
	e := newEnv(t, nil)
	// No Content-Length: the server must stop reading at the limit.
	pr, pw := io.Pipe()
	go func() {
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		pw.Write([]byte(`{"code":"`))
		for range 64 { // 4 MiB, far over the 64 KiB limit
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Write([]byte(`"}`))
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", e.http.URL+"/run", pr)
	req.ContentLength = -1
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	pr.CloseWithError(io.ErrClosedPipe)
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), `"field":"body","limit":65536`) {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}
