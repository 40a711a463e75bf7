// Command glasshouse-bench load-tests a glasshouse-server: N concurrent
// clients post runs for a duration or a count, then it reports throughput,
// latency percentiles and errors by status, fetches every receipt the
// server returned and verifies its digest.
//
// With --mode bare it runs the same code as bare `python3 -c CODE` with the
// same parallelism instead, the baseline a sandbox's overhead is measured
// against (scripts/loadtest.sh runs both and prints the ratio).
//
//	glasshouse-bench --url http://127.0.0.1:8080 --clients 16 --duration 60s
//	glasshouse-bench --mode bare --clients 16 --duration 60s
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"glasshouse.dev/glasshouse/core/receipt"
)

// Summary is what a load run measured; --json prints it.
type Summary struct {
	Mode     string         `json:"mode"`
	Clients  int            `json:"clients"`
	Requests int            `json:"requests"`
	OK       int            `json:"ok"`
	Errors   map[string]int `json:"errors"`
	Failures map[string]int `json:"failures,omitempty"`
	// Profiling counts the runs by their receipt's profiling status.
	Profiling  map[string]int `json:"profiling,omitempty"`
	Seconds    float64        `json:"seconds"`
	Throughput float64        `json:"throughput"`
	P50MS      float64        `json:"p50_ms"`
	P95MS      float64        `json:"p95_ms"`
	P99MS      float64        `json:"p99_ms"`
	MaxMS      float64        `json:"max_ms"`
	// CPUSeconds is the CPU time (user+system) this tool used during the
	// load; ChildrenCPUSeconds that of its python3 children in bare mode.
	CPUSeconds         float64 `json:"cpu_seconds"`
	ChildrenCPUSeconds float64 `json:"children_cpu_seconds"`
	// ServerCPUSeconds is the CPU time of the server process (--server-pid)
	// and its waited-for children (the workloads) during the load.
	ServerCPUSeconds float64 `json:"server_cpu_seconds,omitempty"`
	// WorkloadCPUSeconds is the part of ServerCPUSeconds spent by the
	// server's children (the workloads, with the eBPF work done in their
	// context).
	WorkloadCPUSeconds float64 `json:"workload_cpu_seconds,omitempty"`
	// Verified counts receipts fetched back whose digest verified and
	// matched the run's response; VerifyErrors says what went wrong with
	// the others.
	Verified     int            `json:"verified"`
	VerifyErrors map[string]int `json:"verify_errors,omitempty"`
}

type config struct {
	mode, url, token, code, profile, expect string
	barePath, python                        string
	clients, count                          int
	duration                                time.Duration
	verify, asJSON                          bool
	serverPID                               int
	timeout                                 time.Duration
}

func main() {
	var c config
	fs := flag.NewFlagSet("glasshouse-bench", flag.ContinueOnError)
	fs.StringVar(&c.mode, "mode", "server", "server (POST /run) or bare (python3 -c on this host)")
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "server URL")
	fs.StringVar(&c.token, "token", os.Getenv("GLASSHOUSE_TOKEN"), "bearer token (default $GLASSHOUSE_TOKEN)")
	fs.StringVar(&c.code, "code", "print(2+2)", "Python code each request runs")
	fs.StringVar(&c.profile, "profile", "best-effort", "profile mode of each run")
	fs.StringVar(&c.expect, "expect", "4\n", "expected stdout; a run that prints anything else counts as an error (empty: no check)")
	fs.StringVar(&c.barePath, "bare-path", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"PATH of bare runs; the default is the process backend's, so both run the same python3")
	fs.IntVar(&c.clients, "clients", 16, "concurrent clients")
	fs.IntVar(&c.count, "count", 0, "total requests (0: run for --duration)")
	fs.DurationVar(&c.duration, "duration", 60*time.Second, "how long to run when --count is 0")
	fs.BoolVar(&c.verify, "verify", true, "fetch every receipt afterwards and verify its digest")
	fs.BoolVar(&c.asJSON, "json", false, "print the summary as JSON")
	fs.IntVar(&c.serverPID, "server-pid", 0, "pid of a local server whose CPU time (with its children) to measure during the load")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Minute, "per-request HTTP timeout")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	if c.clients < 1 || c.clients > 10000 || c.count < 0 || (c.count == 0 && c.duration <= 0) {
		fmt.Fprintln(os.Stderr, "glasshouse-bench: need 1..10000 clients and a positive --count or --duration")
		os.Exit(2)
	}
	if c.mode != "server" && c.mode != "bare" {
		fmt.Fprintf(os.Stderr, "glasshouse-bench: --mode %q: want server or bare\n", c.mode)
		os.Exit(2)
	}
	if c.mode == "bare" {
		p, err := lookPath("python3", c.barePath)
		if err != nil {
			fmt.Fprintf(os.Stderr, "glasshouse-bench: %v\n", err)
			os.Exit(2)
		}
		c.python = p
	}
	s := run(context.Background(), c)
	if c.asJSON {
		json.NewEncoder(os.Stdout).Encode(s)
	} else {
		printSummary(os.Stdout, s)
	}
	if len(s.Errors) > 0 || len(s.VerifyErrors) > 0 {
		os.Exit(1)
	}
}

