package server_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/backend/fake"
	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/server"
)

func TestRunQuickstart(t *testing.T) {
	e := newEnv(t, nil)
	r, resp := e.run("", `{"code": "print(2+2)"}`)
	if r.status != http.StatusOK {
		t.Fatalf("POST /run: %d %s", r.status, r.body)
	}
	if resp.Stdout != "4\n" || resp.ExitCode != 0 || resp.Failure != "none" || resp.Backend != "fake" ||
		resp.ReceiptURL != "/receipts/"+resp.ID || resp.Verdict != nil || resp.Signals != nil {
		t.Fatalf("response = %+v", resp)
	}
	rc := e.receipt("", resp.ID)
	if rc.ID != resp.ID || rc.Digest != resp.Digest || rc.Outcome.Failure != "none" || rc.Subject.Language != "python" ||
		rc.Subject.CodeSHA256 != receipt.SHA256Hex([]byte("print(2+2)")) || rc.Output.StdoutSHA256 != receipt.SHA256Hex([]byte("4\n")) {
		t.Fatalf("receipt = %+v", rc)
	}
	// The receipt's limits are the server's defaults.
	if rc.Limits.TimeoutMS != 10000 || rc.Limits.Network != "none" {
		t.Fatalf("receipt limits = %+v", rc.Limits)
	}
}

func TestRunInputs(t *testing.T) {
	e := newEnv(t, nil)
	_, resp := e.run("", `{"code":"env","env":{"FOO":"bar"}}`)
	if resp.Stdout != "bar" {
		t.Errorf("env: stdout %q", resp.Stdout)
	}
	_, resp = e.run("", `{"code":"cat","stdin":"héllo"}`)
	if resp.Stdout != "héllo" {
		t.Errorf("stdin: stdout %q", resp.Stdout)
	}
	_, resp = e.run("", `{"code":"fail"}`)
	if resp.ExitCode != 3 || resp.Failure != "code" || resp.Stderr != "boom\n" {
		t.Errorf("failing code: %+v", resp)
	}
	content := base64.StdEncoding.EncodeToString([]byte("data"))
	r, resp := e.run("", `{"code":"print(2+2)","files":[{"path":"in/data.txt","content_base64":"`+content+`"}],"timeout_ms":2000,
		"limits":{"memory_bytes":67108864,"pids":10,"cpu_millis":500,"output_bytes":4096},"network":"loopback","profile":"off"}`)
	if r.status != http.StatusOK {
		t.Fatalf("full request: %d %s", r.status, r.body)
	}
	rc := e.receipt("", resp.ID)
	want := receipt.Limits{TimeoutMS: 2000, MemoryBytes: 64 << 20, PIDs: 10, CPUMillis: 500, OutputBytes: 4096, Network: "loopback"}
	if rc.Limits != want {
		t.Errorf("receipt limits = %+v, want %+v", rc.Limits, want)
	}
	if len(rc.Subject.Files) != 1 || rc.Subject.Files[0].Path != "in/data.txt" || rc.Subject.Files[0].SHA256 != receipt.SHA256Hex([]byte("data")) {
		t.Errorf("receipt subject files = %+v", rc.Subject.Files)
	}
	if rc.Profiling.Mode != "off" {
		t.Errorf("profiling mode = %q", rc.Profiling.Mode)
	}
}

