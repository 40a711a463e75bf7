package transport

import "fmt"

// Bounds on Wake's entropy.
const (
	MinWakeEntropy = 32
	MaxWakeEntropy = 512
)

// Wake is the host's first frame to a guest restored from a snapshot
// (protocol version 2). Every guest restored from the same snapshot starts
// with the same memory, hence the same kernel random state and a stale
// clock: Wake carries fresh entropy, which the guest mixes into its kernel
// pool before forcing a reseed, and the host's wall clock.
type Wake struct {
	// Entropy is random bytes from the host, at least MinWakeEntropy.
	Entropy []byte `json:"entropy"`
	// HostTimeNS is the host's wall clock (Unix ns) when Wake was sent.
	HostTimeNS int64 `json:"host_time_ns"`
	// Prewarm has the guest run the interpreter once before it answers,
	// so that the run finds it warm (pooled guests).
	Prewarm bool `json:"prewarm,omitempty"`
}

// Validate checks the entropy's size and the clock.
func (w *Wake) Validate() error {
	switch {
	case len(w.Entropy) < MinWakeEntropy || len(w.Entropy) > MaxWakeEntropy:
		return fmt.Errorf("%w: wake: %d bytes of entropy is outside [%d, %d]", ErrBadFrame, len(w.Entropy), MinWakeEntropy, MaxWakeEntropy)
	case w.HostTimeNS <= 0:
		return fmt.Errorf("%w: wake: host_time_ns must be positive", ErrBadFrame)
	}
	return nil
}

// Awake answers Wake: the guest is ready for a run. Its workspace is the
// copy of the template's disk the host gave it, which the template
// mounted before it was saved.
type Awake struct {
	// ReseedError and ClockError say why the guest could not reseed its
	// random number generator or set its clock; the host refuses such a
	// guest.
	ReseedError string `json:"reseed_error,omitempty"`
	ClockError  string `json:"clock_error,omitempty"`
	// PrewarmNS and WakeNS are how long the prewarm and the whole wake
	// (after the clock was set) took in the guest.
	PrewarmNS int64 `json:"prewarm_ns,omitempty"`
	WakeNS    int64 `json:"wake_ns"`
}

// Validate checks the bounds.
func (a *Awake) Validate() error {
	if len(a.ReseedError) > MaxMessageLen || len(a.ClockError) > MaxMessageLen {
		return fmt.Errorf("%w: awake: an error of more than %d bytes", ErrBadFrame, MaxMessageLen)
	}
	if a.PrewarmNS < 0 || a.WakeNS < 0 {
		return fmt.Errorf("%w: awake: negative durations", ErrBadFrame)
	}
	return nil
}

// Parked is a snapshot template's last frame before it is saved.
type Parked struct {
	// ReadyNS is the guest's CLOCK_BOOTTIME when it parked.
	ReadyNS int64 `json:"ready_ns"`
}

// Validate checks the bounds.
func (p *Parked) Validate() error {
	if p.ReadyNS < 0 {
		return fmt.Errorf("%w: parked: negative ready_ns", ErrBadFrame)
	}
	return nil
}