// result is one request's outcome.
type result struct {
	latency time.Duration
	errKey  string // "" when OK
	failure string
	prof    string
	id      string
	digest  string
}

func run(ctx context.Context, c config) Summary {
	client := &http.Client{
		Timeout:   c.timeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: c.clients, MaxConnsPerHost: c.clients},
	}
	body, _ := json.Marshal(map[string]any{"code": c.code, "profile": c.profile})
	var do func() result
	switch c.mode {
	case "server":
		do = func() result { return postRun(ctx, client, c, body) }
	case "bare":
		do = func() result { return bare(ctx, c) }
	}

	var issued atomic.Int64
	deadline := time.Now().Add(c.duration)
	more := func() bool {
		if c.count > 0 {
			return issued.Add(1) <= int64(c.count)
		}
		return time.Now().Before(deadline)
	}
	perClient := make([][]result, c.clients)
	selfBefore, childBefore := cpuTimes()
	serverBefore, workBefore := procCPU(c.serverPID)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range c.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for more() {
				perClient[i] = append(perClient[i], do())
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	selfAfter, childAfter := cpuTimes()
	serverAfter, workAfter := procCPU(c.serverPID)

	s := Summary{Mode: c.mode, Clients: c.clients, Errors: map[string]int{}, Failures: map[string]int{}, Profiling: map[string]int{}, Seconds: elapsed.Seconds()}
	var lat []time.Duration
	var done []result
	for _, rs := range perClient {
		for _, r := range rs {
			s.Requests++
			if r.id != "" {
				// Every run the server answered has a receipt to check,
				// failed or not.
				done = append(done, r)
				s.Failures[r.failure]++
				s.Profiling[r.prof]++
			}
			if r.errKey != "" {
				s.Errors[r.errKey]++
				continue
			}
			s.OK++
			lat = append(lat, r.latency)
		}
	}
	s.Throughput = float64(s.OK) / elapsed.Seconds()
	s.CPUSeconds, s.ChildrenCPUSeconds = selfAfter-selfBefore, childAfter-childBefore
	s.ServerCPUSeconds, s.WorkloadCPUSeconds = serverAfter-serverBefore, workAfter-workBefore
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := int(float64(len(lat))*p+0.5) - 1
		i = max(0, min(i, len(lat)-1))
		return float64(lat[i].Microseconds()) / 1000
	}
	s.P50MS, s.P95MS, s.P99MS, s.MaxMS = pct(0.50), pct(0.95), pct(0.99), pct(1)
	if c.mode == "server" && c.verify {
		s.Verified, s.VerifyErrors = verifyAll(ctx, client, c, done)
	}
	return s
}

func postRun(ctx context.Context, client *http.Client, c config, body []byte) result {
	req, err := http.NewRequestWithContext(ctx, "POST", c.url+"/run", bytes.NewReader(body))
	if err != nil {
		return result{errKey: "request"}
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	t0 := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return result{errKey: "transport", latency: time.Since(t0)}
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	lat := time.Since(t0)
	if err != nil {
		return result{errKey: "transport", latency: lat}
	}
	if resp.StatusCode != http.StatusOK {
		return result{errKey: "status " + strconv.Itoa(resp.StatusCode), latency: lat}
	}
	var rr struct {
		ID        string `json:"id"`
		Stdout    string `json:"stdout"`
		Failure   string `json:"failure"`
		Digest    string `json:"digest"`
		Profiling string `json:"profiling"`
	}
	if err := json.Unmarshal(b, &rr); err != nil || rr.ID == "" {
		return result{errKey: "bad response", latency: lat}
	}
	r := result{latency: lat, failure: rr.Failure, prof: rr.Profiling, id: rr.ID, digest: rr.Digest}
	switch {
	case rr.Failure != "none":
		r.errKey = "failure " + rr.Failure
	case c.expect != "" && rr.Stdout != c.expect:
		r.errKey = "unexpected stdout"
	}
	return r
}

// bare runs the code as the sandbox would, without the sandbox: the same
// interpreter (looked up in --bare-path) and the same minimal environment,
// so the comparison measures the sandbox's overhead and nothing else.
func bare(ctx context.Context, c config) result {
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, c.python, "-c", c.code)
	cmd.Env = []string{"PATH=" + c.barePath, "HOME=" + os.TempDir(), "LANG=C.UTF-8"}
	cmd.Dir = os.TempDir()
	out, err := cmd.Output()
	r := result{latency: time.Since(t0)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.errKey = "exit " + strconv.Itoa(ee.ExitCode())
	case err != nil:
		r.errKey = "exec"
	case c.expect != "" && string(out) != c.expect:
		r.errKey = "unexpected stdout"
	}
	return r
}

