package server

import (
	"context"
	"net/http"
	"time"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/version"
)

// Health is the body of GET /health.
type Health struct {
	// Status is "ok", "degraded" (runs work but something is missing, such
	// as the profiler) or "unavailable" (no usable backend, or the store
	// fails); the code is 503 when unavailable or draining.
	Status         string          `json:"status"`
	Version        string          `json:"version"`
	DefaultBackend DefaultBackend  `json:"default_backend"`
	Backends       []BackendHealth `json:"backends"`
	Profiler       ProfilerHealth  `json:"profiler"`
	Store          StoreHealth     `json:"store"`
	Auth           string          `json:"auth"`
	Signing        bool            `json:"signing"`
	Policies       bool            `json:"policies"`
	Queue          QueueHealth     `json:"queue"`
	Draining       bool            `json:"draining"`
}

// DefaultBackend says which backend runs use by default and why.
type DefaultBackend struct {
	Name      string `json:"name"`
	Isolation string `json:"isolation"`
	Reason    string `json:"reason"`
}

// BackendHealth describes one backend.
type BackendHealth struct {
	Name      string `json:"name"`
	Isolation string `json:"isolation"`
	Profiling string `json:"profiling"`
	Usable    bool   `json:"usable"`
	Reason    string `json:"reason,omitempty"`
	// Details are the backend's own state lines (execution.Detailer),
	// such as the process backend's Python fork server.
	Details []string `json:"details,omitempty"`
}

// ProfilerHealth describes the shared host profiler.
type ProfilerHealth struct {
	Status    string `json:"status"` // "loaded" or "unavailable"
	Collector string `json:"collector,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// StoreHealth says whether the store answers.
type StoreHealth struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// QueueHealth is the admission state.
type QueueHealth struct {
	InFlight int   `json:"in_flight"`
	Slots    int   `json:"slots"`
	Queued   int64 `json:"queued"`
	MaxQueue int   `json:"max_queue"`
}

// Health reports on the server.
func (s *Server) Health(ctx context.Context) Health {
	h := Health{
		Status:   "ok",
		Version:  version.Version,
		Auth:     "none",
		Signing:  s.cfg.Sign != nil,
		Policies: s.cfg.Policies != nil,
		Queue:    QueueHealth{InFlight: s.adm.inFlight(), Slots: s.adm.capacity(), Queued: s.adm.queued(), MaxQueue: s.adm.queueLimit()},
		Draining: s.draining.Load(),
		Backends: []BackendHealth{},
	}
	if s.cfg.Tokens != nil {
		h.Auth = "tokens"
	}
	for _, bs := range s.backends {
		bh := BackendHealth{Name: bs.name(), Isolation: string(bs.caps.Isolation), Profiling: string(bs.caps.Profiling), Usable: bs.engine != nil}
		if bs.unusable != nil {
			bh.Reason = bs.unusable.Error()
		}
		if d, ok := bs.b.(execution.Detailer); ok {
			bh.Details = d.Details()
		}
		h.Backends = append(h.Backends, bh)
	}
	h.DefaultBackend.Reason = s.defReason
	if name, _ := s.DefaultBackend(); name != "" {
		h.DefaultBackend.Name = name
		h.DefaultBackend.Isolation = string(s.def.caps.Isolation)
	} else {
		h.Status = "unavailable"
		if s.def != nil {
			h.DefaultBackend.Name = s.def.name()
			h.DefaultBackend.Reason += ": " + s.def.unusable.Error()
		}
	}
	switch p := s.cfg.Profiler; {
	case p == nil:
		h.Profiler = ProfilerHealth{Status: "unavailable", Reason: "no host profiler is loaded"}
		if s.cfg.ProfilerErr != nil {
			h.Profiler.Reason = s.cfg.ProfilerErr.Error()
		}
	default:
		h.Profiler = ProfilerHealth{Status: "loaded", Collector: p.Collector()}
		if err := p.Available(); err != nil {
			h.Profiler.Status, h.Profiler.Reason = "unavailable", err.Error()
		}
	}
	if h.Profiler.Status != "loaded" && h.Status == "ok" {
		h.Status = "degraded"
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.cfg.Store.Ping(sctx); err != nil {
		h.Store = StoreHealth{Error: err.Error()}
		h.Status = "unavailable"
	} else {
		h.Store.OK = true
	}
	return h
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request, _ string) *Error {
	h := s.Health(r.Context())
	code := http.StatusOK
	if h.Status == "unavailable" || h.Draining {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, h)
	return nil
}
