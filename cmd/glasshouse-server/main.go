// Command glasshouse-server serves Glasshouse's HTTP API: POST /run and
// POST /runs execute code in a sandbox and return the result with a
// receipt, GET /receipts/{id} and GET /receipts serve the receipts, GET
// /health and GET /metrics report on the server. See package server.
//
// It binds to 127.0.0.1:8080 by default. Bound to any other address it
// refuses to start without --tokens. SIGTERM or SIGINT shut it down
// gracefully: new runs get 503, runs in flight get --shutdown-grace to
// finish, then are killed and recorded.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/core/version"
	"glasshouse.dev/glasshouse/internal/daemon"
	"glasshouse.dev/glasshouse/server"
	"glasshouse.dev/glasshouse/store"
	"glasshouse.dev/glasshouse/store/sqlite"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type settings map[string]string

func (s settings) String() string { return fmt.Sprint(map[string]string(s)) }
func (s settings) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want name=value, got %q", v)
	}
	s[k] = val
	return nil
}

func defaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/glasshouse"
	}
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "glasshouse")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "glasshouse")
	}
	return "glasshouse-data"
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("glasshouse-server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		listen          = fs.String("listen", "127.0.0.1:8080", "address to listen on")
		dataDir         = fs.String("data-dir", defaultDataDir(), "directory of the receipt database")
		tokensFile      = fs.String("tokens", "", "bearer tokens file, one \"TOKEN TENANT\" per line (required off loopback)")
		backend         = fs.String("backend", "auto", "backend runs use by default: auto or a name ("+strings.Join(execution.Registered(), ", ")+")")
		allowUnisolated = fs.Bool("allow-unisolated", false, "permit backends with no isolation (process): code runs on the host")
		maxConc         = fs.Int("max-concurrency", server.DefaultMaxConcurrency(), "runs executing at once")
		maxQueue        = fs.Int("max-queue", 64, "requests that may wait for a run slot before 429")
		profile         = fs.String("profile", string(profiling.BestEffort), "profiling mode when a request gives none: off, best-effort or required")
		signingKey      = fs.String("signing-key", "", "ed25519 private key file for ?format=dsse")
		stateDir        = fs.String("state-dir", "", "backends' per-run scratch directory (default: system temp)")
		artifactsDir    = fs.String("artifacts-dir", "", "backends' built artifacts (guest kernels, root filesystems)")
		retainAge       = fs.Duration("retain-age", 0, "delete receipts older than this (0 keeps them)")
		retainCount     = fs.Int64("retain-count", 0, "keep only the newest N receipts (0 keeps all)")
		grace           = fs.Duration("shutdown-grace", 30*time.Second, "how long runs may finish after SIGTERM before they are killed")
		synchronous     = fs.String("store-sync", "normal", "SQLite synchronous mode: normal (survives process crashes) or full (also power loss)")
		node            = fs.String("node", "", "this server's name in the store (default: hostname)")
		maxBody         = fs.Int64("max-body-bytes", server.DefaultLimits.MaxBodyBytes, "largest POST /run body")
		maxBatch        = fs.Int("max-batch", server.DefaultLimits.MaxBatch, "most runs in one POST /runs")
		maxCode         = fs.Int("max-code-bytes", server.DefaultLimits.MaxCodeBytes, "largest code")
		maxTimeout      = fs.Duration("max-timeout", server.DefaultLimits.MaxTimeout, "largest timeout a request may ask for")
		pprofAddr       = fs.String("pprof", "", "serve Go runtime profiles (net/http/pprof) on this loopback address, e.g. 127.0.0.1:6060")
	)
	// A long-lived server forks Python runs from a resident interpreter
	// unless told otherwise (see backend/process).
	backendSettings := settings{"process.python-zygote": "on"}
	fs.Var(backendSettings, "setting", "backend setting name=value (repeatable), e.g. process.python-zygote=off")
	common := daemon.Register(fs, "glasshouse-server")
	log, code := common.Parse(fs, args, stdout, stderr)
	if log == nil {
		return code
	}
	if err := serve(log, options{
		listen: *listen, dataDir: *dataDir, tokensFile: *tokensFile, backend: *backend,
		allowUnisolated: *allowUnisolated, maxConc: *maxConc, maxQueue: *maxQueue,
		profile: *profile, signingKey: *signingKey, stateDir: *stateDir, artifactsDir: *artifactsDir,
		settings: backendSettings, retention: store.Retention{MaxAge: *retainAge, MaxCount: *retainCount},
		grace: *grace, synchronous: *synchronous, node: *node, pprof: *pprofAddr,
		limits: server.Limits{MaxBodyBytes: *maxBody, MaxBatch: *maxBatch, MaxCodeBytes: *maxCode, MaxTimeout: *maxTimeout},
	}); err != nil {
		log.Error("glasshouse-server failed", "err", err)
		return 1
	}
	return 0
}

