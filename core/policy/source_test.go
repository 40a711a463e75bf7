package policy

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const validPolicy = `name: acme
version: "1.2"
description: Acme's rules.
rules:
  - id: no-curl
    severity: deny
    description: curl must not run.
    over: processes
    condition: e.exe.endsWith("/curl")
  - id: slow
    severity: warn
    description: The run took over a minute.
    condition: outcome.duration_ms > 60000
`

func TestParseValid(t *testing.T) {
	p, err := Parse("acme.yaml", []byte(validPolicy))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name() != "acme" {
		t.Errorf("name %q", p.Name())
	}
	if got := strings.Join(p.RuleIDs(), " "); got != "acme/no-curl acme/slow" {
		t.Errorf("rules %q", got)
	}
}

// TestParseErrors checks that each broken policy is rejected with the
// file, line and column of the problem.
func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, src, want string
	}{
		{"yaml syntax", "name: acme\nversion: 1\nrules:\n  - id: \"x\n", `p.yaml:4:9: YAML:`},
		{"bad indentation", "name: acme\nversion: 1\nrules:\n  - id: a\n   severity: deny\n", `p.yaml:5:4: YAML:`},
		{"tab", "name: acme\n\tversion: 1\n", `p.yaml:2:1: YAML:`},
		{"not a mapping", "- a\n- b\n", `p.yaml:1:1: a policy must be a mapping`},
		{"empty", "", `p.yaml:1:1: empty policy`},
		{"two documents", "name: a\n---\nname: b\n", `p.yaml:3:`},
		{"unknown field", "name: acme\nversion: 1\nrulez: []\n", `p.yaml:3:1: unknown field "rulez"`},
		{"missing rules", "name: acme\nversion: 1\n", `p.yaml:1:1: missing "rules"`},
		{"empty version", "name: a\nversion:\nrules: []\n", `p.yaml:1:1: version is empty`},
		{"bad name", "name: a,b\nversion: 1\nrules: []\n", `p.yaml:1:7: name "a,b"`},
		{"rules not a list", "name: a\nversion: 1\nrules: 3\n", `p.yaml:3:8: rules must be a list`},
		{"bad severity", "name: a\nversion: 1\nrules:\n  - id: r\n    severity: fatal\n    condition: true\n", `p.yaml:5:15: severity "fatal": want deny or warn`},
		{"bad over", "name: a\nversion: 1\nrules:\n  - id: r\n    severity: deny\n    over: disks\n    condition: true\n", `p.yaml:6:11: over "disks"`},
		{"unknown rule field", "name: a\nversion: 1\nrules:\n  - id: r\n    severity: deny\n    conditon: true\n", `p.yaml:6:5: unknown rule field "conditon"`},
		{"missing condition", "name: a\nversion: 1\nrules:\n  - id: r\n    severity: deny\n", `p.yaml:4:5: rule is missing "condition"`},
		{"duplicate id", "name: a\nversion: 1\nrules:\n  - id: r\n    severity: deny\n    condition: true\n  - id: r\n    severity: deny\n    condition: true\n", `p.yaml:7:9: rule id "r" already used at line 4`},
		{"duplicate key", "name: a\nname: b\nversion: 1\nrules: []\n", `p.yaml:2:1: YAML: mapping key "name" already defined`},
		{"alias", "name: &n a\nversion: *n\nrules: []\n", `p.yaml:1:7: name: anchors, aliases and tags are not allowed`},
		{"list as condition", "name: a\nversion: 1\nrules:\n  - id: r\n    severity: deny\n    condition: [1]\n", `p.yaml:6:16: condition must be a string`},
		// CEL errors point into the condition.
		{"cel plain", "name: a\nversion: 1\nrules:\n  - id: r\n    severity: deny\n    condition: outcome.exit_codee == 1\n", `p.yaml:6:23: rule "r": condition: undefined field 'exit_codee'`},
		{"cel double-quoted", "name: a\nversion: 1\nrules:\n  - id: r\n    severity: deny\n    condition: \"profiling.statuz == 'x'\"\n", `p.yaml:6:26: rule "r": condition: undefined field 'statuz'`},
		{"cel block", "name: a\nversion: 1\nrules:\n  - id: r\n    severity: deny\n    over: files\n    condition: |\n      e.op == \"write\" &&\n        e.paht == \"/x\"\n", `p.yaml:9:10: rule "r": condition: undefined field 'paht'`},
		{"cel syntax", "name: a\nversion: 1\nrules:\n  - id: r\n    severity: deny\n    condition: outcome.exit_code ==\n", `p.yaml:6:36: rule "r": condition: Syntax error`},
		{"cel entry outside over", "name: a\nversion: 1\nrules:\n  - id: r\n    severity: deny\n    condition: e.path == \"/\"\n", `p.yaml:6:16: rule "r": condition: undeclared reference to 'e'`},
		{"cel not bool", "name: a\nversion: 1\nrules:\n  - id: r\n    severity: deny\n    condition: outcome.exit_code\n", `p.yaml:6:16: rule "r": condition is a int, want a bool`},
		{"bad glob", "name: a\nversion: 1\nrules:\n  - id: r\n    severity: deny\n    over: files\n    condition: e.path.glob(\"/a/**b\")\n", `p.yaml:7:28: rule "r": glob: bad glob pattern`},
		{"bad cidr", "name: a\nversion: 1\nrules:\n  - id: r\n    severity: deny\n    over: network\n    condition: e.address.inCIDR(\"10.0.0.0/33\")\n", `p.yaml:7:33: rule "r": inCIDR:`},
		{"bad regexp", "name: a\nversion: 1\nrules:\n  - id: r\n    severity: deny\n    over: files\n    condition: e.path.matches(\"(\")\n", `p.yaml:7:31: rule "r": matches:`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tc.src))
			if err == nil {
				t.Fatal("parsed")
			}
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Errorf("error does not wrap ErrInvalidPolicy: %v", err)
			}
			if !strings.HasPrefix(err.Error(), tc.want) && !strings.Contains(err.Error(), "\n"+tc.want) {
				t.Errorf("error:\n%v\nwant prefix:\n%s", err, tc.want)
			}
		})
	}
}

