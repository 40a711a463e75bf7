package policy

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse. It must never panic; a failure
// must wrap ErrInvalidPolicy and carry a position; a policy that parses
// must evaluate a receipt to the same bytes twice.
func FuzzParse(f *testing.F) {
	for _, pk := range Packs() {
		src, err := PackSource(pk.Name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Add([]byte(validPolicy))
	f.Add([]byte("name: a\nversion: 1\nrules:\n  - id: r\n    severity: deny\n    over: files\n    condition: |\n      e.op == \"write\" &&\n        e.paht == \"/x\"\n"))
	f.Add([]byte("name: a\nversion: 1\nrules:\n  - {id: r, severity: warn, over: network, condition: 'e.address.inCIDR([\"10.0.0.0/8\"])'}\n"))
	f.Add([]byte("name: &n a\nversion: *n\nrules: []\n"))
	f.Add([]byte("name: a\n---\nname: b\n"))
	f.Add([]byte("- a\n"))
	f.Add([]byte("name: [x\n"))
	f.Add([]byte("\tname: x"))
	f.Add([]byte("name: a\nversion: 1\nrules:\n  - id: r\n    severity: deny\n    condition: \"size(files) > 1 ? outcome.timed_out : root.cwd.glob('/w/**')\"\n"))
	r := cleanReceipt()
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := Parse("fuzz.yaml", src)
		if err != nil {
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("error does not wrap ErrInvalidPolicy: %v", err)
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.File != "fuzz.yaml" {
				t.Fatalf("error is not a positioned *Error: %v", err)
			}
			return
		}
		a, err := p.Evaluate(r)
		if err != nil {
			t.Fatalf("evaluate: %v", err)
		}
		b, err := p.Evaluate(r)
		if err != nil {
			t.Fatalf("evaluate: %v", err)
		}
		ja, _ := json.Marshal(a)
		jb, _ := json.Marshal(b)
		if string(ja) != string(jb) {
			t.Fatalf("two evaluations differ:\n%s\n%s", ja, jb)
		}
	})
}