func TestAuth(t *testing.T) {
	tokens, err := server.ParseTokens([]byte("# tenants\naaaaaaaaaaaaaaaaaaaa alice\nbbbbbbbbbbbbbbbbbbbb bob\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *server.Config) { c.Tokens = tokens })
	const alice, bob = "aaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbb"
	body := []byte(`{"code":"print(2+2)"}`)
	for _, tc := range []struct {
		name, auth string
	}{
		{"missing", ""},
		{"wrong token", "Bearer cccccccccccccccccccc"},
		{"wrong scheme", "Basic " + alice},
		{"empty bearer", "Bearer "},
		{"prefix of a token", "Bearer aaaaaaaaaaaaaaaaaaa"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/run", "", body, "Authorization", tc.auth)
			if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") == "" {
				t.Fatalf("status %d (WWW-Authenticate %q), want 401", r.status, r.header.Get("WWW-Authenticate"))
			}
			r.apiErr(t)
			if r := e.do("GET", "/receipts", "", nil, "Authorization", tc.auth); r.status != http.StatusUnauthorized {
				t.Fatalf("GET /receipts: %d, want 401", r.status)
			}
		})
	}
	r, resp := e.run(alice, string(body))
	if r.status != http.StatusOK {
		t.Fatalf("alice's run: %d %s", r.status, r.body)
	}
	e.receipt(alice, resp.ID)
	// Bob cannot see Alice's run: the same 404 as for an id that does not
	// exist, so ids do not leak either.
	foreign := e.do("GET", "/receipts/"+resp.ID, bob, nil)
	missing := e.do("GET", "/receipts/01900000-0000-7000-8000-000000000000", bob, nil)
	if foreign.status != http.StatusNotFound || missing.status != http.StatusNotFound {
		t.Fatalf("foreign receipt: %d, missing: %d; want 404", foreign.status, missing.status)
	}
	var list server.ListResponse
	e.do("GET", "/receipts", bob, nil).json(t, &list)
	if len(list.Runs) != 0 {
		t.Fatalf("bob lists %d runs, want 0", len(list.Runs))
	}
	e.do("GET", "/receipts", alice, nil).json(t, &list)
	if len(list.Runs) != 1 || list.Runs[0].ID != resp.ID {
		t.Fatalf("alice lists %+v", list.Runs)
	}
	// Health and metrics need no token.
	if r := e.do("GET", "/health", "", nil); r.status != http.StatusOK {
		t.Fatalf("GET /health: %d", r.status)
	}
}

func TestLimits(t *testing.T) {
	e := newEnv(t, nil)
	b64 := func(n int) string { return base64.StdEncoding.EncodeToString(make([]byte, n)) }
	cases := []struct {
		name   string
		body   string
		status int
		field  string
		limit  string
	}{
		{"body", `{"code":"print(2+2)","stdin":"` + strings.Repeat("x", 70<<10) + `"}`, 413, "body", "65536"},
		{"code size", `{"code":"` + strings.Repeat("x", 1025) + `"}`, 413, "code", "1024"},
		{"code missing", `{}`, 400, "code", ""},
		{"code NUL", `{"code":"print(1)\u0000"}`, 400, "code", ""},
		{"language", `{"code":"x","language":"ruby"}`, 400, "language", ""},
		{"files count", `{"code":"x","files":[{"path":"a"},{"path":"b"},{"path":"c"},{"path":"d"}]}`, 400, "files", "3"},
		{"file size", `{"code":"x","files":[{"path":"a","content_base64":"` + b64(101) + `"}]}`, 413, "files[0].content_base64", "100"},
		{"files total", `{"code":"x","files":[{"path":"a","content_base64":"` + b64(100) + `"},{"path":"b","content_base64":"` + b64(60) + `"}]}`, 413, "files", "150"},
		{"file base64", `{"code":"x","files":[{"path":"a","content_base64":"!!"}]}`, 400, "files[0].content_base64", ""},
		{"file path escape", `{"code":"x","files":[{"path":"../etc/passwd"}]}`, 400, "files[0].path", "1024"},
		{"file path absolute", `{"code":"x","files":[{"path":"/etc/passwd"}]}`, 400, "files[0].path", "1024"},
		{"file path duplicate", `{"code":"x","files":[{"path":"a"},{"path":"./a"}]}`, 400, "files[1].path", ""},
		{"file main.py", `{"code":"x","files":[{"path":"main.py"}]}`, 400, "files", ""},
		{"env count", `{"code":"x","env":{"A":"1","B":"2","C":"3","D":"4","E":"5"}}`, 400, "env", "4"},
		{"env size", `{"code":"x","env":{"A":"` + strings.Repeat("v", 200) + `"}}`, 413, "env", "200"},
		{"env name", `{"code":"x","env":{"A=B":"1"}}`, 400, "env", ""},
		{"stdin", `{"code":"x","stdin":"` + strings.Repeat("x", 101) + `"}`, 413, "stdin", "100"},
		{"timeout over max", `{"code":"x","timeout_ms":10001}`, 400, "timeout_ms", "10000"},
		{"timeout negative", `{"code":"x","timeout_ms":-1}`, 400, "timeout_ms", "10000"},
		{"memory high", `{"code":"x","limits":{"memory_bytes":1073741825}}`, 400, "limits.memory_bytes", "1073741824"},
		{"memory low", `{"code":"x","limits":{"memory_bytes":1024}}`, 400, "limits.memory_bytes", "1073741824"},
		{"pids", `{"code":"x","limits":{"pids":101}}`, 400, "limits.pids", "100"},
		{"cpu", `{"code":"x","limits":{"cpu_millis":-5}}`, 400, "limits.cpu_millis", "4000"},
		{"output", `{"code":"x","limits":{"output_bytes":1048577}}`, 400, "limits.output_bytes", "1048576"},
		{"network", `{"code":"x","network":"internet"}`, 400, "network", ""},
		{"profile", `{"code":"x","profile":"always"}`, 400, "profile", ""},
		{"policy size", `{"code":"x","policy":"` + strings.Repeat("p", 101) + `"}`, 413, "policy", "100"},
		{"policy without engine", `{"code":"x","policy":"default"}`, 400, "policy", ""},
		{"expect size", `{"code":"x","expect":{"stdout":"` + strings.Repeat("e", 101) + `"}}`, 413, "expect.stdout", "100"},
		{"backend unknown", `{"code":"x","backend":"firecracker"}`, 400, "backend", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/run", "", []byte(tc.body))
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			ae := r.apiErr(t)
			if ae.Field != tc.field || string(ae.Limit) != tc.limit {
				t.Fatalf("field %q limit %s, want %q %s: %s", ae.Field, ae.Limit, tc.field, tc.limit, ae.Error)
			}
		})
	}
	// Nothing was recorded for refused requests.
	var list server.ListResponse
	e.do("GET", "/receipts", "", nil).json(t, &list)
	if len(list.Runs) != 0 {
		t.Fatalf("refused requests left %d receipts", len(list.Runs))
	}
}