func TestParseBounds(t *testing.T) {
	big := "name: a\nversion: 1\nrules:\n  - id: r\n    severity: deny\n    condition: \"" + strings.Repeat("true && ", MaxConditionBytes/8+1) + "true\"\n"
	if _, err := Parse("p.yaml", []byte(big)); err == nil || !strings.Contains(err.Error(), "condition is") || !strings.Contains(err.Error(), "limit of 16384") {
		t.Errorf("long condition: %v", err)
	}
	huge := make([]byte, MaxPolicyBytes+1)
	if _, err := Parse("p.yaml", huge); err == nil || !strings.Contains(err.Error(), "limit of") {
		t.Errorf("huge policy: %v", err)
	}
	var b strings.Builder
	b.WriteString("name: a\nversion: 1\nrules:\n")
	for i := 0; i <= MaxRules; i++ {
		b.WriteString("  - {id: r" + strconv.Itoa(i) + ", severity: deny, condition: 'true'}\n")
	}
	if _, err := Parse("p.yaml", []byte(b.String())); err == nil || !strings.Contains(err.Error(), "over the limit of 512") {
		t.Errorf("too many rules: %v", err)
	}
	b.Reset()
	b.WriteString("name: a\nversion: 1\nrules:\n")
	cond := strings.Repeat("true && ", 1000) + "true"
	for i := 0; i < 10; i++ {
		b.WriteString("  - {id: r" + strconv.Itoa(i) + ", severity: deny, condition: '" + cond + "'}\n")
	}
	if _, err := Parse("p.yaml", []byte(b.String())); err == nil || !strings.Contains(err.Error(), "conditions total over 65536 bytes") {
		t.Errorf("too much CEL: %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "acme.yaml")
	if err := os.WriteFile(file, []byte(validPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load("no-network, " + file + ",complete-observation")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name() != "no-network,acme,complete-observation" {
		t.Errorf("name %q", p.Name())
	}
	want := "no-network/network acme/no-curl acme/slow complete-observation/incomplete"
	if got := strings.Join(p.RuleIDs(), " "); got != want {
		t.Errorf("rules %q, want %q", got, want)
	}
	if _, err := Load("no-network,no-network"); !errors.Is(err, ErrDuplicatePolicy) {
		t.Errorf("duplicate: %v", err)
	}
	if _, err := Load(" , "); !errors.Is(err, ErrNoPolicy) {
		t.Errorf("empty: %v", err)
	}
	_, err = Load("no-netwrk")
	if !errors.Is(err, ErrUnknownPack) || !strings.Contains(err.Error(), "no-network") {
		t.Errorf("unknown pack: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("name: a\nversion: 1\nrules:\n  - id: r\n    severity: deny\n    condition: nope\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad); !errors.Is(err, ErrInvalidPolicy) || !strings.HasPrefix(err.Error(), bad+":6:16:") {
		t.Errorf("bad file: %v", err)
	}
	a, _ := Load("no-network")
	b, _ := Load("no-network")
	if a != b {
		t.Error("packs are compiled more than once")
	}
}

func TestPacks(t *testing.T) {
	want := []string{"complete-observation", "no-network", "no-sensitive-reads", "no-subprocess", "resource-caps", "workspace-only-writes"}
	got := Packs()
	if len(got) != len(want) {
		t.Fatalf("packs %v", got)
	}
	for i, p := range got {
		if p.Name != want[i] || p.Description == "" {
			t.Errorf("pack %d: %+v, want name %s and a description", i, p, want[i])
		}
		src, err := PackSource(p.Name)
		if err != nil || !strings.Contains(string(src), "name: "+p.Name) {
			t.Errorf("source of %s: %v", p.Name, err)
		}
	}
}
