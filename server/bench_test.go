package server_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"

	"glasshouse.dev/glasshouse/backend/fake"
	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/server"
)

// BenchmarkRun measures what the server adds to a run: "engine" is the
// baseline (execution.Engine.Run on the fake backend, nothing else), "http"
// is POST /run through a real listener, strict decoding, admission, the
// SQLite store (begin + complete) and the JSON response, on the same
// backend. Compare their ns/op from the same invocation:
//
//	go test ./server -run '^$' -bench BenchmarkRun -benchtime 2000x
func BenchmarkRun(b *testing.B) {
	b.Run("engine", func(b *testing.B) {
		fb := fake.New(fake.Config{Scripts: scripts(newControl()), Isolation: execution.IsolationMicroVM})
		eng, err := execution.New(execution.Config{Backend: fb})
		if err != nil {
			b.Fatal(err)
		}
		spec := execution.Spec{Code: "print(2+2)", Language: "python", Profile: "best-effort"}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := eng.Run(context.Background(), spec); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("http", func(b *testing.B) {
		e := newBenchEnv(b)
		body := []byte(`{"code":"print(2+2)","profile":"best-effort"}`)
		client := e.http.Client()
		b.ReportAllocs()
		for b.Loop() {
			resp, err := client.Post(e.http.URL+"/run", "application/json", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

// BenchmarkDecodeRun measures strict decoding and validation of a typical
// request against plain json.Unmarshal of the same body.
func BenchmarkDecodeRun(b *testing.B) {
	body := []byte(`{"code":"import sys\nprint(sys.version)\nfor i in range(10): print(i)","timeout_ms":5000,"env":{"A":"1","B":"2"},` +
		`"files":[{"path":"data/in.txt","content_base64":"aGVsbG8gd29ybGQ="}],"limits":{"memory_bytes":134217728},"network":"none","profile":"best-effort"}`)
	lim := server.DefaultLimits
	b.Run("json.Unmarshal", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			var r server.RunRequest
			if err := jsonUnmarshal(body, &r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("strict", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			req, e := server.DecodeRun(body, &lim)
			if e != nil {
				b.Fatal(e)
			}
			if _, e := req.Validate(&lim, "best-effort", ""); e != nil {
				b.Fatal(e)
			}
		}
	})
}