func TestMalformed(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		name, body, field, msg string
	}{
		{"empty", ``, "body", "not valid JSON"},
		{"not json", `code=print`, "body", "not valid JSON"},
		{"array", `[{"code":"x"}]`, "body", "JSON object"},
		{"string", `"x"`, "body", "JSON object"},
		{"truncated", `{"code":"x"`, "body", "not valid JSON"},
		{"trailing object", `{"code":"x"}{"code":"y"}`, "body", "after the JSON object"},
		{"trailing garbage", `{"code":"x"} x`, "body", "not valid JSON"},
		{"unknown field", `{"code":"x","cmd":"ls"}`, "cmd", "not a known field"},
		{"unknown nested field", `{"code":"x","limits":{"memory":1}}`, "limits.memory", "not a known field"},
		{"unknown file field", `{"code":"x","files":[{"path":"a","mode":7}]}`, "files[0].mode", "not a known field"},
		{"case variant", `{"Code":"x"}`, "Code", "not a known field"},
		{"duplicate", `{"code":"x","code":"y"}`, "code", "given twice"},
		{"duplicate env", `{"code":"x","env":{"A":"1","A":"2"}}`, "env.A", "given twice"},
		{"invalid utf-8", "{\"code\":\"\xff\xfe\"}", "body", "UTF-8"},
		{"lone surrogate", `{"code":"\ud800"}`, "body", "surrogate"},
		{"lone low surrogate", `{"code":"\udc00x"}`, "body", "surrogate"},
		{"wrong type", `{"code":"x","timeout_ms":"5"}`, "timeout_ms", "integer"},
		{"float", `{"code":"x","timeout_ms":1.5}`, "timeout_ms", "integer"},
		{"wrong type nested", `{"code":"x","files":[{"path":5}]}`, "files[0].path", "string"},
		{"env not strings", `{"code":"x","env":{"A":1}}`, "env.A", "string"},
		{"deep", `{"code":"x","env":` + strings.Repeat(`{"a":`, 10000) + `1` + strings.Repeat(`}`, 10000) + `}`, "env.a", "must be a string"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do("POST", "/run", "", []byte(tc.body))
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", r.status, r.body)
			}
			ae := r.apiErr(t)
			if (tc.field != "" && ae.Field != tc.field) || !strings.Contains(ae.Error, tc.msg) {
				t.Fatalf("field %q error %q, want %q containing %q", ae.Field, ae.Error, tc.field, tc.msg)
			}
		})
	}
	// null means "not given".
	if r, _ := e.run("", `{"code":"print(2+2)","timeout_ms":null,"files":null,"env":null,"limits":null}`); r.status != 200 {
		t.Fatalf("nulls: %d %s", r.status, r.body)
	}
	// A valid surrogate pair is fine.
	if r, resp := e.run("", `{"code":"cat","stdin":"\ud83d\ude00"}`); r.status != 200 || resp.Stdout != "😀" {
		t.Fatalf("surrogate pair: %d %s", r.status, r.body)
	}
	// The quickstart's curl sends a form content type; it must still work.
	r := e.do("POST", "/run", "", []byte(`{"code": "print(2+2)"}`), "Content-Type", "application/x-www-form-urlencoded")
	if r.status != http.StatusOK {
		t.Fatalf("form content type: %d %s", r.status, r.body)
	}
	for _, p := range []string{"/nope", "/run/x"} {
		if r := e.do("GET", p, "", nil); r.status != http.StatusNotFound {
			t.Errorf("GET %s: %d", p, r.status)
		}
	}
	if r := e.do("GET", "/run", "", nil); r.status != http.StatusMethodNotAllowed {
		t.Errorf("GET /run: %d, want 405", r.status)
	}
}

