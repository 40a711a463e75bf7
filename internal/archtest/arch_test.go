package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "glasshouse.dev/glasshouse/"

type pkg struct {
	ImportPath string
	Doc        string
	Name       string
	Deps       []string
	GoFiles    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "-deps=false", module+"...")
	cmd.Dir = "../.."
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list: %v", err)
	}
	return pkgs
}

// TestCoreImportsNoImplementation enforces the layering rule: core/ holds
// contracts and pure logic and never depends on backends, collectors or
// commands.
func TestCoreImportsNoImplementation(t *testing.T) {
	forbidden := []string{"backend/", "ebpf", "audit", "cmd/", "guest/", "server", "store"}
	for _, p := range listPackages(t) {
		if !strings.HasPrefix(p.ImportPath, module+"core/") {
			continue
		}
		for _, d := range p.Deps {
			rel, ok := strings.CutPrefix(d, module)
			if !ok {
				continue
			}
			for _, f := range forbidden {
				if strings.HasPrefix(rel, f) {
					t.Errorf("%s imports %s", p.ImportPath, d)
				}
			}
		}
	}
}

// TestEveryPackageIsDocumented requires a package doc comment on every
// non-main package with Go files.
func TestEveryPackageIsDocumented(t *testing.T) {
	for _, p := range listPackages(t) {
		if len(p.GoFiles) == 0 {
			continue
		}
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("%s has no package doc comment", p.ImportPath)
		}
	}
}
