package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/internal/testenv"
)

// BenchmarkRunOverhead measures the wall time of `glasshouse run --backend
// process -- python3 -c pass` against bare `python3 -c pass`, interleaved so both see the same
// machine load, and reports the medians and their ratio. A third variant
// is the least any Go CLI can cost: a static Go program that only runs
// python3 -c pass as its child and waits (go-wrapper-ratio). A fourth is
// the same program in C (c-wrapper-ratio, when gcc is installed): the
// least any parent process costs, which tells the Go runtime's share
// apart from process creation's.
func BenchmarkRunOverhead(b *testing.B) {
	testenv.RequireRoot(b)
	python := testenv.RequireBinary(b, "python3")
	if p, err := exec.LookPath("/usr/bin/python3"); err == nil {
		python = p // the interpreter the sandbox's clean PATH finds
	}
	dir := b.TempDir()
	bin := filepath.Join(dir, "glasshouse")
	buildCLI(b, "-tags", "lean", "-o", bin)
	wrapper := buildGo(b, dir, "wrapper", `package main

import (
	"os"
	"os/exec"
)

func main() {
	if exec.Command(os.Args[1], os.Args[2:]...).Run() != nil {
		os.Exit(1)
	}
}
`)
	cWrapper := buildC(b, dir, "cwrapper", `#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
	pid_t pid = fork();
	if (pid == 0) {
		execv(argv[1], argv + 1);
		_exit(127);
	}
	int status;
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		return 1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
`)
	timeIt := func(name string, args ...string) time.Duration {
		cmd := exec.Command(name, args...)
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		return time.Since(start)
	}
	for i := 0; i < 5; i++ { // warm the page cache
		timeIt(python, "-c", "pass")
		timeIt(bin, "run", "--backend", "process", "--", "python3", "-c", "pass")
	}
	var bare, gh, wrapped, cWrapped []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		bare = append(bare, timeIt(python, "-c", "pass"))
		gh = append(gh, timeIt(bin, "run", "--backend", "process", "--", "python3", "-c", "pass"))
		wrapped = append(wrapped, timeIt(wrapper, python, "-c", "pass"))
		if cWrapper != "" {
			cWrapped = append(cWrapped, timeIt(cWrapper, python, "-c", "pass"))
		}
	}
	b.StopTimer()
	mb, mg, mw := median(bare), median(gh), median(wrapped)
	if cWrapper != "" {
		b.ReportMetric(float64(median(cWrapped))/float64(mb), "c-wrapper-ratio")
	}
	b.ReportMetric(float64(mb.Microseconds())/1000, "bare-ms")
	b.ReportMetric(float64(mg.Microseconds())/1000, "glasshouse-ms")
	b.ReportMetric(float64(mg)/float64(mb), "ratio")
	b.ReportMetric(float64(mw)/float64(mb), "go-wrapper-ratio")
}

// buildGo builds the Go program src, named name, statically in dir and
// returns its path.
func buildGo(b *testing.B, dir, name, src string) string {
	b.Helper()
	file := filepath.Join(dir, name+".go")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, name)
	build := exec.Command("go", "build", "-o", out, file)
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		b.Fatal(err)
	}
	return out
}

// buildC compiles the C program src, named name, statically in dir and
// returns its path, or "" when gcc is not installed.
func buildC(b *testing.B, dir, name, src string) string {
	b.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return ""
	}
	file := filepath.Join(dir, name+".c")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, name)
	build := exec.Command(gcc, "-static", "-O2", "-o", out, file)
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		b.Fatal(err)
	}
	return out
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// buildCLI builds this command with args as scripts/setup.sh installs it:
// static (CGO_ENABLED=0).
func buildCLI(b *testing.B, args ...string) {
	b.Helper()
	build := exec.Command("go", append(append([]string{"build"}, args...), ".")...)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkStartup separates what a CLI invocation pays before any work:
// /bin/true (process creation), a hello-world Go binary (the Go runtime's
// start) and `glasshouse version` of the lean and the full build (binary
// size and package initialisation), interleaved, as medians and the lean
// build's ratio to hello-world.
// GODEBUG=inittrace=1 glasshouse version names the packages whose init
// costs most.
func BenchmarkStartup(b *testing.B) {
	dir := b.TempDir()
	bin, full := filepath.Join(dir, "glasshouse"), filepath.Join(dir, "glasshouse-full")
	buildCLI(b, "-tags", "lean", "-o", bin)
	buildCLI(b, "-o", full)
	hello := buildGo(b, dir, "hello", "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"hi\\n\") }\n")
	truePath, err := exec.LookPath("true")
	if err != nil {
		b.Skip("no true binary")
	}
	timeIt := func(name string, args ...string) time.Duration {
		start := time.Now()
		if err := exec.Command(name, args...).Run(); err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		return time.Since(start)
	}
	var tr, hw, gv, gf []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N+3; i++ {
		t, h, g, f := timeIt(truePath), timeIt(hello), timeIt(bin, "version"), timeIt(full, "version")
		if i >= 3 {
			tr, hw, gv, gf = append(tr, t), append(hw, h), append(gv, g), append(gf, f)
		}
	}
	b.StopTimer()
	mt, mh, mg := median(tr), median(hw), median(gv)
	b.ReportMetric(float64(mt.Microseconds())/1000, "true-ms")
	b.ReportMetric(float64(mh.Microseconds())/1000, "hello-go-ms")
	b.ReportMetric(float64(mg.Microseconds())/1000, "version-ms")
	b.ReportMetric(float64(median(gf).Microseconds())/1000, "full-version-ms")
	b.ReportMetric(float64(mg)/float64(mh), "version/hello")
}
