package attest

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"glasshouse.dev/glasshouse/core/receipt"
)

func testReceipt(t testing.TB) *receipt.Receipt {
	t.Helper()
	r := &receipt.Receipt{
		ID: "0190d8a4-0000-7000-8000-000000000001",
		Subject: receipt.Subject{
			Argv:       []string{"python3", "main.py"},
			Language:   "python",
			CodeSHA256: receipt.SHA256Hex([]byte("print(2+2)\n")),
			Files: []receipt.Artifact{
				{Path: "data/b.csv", SHA256: receipt.SHA256Hex([]byte("b")), Bytes: 1},
				{Path: "a.txt", SHA256: receipt.SHA256Hex([]byte("a")), Bytes: 1},
			},
		},
		Backend:   receipt.Backend{Name: "process", Isolation: "none"},
		Limits:    receipt.Limits{TimeoutMS: 1000, Network: "none"},
		Outcome:   receipt.Outcome{Failure: "none", DurationMS: 12},
		Output:    receipt.Output{StdoutBytes: 2, StdoutSHA256: receipt.SHA256Hex([]byte("4\n"))},
		Profiling: receipt.Profiling{Mode: "best-effort", Status: "complete", Collector: "ebpf-host"},
		Processes: []receipt.Process{{PID: 7, Exe: "/usr/bin/python3", Argv: []string{"python3", "main.py"}, Cwd: "/w"}},
		Files:     []receipt.File{{Path: "/w/out", Op: "write", PID: 7, Count: 1, OK: true}},
		Network:   []receipt.Net{{Op: "connect", Family: "inet", Protocol: "tcp", Address: "127.0.0.1", Port: 9, PID: 7, Count: 1, Errno: "EPERM"}},
	}
	if err := receipt.Seal(r); err != nil {
		t.Fatal(err)
	}
	return r
}

