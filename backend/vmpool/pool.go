// Package vmpool keeps booted microVMs waiting so that a run does not pay
// for a boot. It is VMM-agnostic: the QEMU backend uses it now, Firecracker
// will reuse it.
//
// A Pool holds up to Size idle machines. Get hands one out and the pool
// boots a replacement in the background; a machine leaves the pool for good
// when it is taken (guests are never reused across runs). When no machine is
// idle, Get boots one in the caller (a cold start). Boot failures back off
// exponentially so that a broken host does not spin. A Pool is safe for
// concurrent use; Close stops it and closes every idle machine.
package vmpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// ErrClosed is returned by Get after Close.
var ErrClosed = errors.New("vm pool closed")

// Machine is a booted guest waiting for a run.
type Machine interface {
	// Alive reports whether the machine can still take a run (its VMM has
	// not exited).
	Alive() bool
	// Close destroys the machine and releases everything it holds.
	Close() error
}

// BootFunc boots one machine. It must honour ctx.
type BootFunc[M Machine] func(ctx context.Context) (M, error)

// Config configures a Pool.
type Config struct {
	// Size is the number of idle machines to keep; 0 disables pooling (Get
	// always boots).
	Size int
	// MaxBoots bounds concurrent background boots; default 1.
	MaxBoots int
	// MaxIdle recycles a machine idle for longer (its guest clock and page
	// cache go stale); 0 keeps machines until taken.
	MaxIdle time.Duration
	// BootTimeout bounds each background boot; default 2 minutes.
	BootTimeout time.Duration
	// Logger receives boot failures. Nil discards.
	Logger *slog.Logger
}

// Limits on a Config.
const (
	MaxSize     = 256
	MaxMaxBoots = 64
)

// Validate checks the configuration; errors name the field and the limit.
func (c *Config) Validate() error {
	switch {
	case c.Size < 0 || c.Size > MaxSize:
		return fmt.Errorf("vm pool: size %d is outside [0, %d]", c.Size, MaxSize)
	case c.MaxBoots < 0 || c.MaxBoots > MaxMaxBoots:
		return fmt.Errorf("vm pool: max boots %d is outside [0, %d]", c.MaxBoots, MaxMaxBoots)
	case c.MaxIdle < 0:
		return fmt.Errorf("vm pool: max idle %s is negative", c.MaxIdle)
	case c.BootTimeout < 0:
		return fmt.Errorf("vm pool: boot timeout %s is negative", c.BootTimeout)
	}
	return nil
}

// Stats are a pool's counters, for metrics.
type Stats struct {
	// Size is the configured number of idle machines.
	Size int `json:"size"`
	// Idle machines are booted and waiting; Booting are being booted in
	// the background.
	Idle    int `json:"idle"`
	Booting int `json:"booting"`
	// Hits counts Gets served by an idle machine, Misses those that booted
	// in the caller.
	Hits   int64 `json:"hits"`
	Misses int64 `json:"misses"`
	// Booted and BootFailures count background boots.
	Booted       int64 `json:"booted"`
	BootFailures int64 `json:"boot_failures"`
	// Discarded counts idle machines found dead or recycled for age.
	Discarded int64 `json:"discarded"`
	// LastBoot is how long the last successful background boot took.
	LastBoot time.Duration `json:"last_boot_ns"`
	// LastError is the last background boot error, or "".
	LastError string `json:"last_error,omitempty"`
}

type idleMachine[M Machine] struct {
	m     M
	since time.Time
}

// Pool keeps booted machines.
type Pool[M Machine] struct {
	cfg  Config
	boot BootFunc[M]
	log  *slog.Logger

	mu      sync.Mutex
	idle    []idleMachine[M]
	booting int
	closed  bool
	backoff time.Duration
	retryAt time.Time
	stats   Stats
	kick    chan struct{}
	// changed is closed and replaced whenever a background boot ends, to
	// wake Gets waiting for it.
	changed chan struct{}
	// waiting counts Gets waiting for a background boot.
	waiting int

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	start  sync.Once
}

