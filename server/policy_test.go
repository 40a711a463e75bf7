package server_test

import (
	"net/http"
	"strings"
	"testing"

	"glasshouse.dev/glasshouse/core/attest"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/server"
)

func TestPolicies(t *testing.T) {
	e := newEnv(t, func(c *server.Config) {
		c.Policies = server.BuiltinPolicies{}
		c.Limits.MaxPolicyBytes = 4096
	})
	r, resp := e.run("", `{"code":"print(2+2)","policy":"no-subprocess,no-network"}`)
	if r.status != 200 || resp.Verdict == nil || *resp.Verdict != "allow" {
		t.Fatalf("pack: %d %s", r.status, r.body)
	}
	rc := e.receipt("", resp.ID)
	if rc.Policy == nil || rc.Policy.Name != "no-subprocess,no-network" || rc.Policy.Verdict != "allow" {
		t.Fatalf("receipt policy %+v", rc.Policy)
	}
	// An inline policy that denies every run with exit code 3.
	inline := "name: exit-three\nversion: 1\nrules:\n  - id: three\n    severity: deny\n    description: exited 3\n    condition: outcome.exit_code == 3\n"
	_, resp = e.run("", `{"code":"fail","policy":`+quote(inline)+`}`)
	if resp.Verdict == nil || *resp.Verdict != "deny" {
		t.Fatalf("inline deny: %+v", resp)
	}
	var list server.ListResponse
	e.do("GET", "/receipts?verdict=deny", "", nil).json(t, &list)
	if len(list.Runs) != 1 || list.Runs[0].ID != resp.ID || *list.Runs[0].Verdict != "deny" {
		t.Fatalf("verdict=deny lists %+v", list.Runs)
	}
	for _, ref := range []string{"/etc/passwd", "./no-network", "no-network,/etc/shadow", "nonexistent"} {
		r := e.do("POST", "/run", "", []byte(`{"code":"print(2+2)","policy":`+quote(ref)+`}`))
		if r.status != http.StatusBadRequest || r.apiErr(t).Field != "policy" || !strings.Contains(string(r.body), "not a built-in pack") {
			t.Errorf("policy %q: %d %s", ref, r.status, r.body)
		}
	}
	r = e.do("POST", "/run", "", []byte(`{"code":"print(2+2)","policy":"name: x\nrules: [[["}`))
	if r.status != http.StatusBadRequest || r.apiErr(t).Field != "policy" {
		t.Errorf("bad inline YAML: %d %s", r.status, r.body)
	}
}

func TestDSSE(t *testing.T) {
	pub, priv, err := attest.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *server.Config) {
		c.Sign = func(r *receipt.Receipt) ([]byte, error) { return attest.Sign(r, priv) }
	})
	_, resp := e.run("", `{"code":"print(2+2)"}`)
	r := e.do("GET", "/receipts/"+resp.ID+"?format=dsse", "", nil)
	if r.status != 200 || r.header.Get("Content-Type") != "application/vnd.dsse.envelope.v1+json" {
		t.Fatalf("dsse: %d %s", r.status, r.body)
	}
	rc, err := attest.Verify(r.body, pub)
	if err != nil {
		t.Fatalf("envelope does not verify: %v", err)
	}
	if rc.ID != resp.ID || rc.Digest != resp.Digest {
		t.Fatalf("signed receipt %s/%s, want %s/%s", rc.ID, rc.Digest, resp.ID, resp.Digest)
	}
	other, _, _ := attest.GenerateKey()
	if _, err := attest.Verify(r.body, other); err == nil {
		t.Fatal("envelope verifies under another key")
	}
}

func TestSignals(t *testing.T) {
	e := newEnv(t, func(c *server.Config) { c.Signals = server.TrainingSignals })
	type signals struct {
		ReceiptID   string `json:"receipt_id"`
		Mask        bool   `json:"mask"`
		Correctness struct {
			Checked bool `json:"checked"`
			Passed  bool `json:"passed"`
		} `json:"correctness"`
	}
	for _, tc := range []struct {
		body            string
		checked, passed bool
	}{
		{`{"code":"print(2+2)","expect":{"stdout":"4\n"}}`, true, true},
		{`{"code":"print(2+2)","expect":{"stdout":"5\n"}}`, true, false},
		{`{"code":"print(2+2)"}`, false, false},
	} {
		r := e.do("POST", "/run", "", []byte(tc.body))
		var resp struct {
			ID      string  `json:"id"`
			Signals signals `json:"signals"`
		}
		r.json(t, &resp)
		s := resp.Signals
		if s.ReceiptID != resp.ID || s.Mask || s.Correctness.Checked != tc.checked || s.Correctness.Passed != tc.passed {
			t.Errorf("%s: signals %+v", tc.body, s)
		}
	}
}
