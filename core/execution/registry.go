package execution

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// Options configure a backend built through the registry. Backends read the
// fields they need and ignore the rest.
type Options struct {
	Logger *slog.Logger
	// StateDir holds per-run scratch state (workspaces, sockets). Empty
	// means the system temporary directory.
	StateDir string
	// ArtifactsDir holds built artifacts such as guest kernels and root
	// filesystems.
	ArtifactsDir string
	// Settings are backend-specific knobs, "name=value", documented by each
	// backend.
	Settings map[string]string
}

// Factory builds a backend. It should be cheap and must not fail merely
// because the host cannot run the backend: that is what Available reports.
type Factory func(Options) (Backend, error)

var registry = struct {
	sync.RWMutex
	factories map[string]Factory
}{factories: make(map[string]Factory)}

// Register makes a backend available by name. It is meant to be called from
// an init function and panics if the name is taken.
func Register(name string, f Factory) {
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.factories[name]; dup {
		panic("execution: backend " + name + " registered twice")
	}
	registry.factories[name] = f
}

// Registered returns the registered backend names, sorted.
func Registered() []string {
	registry.RLock()
	defer registry.RUnlock()
	names := make([]string, 0, len(registry.factories))
	for n := range registry.factories {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// NewBackend builds the backend registered under name. An unknown name is
// an error wrapping ErrUnknownBackend that lists the registered ones.
func NewBackend(name string, opts Options) (Backend, error) {
	registry.RLock()
	f, ok := registry.factories[name]
	registry.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (registered: %s)", ErrUnknownBackend, name, strings.Join(Registered(), ", "))
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	b, err := f(opts)
	if err != nil {
		return nil, fmt.Errorf("create backend %s: %w", name, err)
	}
	return b, nil
}

// Strongest returns, among the given backends, the available one with the
// strongest isolation, skipping those whose isolation is below min. Ties
// keep the earlier backend. It returns ErrBackendUnavailable, with each
// backend's reason, when none qualifies.
func Strongest(backends []Backend, min Isolation) (Backend, error) {
	var best Backend
	var reasons []string
	for _, b := range backends {
		iso := b.Capabilities().Isolation
		if iso.Rank() < min.Rank() {
			reasons = append(reasons, fmt.Sprintf("%s: isolation %s is below %s", b.Name(), iso, min))
			continue
		}
		if err := b.Available(); err != nil {
			reasons = append(reasons, fmt.Sprintf("%s: %v", b.Name(), err))
			continue
		}
		if best == nil || iso.Rank() > best.Capabilities().Isolation.Rank() {
			best = b
		}
	}
	if best == nil {
		return nil, fmt.Errorf("%w: no usable backend (%s)", ErrBackendUnavailable, strings.Join(reasons, "; "))
	}
	return best, nil
}