func TestTimeout(t *testing.T) {
	e := newEnv(t, nil)
	r, resp := e.run("", `{"code":"sleep","timeout_ms":200}`)
	if r.status != http.StatusOK {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if !resp.TimedOut || resp.Failure != "timeout" || resp.ExitCode != -1 {
		t.Fatalf("response = %+v", resp)
	}
	rc := e.receipt("", resp.ID)
	if !rc.Outcome.TimedOut || rc.Outcome.Failure != "timeout" || rc.Limits.TimeoutMS != 200 {
		t.Fatalf("receipt outcome = %+v", rc.Outcome)
	}
}

// readLines reads NDJSON lines from resp into ch until EOF.
func readLines(t *testing.T, body *bufio.Reader, ch chan<- map[string]any) {
	defer close(ch)
	for {
		line, err := body.ReadBytes('\n')
		if len(line) > 0 {
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				t.Errorf("bad NDJSON line %q: %v", line, err)
				return
			}
			ch <- m
		}
		if err != nil {
			return
		}
	}
}

func TestStreaming(t *testing.T) {
	e := newEnv(t, nil)
	req, _ := http.NewRequest("POST", e.http.URL+"/run", strings.NewReader(`{"code":"stream"}`))
	req.Header.Set("Accept", "application/x-ndjson")
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lines := make(chan map[string]any, 16)
	go readLines(t, bufio.NewReader(resp.Body), lines)
	next := func() map[string]any {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("stream ended early")
			}
			return l
		case <-time.After(10 * time.Second):
			t.Fatal("no line within 10s")
		}
		return nil
	}
	started := next()
	if started["type"] != "started" || started["id"] == "" {
		t.Fatalf("first line = %v", started)
	}
	// The workload is blocked until we release it: these chunks can only
	// have arrived live.
	got := map[string]string{}
	for len(got["stdout"]) < 2 || len(got["stderr"]) < 5 {
		l := next()
		got[l["type"].(string)] += l["data"].(string)
	}
	if got["stdout"] != "a\n" || got["stderr"] != "warn\n" {
		t.Fatalf("live chunks = %q", got)
	}
	close(e.ctl.release)
	var result map[string]any
	for {
		l := next()
		if l["type"] == "result" {
			result = l
			break
		}
		got[l["type"].(string)] += l["data"].(string)
	}
	if got["stdout"] != "a\nb\n" || result["stdout"] != "a\nb\n" || result["id"] != started["id"] || result["failure"] != "none" {
		t.Fatalf("chunks %q, result %v", got, result)
	}
	if _, more := <-lines; more {
		t.Fatal("lines after the result")
	}
	e.receipt("", started["id"].(string))
}