func keys(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

func TestSignVerifyRoundTrip(t *testing.T) {
	pub, priv := keys(t)
	r := testReceipt(t)
	env, err := Sign(r, priv)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(env, pub)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := receipt.Marshal(r)
	b, _ := receipt.Marshal(got)
	if !bytes.Equal(a, b) {
		t.Fatalf("round trip changed the receipt:\n%s\n%s", a, b)
	}
	// The envelope is what DSSE and in-toto tools expect.
	var e struct {
		PayloadType string `json:"payloadType"`
		Payload     string `json:"payload"`
		Signatures  []struct {
			KeyID string `json:"keyid"`
			Sig   string `json:"sig"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	id, _ := KeyID(pub)
	if e.PayloadType != PayloadType || len(e.Signatures) != 1 || e.Signatures[0].KeyID != id {
		t.Fatalf("envelope %+v", e)
	}
	payload, _ := base64.StdEncoding.DecodeString(e.Payload)
	var st Statement
	if err := json.Unmarshal(payload, &st); err != nil {
		t.Fatal(err)
	}
	wantNames := []string{"code", "argv", "files/a.txt", "files/data/b.csv"}
	if st.Type != StatementType || st.PredicateType != "https://glasshouse.dev/receipt/v1" || len(st.Subject) != len(wantNames) {
		t.Fatalf("statement %+v", st)
	}
	for i, s := range st.Subject {
		if s.Name != wantNames[i] || len(s.Digest["sha256"]) != 64 {
			t.Errorf("subject %d: %+v, want name %s", i, s, wantNames[i])
		}
	}
	if st.Subject[0].Digest["sha256"] != r.Subject.CodeSHA256 {
		t.Error("code subject is not the code's sha256")
	}
	// Signing is deterministic (ed25519 is), so the same receipt and key
	// give the same bytes.
	again, _ := Sign(r, priv)
	if !bytes.Equal(env, again) {
		t.Error("signing twice gave different envelopes")
	}
}

var sentinels = []error{ErrMalformed, ErrPayloadType, ErrSignature, ErrStatement, ErrReceipt, ErrSubjectMismatch}

func isSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// TestTamperEveryByte changes each byte of a signed envelope, two ways,
// and requires Verify to fail with a named reason every time.
func TestTamperEveryByte(t *testing.T) {
	pub, priv := keys(t)
	env, err := Sign(testReceipt(t), priv)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[error]int{}
	for i := range env {
		for _, b := range []byte{env[i] ^ 0x01, ' '} {
			if b == env[i] {
				continue
			}
			bad := bytes.Clone(env)
			bad[i] = b
			_, err := Verify(bad, pub)
			if err == nil {
				t.Fatalf("byte %d changed from %q to %q: still verifies", i, env[i], b)
			}
			if !isSentinel(err) {
				t.Fatalf("byte %d: error without a reason: %v", i, err)
			}
			for _, s := range sentinels {
				if errors.Is(err, s) {
					reasons[s]++
				}
			}
		}
	}
	if reasons[ErrMalformed] == 0 || reasons[ErrSignature] == 0 {
		t.Errorf("reasons seen: %v", reasons)
	}
	// Appending or removing bytes fails too.
	for _, bad := range [][]byte{append(bytes.Clone(env), '\n'), env[:len(env)-2], append([]byte(" "), env...)} {
		if _, err := Verify(bad, pub); !isSentinel(err) {
			t.Errorf("%q...: %v", bad[:10], err)
		}
	}
}

// TestTamperPayload re-signs nothing: it changes the statement inside the
// envelope, keeps the envelope canonical, and expects ErrSignature.
func TestTamperPayload(t *testing.T) {
	pub, priv := keys(t)
	env, _ := Sign(testReceipt(t), priv)
	var e map[string]any
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	payload, _ := base64.StdEncoding.DecodeString(e["payload"].(string))
	for i := range payload {
		p := bytes.Clone(payload)
		p[i] ^= 0x20
		e["payload"] = base64.StdEncoding.EncodeToString(p)
		raw, _ := json.Marshal(e)
		canon, _ := receipt.Canonical(raw)
		if _, err := Verify(append(canon, '\n'), pub); !errors.Is(err, ErrSignature) {
			t.Fatalf("payload byte %d: %v, want ErrSignature", i, err)
		}
	}
}

// TestVerifyChecksStatementAndReceipt signs statements Sign would never
// write and checks each is caught by its own reason.
func TestVerifyChecksStatementAndReceipt(t *testing.T) {
	pub, priv := keys(t)
	r := testReceipt(t)
	pred, _ := receipt.MarshalCompact(r)
	pred = bytes.TrimSuffix(pred, []byte("\n"))
	subjects, _ := Subjects(r)
	edited := bytes.Replace(pred, []byte(`"exit_code":0`), []byte(`"exit_code":1`), 1)

	cases := []struct {
		name        string
		payloadType string
		stmt        any
		want        error
	}{
		{"payload type", "text/plain", Statement{StatementType, subjects, PredicateType, pred}, ErrPayloadType},
		{"statement type", PayloadType, Statement{"https://in-toto.io/Statement/v0.1", subjects, PredicateType, pred}, ErrStatement},
		{"predicate type", PayloadType, Statement{StatementType, subjects, "https://slsa.dev/provenance/v1", pred}, ErrStatement},
		{"extra member", PayloadType, map[string]any{"_type": StatementType, "subject": subjects, "predicateType": PredicateType, "predicate": json.RawMessage(pred), "x": 1}, ErrStatement},
		{"edited receipt", PayloadType, Statement{StatementType, subjects, PredicateType, edited}, ErrReceipt},
		{"other subjects", PayloadType, Statement{StatementType, subjects[1:], PredicateType, pred}, ErrSubjectMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stmt, _ := json.Marshal(tc.stmt)
			env := signRaw(t, priv, tc.payloadType, stmt)
			if _, err := Verify(env, pub); !errors.Is(err, tc.want) {
				t.Fatalf("%v, want %v", err, tc.want)
			}
		})
	}

	other, _ := keys(t)
	env, _ := Sign(r, priv)
	if _, err := Verify(env, other); !errors.Is(err, ErrSignature) {
		t.Errorf("other key: %v", err)
	}
	if _, err := Verify(env, pub[:10]); !errors.Is(err, ErrKey) {
		t.Errorf("short key: %v", err)
	}
	r.Outcome.ExitCode = 3 // changed after sealing
	if _, err := Sign(r, priv); !errors.Is(err, ErrReceipt) {
		t.Errorf("sign an edited receipt: %v", err)
	}
}

// signRaw signs arbitrary payload bytes the way Sign does.
func signRaw(t *testing.T, priv ed25519.PrivateKey, payloadType string, payload []byte) []byte {
	t.Helper()
	pae := []byte("DSSEv1 " + itoa(len(payloadType)) + " " + payloadType + " " + itoa(len(payload)) + " ")
	pae = append(pae, payload...)
	id, _ := KeyID(priv.Public().(ed25519.PublicKey))
	env := map[string]any{
		"payloadType": payloadType,
		"payload":     base64.StdEncoding.EncodeToString(payload),
		"signatures":  []map[string]string{{"keyid": id, "sig": base64.StdEncoding.EncodeToString(ed25519.Sign(priv, pae))}},
	}
	raw, _ := json.Marshal(env)
	canon, err := receipt.Canonical(raw)
	if err != nil {
		t.Fatal(err)
	}
	return append(canon, '\n')
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestKeys(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "k")
	pub, priv := keys(t)
	if err := WriteKeys(prefix, pub, priv); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(prefix + ".key")
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode: %v %v", st.Mode(), err)
	}
	gotPriv, err := LoadPrivateKey(prefix + ".key")
	if err != nil || !gotPriv.Equal(priv) {
		t.Fatalf("private key: %v", err)
	}
	gotPub, err := LoadPublicKey(prefix + ".pub")
	if err != nil || !gotPub.Equal(pub) {
		t.Fatalf("public key: %v", err)
	}
	if err := WriteKeys(prefix, pub, priv); !errors.Is(err, ErrKeyExists) {
		t.Errorf("overwrite: %v", err)
	}
	if _, err := LoadPublicKey(prefix + ".key"); !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Errorf("private key as public: %v", err)
	}
	if _, err := LoadPrivateKey(filepath.Join(dir, "none")); !errors.Is(err, ErrKey) {
		t.Errorf("missing: %v", err)
	}
	junk := filepath.Join(dir, "junk")
	os.WriteFile(junk, []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), 0o644)
	if _, err := LoadPublicKey(junk); !errors.Is(err, ErrKey) {
		t.Errorf("junk: %v", err)
	}
}
