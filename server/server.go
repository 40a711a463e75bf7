package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Server is the HTTP API. Build it with New, serve it with Serve (or mount
// Handler and call Shutdown yourself).
type Server struct {
	cfg Config
	log *slog.Logger

	backends  []*backendState
	byName    map[string]*backendState
	def       *backendState
	defReason string

	adm      *admission
	m        *metrics
	policies *policyCache
	runShape *shape

	// kill is closed once the shutdown grace has expired: every run's
	// context ends then (see runContext).
	kill     chan struct{}
	killOnce sync.Once
	runs     sync.WaitGroup
	trackMu  sync.Mutex
	active   atomic.Int64
	draining atomic.Bool

	handler http.Handler
}

// New builds a server from cfg. It probes every backend once.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger}
	if err := s.setupBackends(); err != nil {
		return nil, err
	}
	s.adm = newAdmission(cfg.MaxConcurrency, cfg.MaxQueue)
	s.m = newMetrics(s)
	s.policies = newPolicyCache(cfg.Policies)
	s.runShape = runShape(&s.cfg.Limits)
	s.kill = make(chan struct{})
	s.handler = s.routes()
	return s, nil
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// DefaultBackend returns the name of the backend runs use by default and
// why it was chosen, or "" when none is usable.
func (s *Server) DefaultBackend() (name, reason string) {
	if s.def == nil || s.def.engine == nil {
		return "", s.defReason
	}
	return s.def.name(), s.defReason
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	handle := func(pattern, route string, h func(w http.ResponseWriter, r *http.Request, tenant string) *Error, auth bool) {
		mux.Handle(pattern, s.instrument(route, func(w http.ResponseWriter, r *http.Request) *Error {
			tenant := ""
			if auth {
				t, e := s.authenticate(r)
				if e != nil {
					s.m.rejected.WithLabelValues("unauthorized").Inc()
					return e
				}
				tenant = t
			}
			return h(w, r, tenant)
		}))
	}
	handle("POST /run", "run", s.handleRun, true)
	handle("POST /runs", "runs", s.handleBatch, true)
	handle("GET /receipts/{id}", "receipt", s.handleReceipt, true)
	handle("GET /receipts", "receipts", s.handleList, true)
	handle("GET /health", "health", s.handleHealth, false)
	mux.Handle("GET /metrics", s.m.handler())
	mux.Handle("/", s.instrument("other", func(w http.ResponseWriter, r *http.Request) *Error {
		if allow := allowedMethods(r.URL.Path); allow != "" {
			w.Header().Set("Allow", allow)
			return errorf(http.StatusMethodNotAllowed, "%s does not accept %s (allowed: %s)", r.URL.Path, r.Method, allow)
		}
		return errorf(http.StatusNotFound, "no such endpoint: %s", truncate(r.URL.Path))
	}))
	return mux
}

// allowedMethods returns the methods a known path accepts, "" if the path
// is unknown; the catch-all route uses it to answer 405 in JSON.
func allowedMethods(path string) string {
	switch {
	case path == "/run" || path == "/runs":
		return "POST"
	case path == "/receipts" || path == "/health" || path == "/metrics":
		return "GET, HEAD"
	case strings.HasPrefix(path, "/receipts/") && !strings.Contains(path[len("/receipts/"):], "/"):
		return "GET, HEAD"
	}
	return ""
}

// logInfo lets a handler add the run id to the request's log line.
type logInfo struct {
	runID string
}

type logInfoKey struct{}

func setRunID(r *http.Request, id string) {
	if li, ok := r.Context().Value(logInfoKey{}).(*logInfo); ok {
		li.runID = id
	}
}

// statusWriter records the status code; Unwrap keeps http.ResponseController
// (flushing, deadlines) working through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// instrument turns a handler's *Error into a response and records the
// request in the metrics and the log.
func (s *Server) instrument(route string, h func(w http.ResponseWriter, r *http.Request) *Error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		li := &logInfo{}
		r = r.WithContext(context.WithValue(r.Context(), logInfoKey{}, li))
		sw := &statusWriter{ResponseWriter: w}
		if e := h(sw, r); e != nil {
			if sw.status == 0 {
				writeError(sw, e)
			}
		}
		if sw.status == 0 {
			sw.WriteHeader(http.StatusOK)
		}
		d := time.Since(start)
		s.m.reqSeconds.WithLabelValues(route).Observe(d.Seconds())
		s.m.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", sw.status, "duration_ms", d.Milliseconds(), "remote", r.RemoteAddr}
		if li.runID != "" {
			attrs = append(attrs, "run_id", li.runID)
		}
		level := slog.LevelInfo
		if route == "health" || route == "receipt" || route == "receipts" {
			level = slog.LevelDebug
		}
		if sw.status >= 500 {
			level = slog.LevelWarn
		}
		s.log.Log(r.Context(), level, "request", attrs...)
	})
}