func TestStreamingSplitsNoRunes(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("POST", "/run", "", []byte(`{"code":"euro"}`), "Accept", "application/json, application/x-ndjson;q=0.9")
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	stdout := ""
	for _, line := range strings.Split(strings.TrimSpace(string(r.body)), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if m["type"] == "stdout" {
			stdout += m["data"].(string)
		}
	}
	if stdout != "€\n" {
		t.Fatalf("streamed stdout %q, want %q", stdout, "€\n")
	}
}

func TestStreamingRefusalIsPlainError(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("POST", "/run", "", []byte(`{"code":""}`), "Accept", "application/x-ndjson")
	if r.status != 400 || r.apiErr(t).Field != "code" {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

func TestBatch(t *testing.T) {
	e := newEnv(t, nil)
	body := `{"runs":[{"code":"print(2+2)"},{"code":"fail"},{"code":"env","env":{"FOO":"x"}},{"code":"sleep","timeout_ms":100},{"code":"print(2+2)"}],"parallelism":2}`
	r := e.do("POST", "/runs", "", []byte(body))
	if r.status != 200 || r.header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("%d %s", r.status, r.body)
	}
	lines := strings.Split(strings.TrimSpace(string(r.body)), "\n")
	if len(lines) != 6 {
		t.Fatalf("%d lines, want 5 results and done:\n%s", len(lines), r.body)
	}
	seen := map[int]server.RunResponse{}
	for _, l := range lines[:5] {
		var m struct {
			Type  string `json:"type"`
			Index *int   `json:"index"`
			server.RunResponse
		}
		if err := json.Unmarshal([]byte(l), &m); err != nil || m.Type != "result" || m.Index == nil {
			t.Fatalf("line %s: %v", l, err)
		}
		seen[*m.Index] = m.RunResponse
	}
	want := []string{"none", "code", "none", "timeout", "none"}
	for i, f := range want {
		if seen[i].Failure != f {
			t.Errorf("run %d: failure %q, want %q", i, seen[i].Failure, f)
		}
		e.receipt("", seen[i].ID)
	}
	if seen[2].Stdout != "x" {
		t.Errorf("run 2 stdout %q", seen[2].Stdout)
	}
	var done map[string]any
	json.Unmarshal([]byte(lines[5]), &done)
	if done["type"] != "done" || done["runs"] != float64(5) || done["errors"] != float64(0) {
		t.Fatalf("done line %v", done)
	}

	for _, tc := range []struct{ body, field, limit string }{
		{`{"runs":[{"code":"x"},{"code":"x"},{"code":""}]}`, "runs[2].code", ""},
		{`{"runs":[{"code":"x","timeout_ms":999999}]}`, "runs[0].timeout_ms", "10000"},
		{`{"runs":[]}`, "runs", ""},
		{`{"runs":[` + strings.Repeat(`{"code":"x"},`, 8) + `{"code":"x"}]}`, "runs", "8"},
		{`{"runs":[{"code":"x"}],"parallelism":3}`, "parallelism", "2"},
		{`{"runs":[{"code":"x","bogus":1}]}`, "runs[0].bogus", ""},
	} {
		r := e.do("POST", "/runs", "", []byte(tc.body))
		if r.status != 400 {
			t.Errorf("%s: %d %s", tc.body, r.status, r.body)
			continue
		}
		if ae := r.apiErr(t); ae.Field != tc.field || string(ae.Limit) != tc.limit {
			t.Errorf("%s: field %q limit %s, want %q %s", tc.body, ae.Field, ae.Limit, tc.field, tc.limit)
		}
	}
}

func TestQueueFull(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.MaxConcurrency, c.MaxQueue = 1, 1 })
	var wg sync.WaitGroup
	results := make([]reply, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.do("POST", "/run", "", []byte(`{"code":"block"}`))
		}()
		if i == 0 {
			<-e.ctl.started // the first holds the only slot
		}
	}
	// Wait until the second is queued.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var h server.Health
		e.do("GET", "/health", "", nil).json(t, &h)
		if h.Queue.Queued == 1 && h.Queue.InFlight == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue never filled: %+v", h.Queue)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := e.do("POST", "/run", "", []byte(`{"code":"print(2+2)"}`))
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("third request: %d (Retry-After %q), want 429", r.status, r.header.Get("Retry-After"))
	}
	if ae := r.apiErr(t); string(ae.Limit) != "1" {
		t.Fatalf("429 limit %s", ae.Limit)
	}
	if r := e.do("POST", "/runs", "", []byte(`{"runs":[{"code":"x"}]}`)); r.status != http.StatusTooManyRequests {
		t.Fatalf("batch while full: %d", r.status)
	}
	close(e.ctl.release)
	wg.Wait()
	for i, r := range results {
		if r.status != 200 || !strings.Contains(string(r.body), "released") {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
	}
	m := e.do("GET", "/metrics", "", nil)
	if !strings.Contains(string(m.body), `glasshouse_rejected_requests_total{reason="queue_full"} 2`) {
		t.Fatalf("metrics lack the queue_full rejections:\n%s", grep(string(m.body), "rejected"))
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestBackendSelection(t *testing.T) {
	t.Run("none configured", func(t *testing.T) {
		e := newEnv(t, func(c *server.Config) { c.Backends = nil })
		r := e.do("POST", "/run", "", []byte(`{"code":"print(2+2)"}`))
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("/run: %d %s", r.status, r.body)
		}
		var h server.Health
		hr := e.do("GET", "/health", "", nil)
		hr.json(t, &h)
		if hr.status != 503 || h.Status != "unavailable" {
			t.Fatalf("/health: %d %+v", hr.status, h)
		}
	})
	unisolated := func(c *server.Config) {
		c.Backends = []execution.Backend{fake.New(fake.Config{Scripts: scripts(newControl())})}
	}
	t.Run("unisolated refused", func(t *testing.T) {
		e := newEnv(t, unisolated)
		r := e.do("POST", "/run", "", []byte(`{"code":"print(2+2)"}`))
		if r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), "--allow-unisolated") {
			t.Fatalf("/run: %d %s", r.status, r.body)
		}
		r = e.do("POST", "/run", "", []byte(`{"code":"print(2+2)","backend":"fake"}`))
		if r.status != 400 || r.apiErr(t).Field != "backend" {
			t.Fatalf("/run naming it: %d %s", r.status, r.body)
		}
		var h server.Health
		e.do("GET", "/health", "", nil).json(t, &h)
		if len(h.Backends) != 1 || h.Backends[0].Usable || !strings.Contains(h.Backends[0].Reason, "--allow-unisolated") {
			t.Fatalf("health backends %+v", h.Backends)
		}
	})
	t.Run("unisolated allowed", func(t *testing.T) {
		e := newEnv(t, func(c *server.Config) { unisolated(c); c.AllowUnisolated = true })
		if r, _ := e.run("", `{"code":"print(2+2)"}`); r.status != 200 {
			t.Fatalf("/run: %d %s", r.status, r.body)
		}
		var h server.Health
		e.do("GET", "/health", "", nil).json(t, &h)
		if h.DefaultBackend.Name != "fake" || h.DefaultBackend.Isolation != "none" || !strings.Contains(h.DefaultBackend.Reason, "auto") {
			t.Fatalf("health default %+v", h.DefaultBackend)
		}
	})
	t.Run("named unisolated refused at start", func(t *testing.T) {
		st := newEnv(t, nil).store
		_, err := server.New(server.Config{Store: st, Backend: "fake", Backends: []execution.Backend{fake.New(fake.Config{})}})
		if err == nil || !strings.Contains(err.Error(), "--allow-unisolated") {
			t.Fatalf("New = %v", err)
		}
		_, err = server.New(server.Config{Store: st, Backend: "qemu", Backends: []execution.Backend{fake.New(fake.Config{})}})
		if err == nil || !strings.Contains(err.Error(), "unknown backend") {
			t.Fatalf("New(unknown) = %v", err)
		}
	})
	t.Run("auto prefers isolation", func(t *testing.T) {
		e := newEnv(t, func(c *server.Config) {
			c.AllowUnisolated = true
			weak := fake.New(fake.Config{Scripts: scripts(newControl())})
			c.Backends = []execution.Backend{weak, renamed{c.Backends[0], "strong"}}
		})
		_, resp := e.run("", `{"code":"print(2+2)"}`)
		if resp.Backend != "strong" {
			t.Fatalf("auto picked %q", resp.Backend)
		}
		_, resp = e.run("", `{"code":"print(2+2)","backend":"fake"}`)
		if resp.Backend != "fake" {
			t.Fatalf("named backend ran on %q", resp.Backend)
		}
	})
}

