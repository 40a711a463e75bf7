package server

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"unicode/utf8"

	"glasshouse.dev/glasshouse/core/profiling"
)

// fuzzLimits are small so the fuzzer reaches every bound.
var fuzzLimits = func() Limits {
	l := Limits{MaxFiles: 2, MaxEnv: 2, MaxCodeBytes: 64, MaxFileBytes: 16, MaxFilesBytes: 24, MaxEnvBytes: 64, MaxStdinBytes: 16,
		MaxPolicyBytes: 16, MaxExpectBytes: 16, MaxBatch: 3}
	l.setDefaults()
	return l
}()

func FuzzDecodeRun(f *testing.F) {
	for _, s := range []string{
		`{"code": "print(2+2)"}`,
		`{"code":"x","language":"python","files":[{"path":"a/b.txt","content_base64":"aGk=","executable":true}],"stdin":"in",` +
			`"env":{"A":"1"},"timeout_ms":1000,"limits":{"memory_bytes":67108864,"pids":5,"cpu_millis":100,"output_bytes":10},` +
			`"network":"loopback","profile":"required","policy":"default","expect":{"stdout":"4\n"},"backend":"auto"}`,
		`{"code":"\ud83d\ude00","stdin":"\u00e9"}`,
		`{"code":"\ud800"}`,
		`{"code":"x","code":"y"}`,
		`{"Code":"x"}`,
		`{"code":"x"} {}`,
		`[1,2]`,
		`{"code":"x","env":{"a":{"b":[1,{"c":null}]}}}`,
		`{"code":"x","timeout_ms":1e3}`,
		`{"code":"x","timeout_ms":99999999999999999999}`,
		`{"code":"x","files":[{"path":"../x"}]}`,
		"{\"code\":\"\xff\"}",
		`{"code":"x","limits":null,"expect":{"stdout":null}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, e := DecodeRun(body, &fuzzLimits)
		if e != nil {
			checkAPIError(t, e)
			return
		}
		if !utf8.Valid(body) {
			t.Fatalf("accepted invalid UTF-8: %q", body)
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil {
			t.Fatalf("accepted a body encoding/json rejects: %v", err)
		}
		plan, e := req.Validate(&fuzzLimits, profiling.BestEffort, "")
		if e != nil {
			checkAPIError(t, e)
			return
		}
		// An accepted plan is within every bound.
		s := plan.Spec
		if len(s.Code) > fuzzLimits.MaxCodeBytes || len(s.Files) > fuzzLimits.MaxFiles || len(s.Env) > fuzzLimits.MaxEnv ||
			len(s.Stdin) > fuzzLimits.MaxStdinBytes || s.Timeout <= 0 || s.Timeout > fuzzLimits.MaxTimeout {
			t.Fatalf("plan out of bounds: %+v", s)
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("accepted plan fails Spec.Validate: %v", err)
		}
	})
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add([]byte(`{"runs":[{"code":"a"},{"code":"b","timeout_ms":5}],"parallelism":1}`))
	f.Add([]byte(`{"runs":[]}`))
	f.Add([]byte(`{"runs":[{"code":"a"},{"code":"a"},{"code":"a"},{"code":"a"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, e := DecodeBatch(body, &fuzzLimits)
		if e != nil {
			checkAPIError(t, e)
			return
		}
		if len(req.Runs) == 0 || len(req.Runs) > fuzzLimits.MaxBatch {
			t.Fatalf("accepted %d runs", len(req.Runs))
		}
	})
}

func FuzzParseListQuery(f *testing.F) {
	f.Add("failure=code&verdict=deny&since=2030-01-01T00:00:00Z&limit=5")
	f.Add("cursor=MTIzL2E&limit=1000")
	f.Add("limit=1&limit=2")
	f.Add("%zz")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		sq, e := ParseListQuery(q)
		if e != nil {
			checkAPIError(t, e)
			return
		}
		if err := sq.Validate(); err != nil {
			t.Fatalf("accepted query fails store validation: %v", err)
		}
	})
}

func checkAPIError(t *testing.T, e *Error) {
	t.Helper()
	if e.Status != http.StatusBadRequest && e.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d for a request error: %v", e.Status, e)
	}
	if e.Message == "" {
		t.Fatal("error without a message")
	}
	if _, err := json.Marshal(e); err != nil {
		t.Fatalf("error does not encode: %v", err)
	}
}
