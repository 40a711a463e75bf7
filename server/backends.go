package server

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"glasshouse.dev/glasshouse/core/execution"
)

// backendState is one candidate backend and whether this server may use it.
type backendState struct {
	b    execution.Backend
	caps execution.Capabilities
	// unusable says why the backend cannot serve runs (not available on
	// this host, or refused by configuration); nil when it can.
	unusable error
	engine   *execution.Engine
}

func (bs *backendState) name() string { return bs.b.Name() }

// errUnisolated is why an unisolated backend is refused.
var errUnisolated = errors.New("isolation is none: the workload would run on the host; start the server with --allow-unisolated to permit it")

// setupBackends probes every candidate once and picks the default.
func (s *Server) setupBackends() error {
	s.byName = map[string]*backendState{}
	var usable []execution.Backend
	for _, b := range s.cfg.Backends {
		if _, dup := s.byName[b.Name()]; dup {
			return fmt.Errorf("server config: backend %s given twice", b.Name())
		}
		bs := &backendState{b: b, caps: b.Capabilities()}
		if err := b.Available(); err != nil {
			bs.unusable = err
		} else if bs.caps.Isolation.Rank() == 0 && !s.cfg.AllowUnisolated {
			bs.unusable = errUnisolated
		} else {
			eng, err := execution.New(execution.Config{Backend: b, Profiler: s.cfg.Profiler, Logger: s.log})
			if err != nil {
				return fmt.Errorf("engine for %s: %w", b.Name(), err)
			}
			bs.engine = eng
			usable = append(usable, b)
		}
		s.backends = append(s.backends, bs)
		s.byName[b.Name()] = bs
	}
	if s.cfg.Backend != "auto" {
		bs, ok := s.byName[s.cfg.Backend]
		if !ok {
			return fmt.Errorf("%w %q (candidates: %s)", execution.ErrUnknownBackend, s.cfg.Backend, strings.Join(s.backendNames(), ", "))
		}
		if errors.Is(bs.unusable, errUnisolated) {
			return fmt.Errorf("backend %s: %w", bs.name(), errUnisolated)
		}
		// An unavailable named backend is reported by /health and answered
		// with 503, not a refusal to start.
		s.def = bs
		s.defReason = "chosen with --backend"
		return nil
	}
	min := execution.IsolationContainer
	if s.cfg.AllowUnisolated {
		min = execution.IsolationNone
	}
	best, err := execution.Strongest(usable, min)
	if err != nil {
		s.defReason = "no usable backend: " + s.unusableSummary()
		return nil
	}
	s.def = s.byName[best.Name()]
	s.defReason = fmt.Sprintf("auto: strongest usable isolation (%s)", best.Capabilities().Isolation)
	if best.Capabilities().Isolation.Rank() == 0 {
		s.defReason += "; no isolating backend is usable here, so runs execute on the host (--allow-unisolated)"
	}
	return nil
}

func (s *Server) backendNames() []string {
	var out []string
	for _, bs := range s.backends {
		out = append(out, bs.name())
	}
	return out
}

func (s *Server) unusableSummary() string {
	var parts []string
	for _, bs := range s.backends {
		if bs.unusable != nil {
			parts = append(parts, bs.name()+": "+bs.unusable.Error())
		}
	}
	if len(parts) == 0 {
		return "none configured"
	}
	return strings.Join(parts, "; ")
}

// pick returns the engine for a request's backend field ("" = default).
func (s *Server) pick(name string, prefix string) (*backendState, *Error) {
	bs := s.def
	if name != "" {
		var ok bool
		if bs, ok = s.byName[name]; !ok {
			return nil, fieldErr(http.StatusBadRequest, prefix+"backend", nil, "%q is not a backend of this server (have: auto, %s)", truncate(name), strings.Join(s.backendNames(), ", "))
		}
		if errors.Is(bs.unusable, errUnisolated) {
			return nil, fieldErr(http.StatusBadRequest, prefix+"backend", nil, "%s is refused: %v", name, errUnisolated)
		}
	}
	if bs == nil {
		return nil, errorf(http.StatusServiceUnavailable, "no usable backend: %s", s.unusableSummary())
	}
	if bs.engine == nil {
		return nil, errorf(http.StatusServiceUnavailable, "backend %s is not usable here: %v", bs.name(), bs.unusable)
	}
	return bs, nil
}