// renamed gives a backend another registry name.
type renamed struct {
	execution.Backend
	name string
}

func (r renamed) Name() string { return r.name }

func TestList(t *testing.T) {
	e := newEnv(t, nil)
	var ids []string
	for _, code := range []string{"print(2+2)", "fail", "print(2+2)", "fail", "print(2+2)"} {
		_, resp := e.run("", `{"code":"`+code+`"}`)
		ids = append(ids, resp.ID)
	}
	var page server.ListResponse
	e.do("GET", "/receipts?failure=code", "", nil).json(t, &page)
	if len(page.Runs) != 2 || page.Runs[0].ID != ids[3] || page.Runs[1].ID != ids[1] || page.NextCursor != "" {
		t.Fatalf("failure=code: %+v", page)
	}
	var all []string
	next := "/receipts?limit=2"
	for next != "" {
		page = server.ListResponse{}
		e.do("GET", next, "", nil).json(t, &page)
		for _, r := range page.Runs {
			all = append(all, r.ID)
		}
		next = page.Next
	}
	if fmt.Sprint(all) != fmt.Sprint([]string{ids[4], ids[3], ids[2], ids[1], ids[0]}) {
		t.Fatalf("paged listing %v, want newest first %v", all, ids)
	}
	e.do("GET", "/receipts?since="+time.Now().Add(time.Hour).Format(time.RFC3339), "", nil).json(t, &page)
	if len(page.Runs) != 0 {
		t.Fatalf("since the future: %d runs", len(page.Runs))
	}
	for _, q := range []string{"?limit=0", "?limit=1001", "?limit=x", "?failure=bad", "?verdict=maybe", "?since=yesterday", "?cursor=zzz", "?page=2", "?limit=1&limit=2"} {
		r := e.do("GET", "/receipts"+q, "", nil)
		if r.status != 400 || r.apiErr(t).Field == "" {
			t.Errorf("GET /receipts%s: %d %s", q, r.status, r.body)
		}
	}
	if r := e.do("GET", "/receipts/"+ids[0]+"?format=dsse", "", nil); r.status != 400 || r.apiErr(t).Field != "format" {
		t.Errorf("dsse without key: %d %s", r.status, r.body)
	}
	if r := e.do("GET", "/receipts/"+ids[0]+"?format=xml", "", nil); r.status != 400 {
		t.Errorf("format=xml: %d", r.status)
	}
}

