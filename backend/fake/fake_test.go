package fake_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/backend/fake"
	"glasshouse.dev/glasshouse/core/execution/executiontest"
)

// scripts implements every conformance scenario in Go.
func scripts() map[string]fake.Script {
	hang := func(p *fake.Proc) fake.Exit { <-p.Ctx.Done(); return fake.Exit{Code: -1, Signal: "SIGKILL"} }
	daemon := func(p *fake.Proc) {
		p.Spawn(func(ctx context.Context) { <-ctx.Done() })
		fmt.Fprintln(p.Stdout, "daemon started")
	}
	return map[string]fake.Script{
		executiontest.CodeExit0: func(p *fake.Proc) fake.Exit { fmt.Fprintln(p.Stdout, "ok"); return fake.Exit{} },
		executiontest.CodeExit7: func(*fake.Proc) fake.Exit { return fake.Exit{Code: 7} },
		executiontest.CodeRaise: func(p *fake.Proc) fake.Exit {
			fmt.Fprintln(p.Stderr, "RuntimeError: boom")
			return fake.Exit{Code: 1}
		},
		executiontest.CodeSIGTERM:        func(*fake.Proc) fake.Exit { return fake.Exit{Code: -1, Signal: "SIGTERM"} },
		executiontest.CodeDaemonThenHang: func(p *fake.Proc) fake.Exit { daemon(p); return hang(p) },
		executiontest.CodeDaemonThenExit: func(p *fake.Proc) fake.Exit { daemon(p); return fake.Exit{} },
		executiontest.CodeHang:           hang,
		executiontest.CodeFlood: func(p *fake.Proc) fake.Exit {
			w := p.Stdout
			if p.Env["STREAM"] == "stderr" {
				w = p.Stderr
			}
			chunk := []byte(strings.Repeat("x", 4096))
			for {
				if _, err := w.Write(chunk); err != nil {
					return hang(p)
				}
			}
		},
		executiontest.CodeUpperStdin: func(p *fake.Proc) fake.Exit {
			b, _ := io.ReadAll(p.Stdin)
			p.Stdout.Write([]byte(strings.ToUpper(string(b))))
			return fake.Exit{}
		},
		executiontest.CodePrintEnv: func(p *fake.Proc) fake.Exit {
			env := map[string]string{"PATH": "/usr/bin:/bin"}
			for k, v := range p.Env {
				env[k] = v
			}
			json.NewEncoder(p.Stdout).Encode(env)
			return fake.Exit{}
		},
		executiontest.CodeFiles: func(p *fake.Proc) fake.Exit {
			data, err := os.ReadFile(filepath.Join(p.Dir, "data/in.txt"))
			if err != nil {
				return fake.Exit{Code: 1}
			}
			rev := []byte(string(data))
			for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
				rev[i], rev[j] = rev[j], rev[i]
			}
			os.WriteFile(filepath.Join(p.Dir, "out.txt"), rev, 0o644)
			os.MkdirAll(filepath.Join(p.Dir, "nested/deep"), 0o755)
			os.WriteFile(filepath.Join(p.Dir, "nested/deep/out2.txt"), []byte(strings.ToUpper(string(data))), 0o644)
			return fake.Exit{}
		},
		executiontest.CodeConcurrent: func(p *fake.Proc) fake.Exit {
			i := p.Env["INDEX"]
			os.WriteFile(filepath.Join(p.Dir, "index.txt"), []byte(i), 0o644)
			fmt.Fprintln(p.Stdout, "run", i)
			return fake.Exit{}
		},
	}
}

func TestConformance(t *testing.T) {
	b := fake.New(fake.Config{Scripts: scripts()})
	executiontest.Run(t, executiontest.Harness{
		Backend: b,
		Timeout: 10 * time.Second,
		Leftovers: func(string) []string {
			if n := b.Live(); n > 0 {
				return []string{fmt.Sprintf("%d script processes still running", n)}
			}
			return nil
		},
	})
}