// verifyAll fetches each run's receipt and checks it verifies and carries
// the digest the run's response gave.
func verifyAll(ctx context.Context, client *http.Client, c config, runs []result) (int, map[string]int) {
	errs := map[string]int{}
	var mu sync.Mutex
	var ok atomic.Int64
	work := make(chan result)
	var wg sync.WaitGroup
	for range min(8, c.clients) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range work {
				if key := verifyOne(ctx, client, c, r); key != "" {
					mu.Lock()
					errs[key]++
					mu.Unlock()
				} else {
					ok.Add(1)
				}
			}
		}()
	}
	for _, r := range runs {
		work <- r
	}
	close(work)
	wg.Wait()
	if len(errs) == 0 {
		errs = nil
	}
	return int(ok.Load()), errs
}

func verifyOne(ctx context.Context, client *http.Client, c config, r result) string {
	req, err := http.NewRequestWithContext(ctx, "GET", c.url+"/receipts/"+r.id, nil)
	if err != nil {
		return "request"
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "transport"
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "transport"
	}
	if resp.StatusCode != http.StatusOK {
		return "status " + strconv.Itoa(resp.StatusCode)
	}
	rc, err := receipt.Decode(b)
	if err != nil {
		return "verify: " + firstWords(err.Error())
	}
	if rc.ID != r.id || rc.Digest != r.digest {
		return "receipt does not match its run"
	}
	return ""
}

// cpuTimes returns the user+system CPU seconds of this process and of its
// waited-for children.
func cpuTimes() (self, children float64) {
	sec := func(ru *syscall.Rusage) float64 {
		return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	}
	var s, c syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &s)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &c)
	return sec(&s), sec(&c)
}

// procCPU returns the user+system CPU seconds of pid with its children, and
// of those children alone, from /proc (zeros when unknown). Children count
// with their own waited-for children, whether they were waited for
// themselves or still run: the server's Python fork server runs for the
// server's life, and the workloads are its children.
func procCPU(pid int) (total, children float64) {
	self, waited := statCPU(pid)
	children = waited
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			if kid, err := strconv.Atoi(f); err == nil {
				own, theirs := statCPU(kid)
				children += own + theirs
			}
		}
	}
	return self + children, children
}

// statCPU returns the user+system CPU seconds of pid alone and of its
// waited-for children, from /proc/PID/stat.
func statCPU(pid int) (self, waited float64) {
	if pid <= 0 {
		return 0, 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0
	}
	// After the command come state (field 3) ... utime (14), stime (15),
	// cutime (16), cstime (17), in clock ticks (USER_HZ, 100 on Linux).
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0, 0
	}
	var ticks [4]int64
	for j, v := range f[11:15] {
		ticks[j], _ = strconv.ParseInt(v, 10, 64)
	}
	return float64(ticks[0]+ticks[1]) / 100, float64(ticks[2]+ticks[3]) / 100
}

func lookPath(name, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in %s", name, path)
}

func firstWords(s string) string {
	if i := strings.IndexByte(s, ':'); i > 0 {
		return s[:i]
	}
	return s
}

func printSummary(w io.Writer, s Summary) {
	fmt.Fprintf(w, "mode %s: %d clients, %d requests in %.1fs\n", s.Mode, s.Clients, s.Requests, s.Seconds)
	fmt.Fprintf(w, "  throughput %.1f/s  latency p50 %.1fms  p95 %.1fms  p99 %.1fms  max %.1fms\n", s.Throughput, s.P50MS, s.P95MS, s.P99MS, s.MaxMS)
	fmt.Fprintf(w, "  ok %d  errors %v\n", s.OK, s.Errors)
	if s.Mode == "server" {
		fmt.Fprintf(w, "  failures %v  profiling %v\n  receipts verified %d  verify errors %v\n", s.Failures, s.Profiling, s.Verified, s.VerifyErrors)
	}
}