func TestRunningReceiptConflicts(t *testing.T) {
	e := newEnv(t, nil)
	go e.do("POST", "/run", "", []byte(`{"code":"block"}`))
	<-e.ctl.started
	var fl []string
	for _, p := range mustInFlight(t, e) {
		fl = append(fl, p)
	}
	if len(fl) != 1 {
		t.Fatalf("in flight: %v", fl)
	}
	if r := e.do("GET", "/receipts/"+fl[0], "", nil); r.status != http.StatusConflict {
		t.Fatalf("receipt of a running run: %d %s", r.status, r.body)
	}
	close(e.ctl.release)
}

func mustInFlight(t *testing.T, e *env) []string {
	t.Helper()
	ps, err := e.store.InFlight(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, p := range ps {
		ids = append(ids, p.ID)
	}
	return ids
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, nil)
	e.run("", `{"code":"print(2+2)"}`)
	e.run("", `{"code":"fail"}`)
	e.do("POST", "/run", "", []byte(`{`))
	m := string(e.do("GET", "/metrics", "", nil).body)
	for _, want := range []string{
		`glasshouse_runs_total{backend="fake",outcome="none"} 1`,
		`glasshouse_runs_total{backend="fake",outcome="code"} 1`,
		`glasshouse_run_duration_seconds_count{backend="fake"} 2`,
		`glasshouse_http_requests_total{code="400",route="run"} 1`,
		`glasshouse_rejected_requests_total{reason="invalid"} 1`,
		`glasshouse_queue_depth 0`,
		`glasshouse_runs_in_flight 0`,
		`glasshouse_run_profiling_dropped_events_total 0`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	e := newEnvAt(t, dir, nil)
	_, resp := e.run("", `{"code":"print(2+2)"}`)
	before := e.do("GET", "/receipts/"+resp.ID, "", nil).body
	e.close()

	e2 := newEnvAt(t, dir, nil)
	after := e2.do("GET", "/receipts/"+resp.ID, "", nil)
	if after.status != 200 || string(after.body) != string(before) {
		t.Fatalf("after restart: %d, same bytes: %v", after.status, string(after.body) == string(before))
	}
	checkReceipt(t, after.body)
}

func TestRecoverInFlight(t *testing.T) {
	dir := t.TempDir()
	e := newEnvAt(t, dir, nil)
	// A run the previous process left in flight: begun, never completed.
	go e.do("POST", "/run", "", []byte(`{"code":"block","timeout_ms":5000,"profile":"best-effort","env":{"A":"b"}}`))
	<-e.ctl.started
	ids := mustInFlight(t, e)
	if len(ids) != 1 {
		t.Fatalf("in flight %v", ids)
	}
	// Copy the database while the run is in flight, as a kill -9 would
	// leave it, and start a new server on the copy.
	dir2 := t.TempDir()
	copyDB(t, e, dir2)
	e2 := newEnvAt(t, dir2, nil)
	n, err := e2.srv.Recover(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Recover = %d, %v", n, err)
	}
	rc := e2.receipt("", ids[0])
	if rc.Outcome.Failure != "infrastructure" || rc.Outcome.Error != server.LostReason || rc.Limits.TimeoutMS != 5000 ||
		rc.Subject.CodeSHA256 != receipt.SHA256Hex([]byte("block")) || rc.Profiling.Status != "unavailable" || rc.Backend.Isolation != "microvm" {
		t.Fatalf("recovered receipt: %+v", rc)
	}
	if n, _ := e2.srv.Recover(context.Background()); n != 0 {
		t.Fatalf("second Recover recorded %d runs", n)
	}
	m := string(e2.do("GET", "/metrics", "", nil).body)
	if !strings.Contains(m, "glasshouse_recovered_runs_total 1") {
		t.Fatalf("metrics lack the recovery")
	}
}

// copyDB snapshots the live database of e into dir with SQLite's backup
// (VACUUM INTO), which sees exactly the committed state.
func copyDB(t *testing.T, e *env, dir string) {
	t.Helper()
	if err := e.store.Snapshot(context.Background(), filepath.Join(dir, "glasshouse.db")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "glasshouse.db")); err != nil {
		t.Fatal(err)
	}
}

func TestLostReceiptWithoutDraft(t *testing.T) {
	for _, draft := range [][]byte{nil, []byte("{"), []byte(`{"id":"other"}`)} {
		rc := server.LostReceipt(storePending("r1", draft), time.Now(), "lost")
		b, err := receipt.Marshal(rc)
		if err != nil {
			t.Fatal(err)
		}
		got := checkReceipt(t, b)
		if got.ID != "r1" || got.Outcome.Failure != "infrastructure" {
			t.Fatalf("receipt %+v", got)
		}
	}
}