// New returns a pool that boots machines with boot. It boots nothing until
// Warm or Get is called.
func New[M Machine](cfg Config, boot BootFunc[M]) (*Pool[M], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBoots == 0 {
		cfg.MaxBoots = 1
	}
	if cfg.BootTimeout == 0 {
		cfg.BootTimeout = 2 * time.Minute
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Pool[M]{cfg: cfg, boot: boot, log: log, kick: make(chan struct{}, 1), changed: make(chan struct{}),
		ctx: ctx, cancel: cancel, stats: Stats{Size: cfg.Size}}, nil
}

// Warm starts filling the pool in the background.
func (p *Pool[M]) Warm() {
	if p.cfg.Size == 0 {
		return
	}
	p.start.Do(func() {
		p.wg.Add(1)
		go p.fill()
	})
	p.topUp()
}

func (p *Pool[M]) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Get returns a machine for one run: an idle one (warm is true), one a
// background boot is about to deliver, or, when neither is at hand, one
// booted now with the pool's boot function. The caller owns the machine and
// must Close it; it never returns to the pool.
func (p *Pool[M]) Get(ctx context.Context) (m M, warm bool, err error) {
	m, ok, err := p.TryGet(ctx)
	if err != nil || ok {
		return m, ok, err
	}
	m, err = p.boot(ctx)
	return m, false, err
}

// TryGet is Get without the cold boot: it returns an idle machine, or waits
// for one a background boot is about to deliver, and otherwise reports ok
// false (a miss), leaving the boot to the caller, who may boot differently
// for a cold start.
func (p *Pool[M]) TryGet(ctx context.Context) (m M, ok bool, err error) {
	p.Warm()
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return m, false, ErrClosed
		}
		if len(p.idle) == 0 && p.waiting < p.booting {
			// A background boot is under way that no one else waits for:
			// waiting for it is faster than starting another boot on the
			// same CPUs.
			p.waiting++
			changed := p.changed
			p.mu.Unlock()
			select {
			case <-changed:
			case <-ctx.Done():
			}
			p.mu.Lock()
			p.waiting--
			p.mu.Unlock()
			if ctx.Err() != nil {
				return m, false, ctx.Err()
			}
			continue
		}
		if len(p.idle) == 0 {
			p.stats.Misses++
			p.mu.Unlock()
			return m, false, nil
		}
		im := p.idle[0]
		p.idle = p.idle[1:]
		p.mu.Unlock()
		p.poke()
		if im.m.Alive() {
			p.mu.Lock()
			p.stats.Hits++
			p.mu.Unlock()
			return im.m, true, nil
		}
		p.discard(im.m)
	}
}

func (p *Pool[M]) discard(m M) {
	p.mu.Lock()
	p.stats.Discarded++
	p.mu.Unlock()
	if err := m.Close(); err != nil {
		p.log.Warn("close discarded vm", "err", err)
	}
}

// Stats returns a snapshot of the pool's counters.
func (p *Pool[M]) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Idle, s.Booting = len(p.idle), p.booting
	return s
}

// fill keeps the pool topped up until Close.
func (p *Pool[M]) fill() {
	defer p.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		p.recycle()
		p.topUp()
		select {
		case <-p.ctx.Done():
			return
		case <-p.kick:
		case <-tick.C:
		}
	}
}

// topUp starts background boots until the pool is full or MaxBoots are
// under way.
func (p *Pool[M]) topUp() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for !p.closed && len(p.idle)+p.booting < p.cfg.Size && p.booting < p.cfg.MaxBoots && !time.Now().Before(p.retryAt) {
		p.booting++
		p.wg.Add(1)
		go p.bootOne()
	}
}

// recycle closes idle machines that died or waited longer than MaxIdle.
func (p *Pool[M]) recycle() {
	var drop []M
	p.mu.Lock()
	kept := p.idle[:0]
	for _, im := range p.idle {
		if !im.m.Alive() || (p.cfg.MaxIdle > 0 && time.Since(im.since) > p.cfg.MaxIdle) {
			drop = append(drop, im.m)
			continue
		}
		kept = append(kept, im)
	}
	p.idle = kept
	p.mu.Unlock()
	for _, m := range drop {
		p.discard(m)
	}
}

func (p *Pool[M]) bootOne() {
	defer p.wg.Done()
	ctx, cancel := context.WithTimeout(p.ctx, p.cfg.BootTimeout)
	defer cancel()
	start := time.Now()
	m, err := p.boot(ctx)
	p.mu.Lock()
	p.booting--
	switch {
	case err != nil:
		p.stats.BootFailures++
		p.stats.LastError = err.Error()
		p.backoff = min(max(2*p.backoff, 500*time.Millisecond), 30*time.Second)
		p.retryAt = time.Now().Add(p.backoff)
		p.mu.Unlock()
		if p.ctx.Err() == nil {
			p.log.Warn("boot pooled vm", "err", err, "retry_in", p.backoff)
		}
	case p.closed:
		p.mu.Unlock()
		if cerr := m.Close(); cerr != nil {
			p.log.Warn("close vm booted after pool close", "err", cerr)
		}
	default:
		p.backoff, p.retryAt = 0, time.Time{}
		p.stats.Booted++
		p.stats.LastBoot = time.Since(start)
		p.idle = append(p.idle, idleMachine[M]{m: m, since: time.Now()})
		p.mu.Unlock()
	}
	p.mu.Lock()
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
	p.poke()
}

// Close stops filling, waits for background boots and closes every idle
// machine. Machines already handed out are the caller's. It is safe to call
// more than once.
func (p *Pool[M]) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	var errs []error
	for _, im := range idle {
		errs = append(errs, im.m.Close())
	}
	return errors.Join(errs...)
}