// Serve recovers runs a previous process left in flight, then serves ln
// until ctx ends, and shuts down gracefully: new runs are refused with
// 503, runs in flight get ShutdownGrace to finish, then are killed and
// recorded as infrastructure failures. It returns after every run has been
// recorded. Serve does not close the store.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	n, err := s.Recover(ctx)
	if err != nil {
		return fmt.Errorf("recover in-flight runs: %w", err)
	}
	if n > 0 {
		s.log.Warn("recorded runs lost by a previous process as infrastructure failures", "runs", n)
	}
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()

	retentionDone := make(chan struct{})
	retentionCtx, stopRetention := context.WithCancel(ctx)
	go func() {
		defer close(retentionDone)
		s.retain(retentionCtx)
	}()
	defer func() {
		stopRetention()
		<-retentionDone
	}()

	select {
	case err := <-serveErr:
		s.Shutdown(context.Background())
		return err
	case <-ctx.Done():
	}
	s.log.Info("shutting down", "in_flight", s.active.Load(), "grace", s.cfg.ShutdownGrace)
	shutdownDone := make(chan error, 1)
	go func() { shutdownDone <- hs.Shutdown(context.Background()) }()
	graceCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	s.Shutdown(graceCtx)
	// Handlers are answering their last runs now; give slow clients a
	// bounded time to read them.
	select {
	case <-shutdownDone:
	case <-time.After(10 * time.Second):
		hs.Close()
	}
	<-serveErr
	return nil
}

// Shutdown stops admitting runs and waits for those in flight until ctx
// ends; then it kills the rest and waits for them to be recorded. Safe to
// call more than once.
func (s *Server) Shutdown(ctx context.Context) {
	s.trackMu.Lock()
	s.draining.Store(true)
	s.trackMu.Unlock()
	s.adm.stopAdmitting()
	idle := make(chan struct{})
	go func() {
		s.runs.Wait()
		close(idle)
	}()
	select {
	case <-idle:
		return
	case <-ctx.Done():
	}
	s.log.Warn("shutdown grace expired; killing runs still in flight", "runs", s.active.Load())
	s.killOnce.Do(func() { close(s.kill) })
	<-idle
}

// runContext returns the context of one run: not the request's (a client
// that goes away does not stop its run), but ended by the shutdown's kill.
// The caller must call cancel.
func (s *Server) runContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-s.kill:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

func (s *Server) retain(ctx context.Context) {
	r := s.cfg.Retention
	if r.MaxAge == 0 && r.MaxCount == 0 {
		return
	}
	t := time.NewTicker(s.cfg.RetentionEvery)
	defer t.Stop()
	for {
		n, err := s.cfg.Store.Prune(ctx, r, time.Now())
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			s.m.storeErrors.WithLabelValues("prune").Inc()
			s.log.Warn("prune receipts", "err", err)
		case n > 0:
			s.log.Info("pruned receipts", "runs", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