type options struct {
	listen, dataDir, tokensFile, backend string
	allowUnisolated                      bool
	maxConc, maxQueue                    int
	profile, signingKey                  string
	stateDir, artifactsDir               string
	settings                             map[string]string
	retention                            store.Retention
	grace                                time.Duration
	synchronous, node                    string
	pprof                                string
	limits                               server.Limits
}

func serve(log *slog.Logger, o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	if o.pprof != "" {
		if err := servePprof(ctx, o.pprof, log); err != nil {
			return err
		}
	}
	loopback, err := server.IsLoopback(ctx, o.listen)
	if err != nil {
		return err
	}
	var tokens *server.Tokens
	if o.tokensFile != "" {
		if tokens, err = server.LoadTokens(o.tokensFile); err != nil {
			return err
		}
	}
	switch {
	case tokens == nil && !loopback:
		return fmt.Errorf("refusing to listen on %s, which is not loopback, without --tokens", o.listen)
	case tokens == nil:
		log.Warn("no --tokens: every local client is tenant \"local\"; do not expose this port", "listen", o.listen)
	}

	st, err := sqlite.Open(ctx, sqlite.Config{Dir: o.dataDir, Synchronous: o.synchronous, Logger: log})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer st.Close()

	var backends []execution.Backend
	for _, name := range execution.Registered() {
		b, err := execution.NewBackend(name, execution.Options{Logger: log, StateDir: o.stateDir, ArtifactsDir: o.artifactsDir, Settings: o.settings})
		if err != nil {
			log.Warn("backend cannot be created", "backend", name, "err", err)
			continue
		}
		backends = append(backends, b)
		// Backends that hold resources (a VM pool) release them on exit.
		if c, ok := b.(io.Closer); ok {
			defer func() {
				if err := c.Close(); err != nil {
					log.Warn("close backend", "backend", name, "err", err)
				}
			}()
		}
	}

	prof, closeProf, profErr := openProfiler(log)
	if profErr != nil {
		log.Warn("no host profiler: receipts will say profiling is unavailable", "err", profErr)
	}
	if closeProf != nil {
		defer closeProf()
	}
	cfg := server.Config{
		Backends: backends, Backend: o.backend, AllowUnisolated: o.allowUnisolated,
		Profiler: prof.controller, ProfilerErr: profErr, ProfilerDropped: prof.dropped,
		DefaultProfile: profiling.Mode(o.profile),
		Store:          st, Node: o.node, Retention: o.retention,
		Tokens:         tokens,
		MaxConcurrency: o.maxConc, MaxQueue: o.maxQueue, Limits: o.limits,
		ShutdownGrace: o.grace,
		Logger:        log,
	}
	if err := wireExtensions(&cfg, o, log); err != nil {
		return err
	}
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	name, reason := srv.DefaultBackend()
	switch {
	case name == "":
		log.Warn("no usable backend: /run answers 503 until one is", "reason", reason)
	case strings.Contains(reason, "isolation (none)") || o.allowUnisolated && name == "process":
		log.Warn("runs execute UNISOLATED on this host (--allow-unisolated); use only for trusted code or development",
			"backend", name, "reason", reason)
	default:
		log.Info("default backend", "backend", name, "reason", reason)
	}
	// A backend with a warm pool starts filling it now, not on the first run.
	for _, b := range backends {
		if w, ok := b.(interface{ Warm() }); ok && b.Name() == name {
			w.Warm()
		}
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	log.Info("listening", "addr", ln.Addr().String(), "version", version.Version, "data_dir", o.dataDir,
		"max_concurrency", o.maxConc, "auth", map[bool]string{true: "tokens", false: "none"}[tokens != nil])
	return srv.Serve(ctx, ln)
}
