package vmpool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeVM struct {
	id     int64
	dead   atomic.Bool
	closed atomic.Int32
}

func (f *fakeVM) Alive() bool { return !f.dead.Load() }
func (f *fakeVM) Close() error {
	f.closed.Add(1)
	return nil
}

type booter struct {
	mu    sync.Mutex
	n     atomic.Int64
	delay time.Duration
	fail  atomic.Bool
	all   []*fakeVM
}

func (b *booter) boot(ctx context.Context) (*fakeVM, error) {
	select {
	case <-time.After(b.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if b.fail.Load() {
		return nil, errors.New("boot failed")
	}
	vm := &fakeVM{id: b.n.Add(1)}
	b.mu.Lock()
	b.all = append(b.all, vm)
	b.mu.Unlock()
	return vm, nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPoolFillsAndReplaces(t *testing.T) {
	b := &booter{delay: time.Millisecond}
	p, err := New(Config{Size: 3, MaxBoots: 2}, b.boot)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Warm()
	waitFor(t, "a full pool", func() bool { return p.Stats().Idle == 3 })
	seen := map[int64]bool{}
	for i := 0; i < 10; i++ {
		vm, warm, err := p.Get(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if seen[vm.id] {
			t.Fatalf("machine %d handed out twice", vm.id)
		}
		seen[vm.id] = true
		_ = warm
		vm.Close()
	}
	waitFor(t, "the pool to refill", func() bool { return p.Stats().Idle == 3 })
	s := p.Stats()
	if s.Hits+s.Misses != 10 || s.Hits == 0 {
		t.Fatalf("stats %+v", s)
	}
	if s.Booted < 3 {
		t.Fatalf("booted %d", s.Booted)
	}
}

func TestPoolSizeZeroBootsPerGet(t *testing.T) {
	b := &booter{}
	p, err := New(Config{}, b.boot)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	vm, warm, err := p.Get(context.Background())
	if err != nil || warm || vm == nil {
		t.Fatalf("got %v %v %v", vm, warm, err)
	}
	if s := p.Stats(); s.Idle != 0 || s.Misses != 1 || s.Booted != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestPoolDiscardsDeadMachines(t *testing.T) {
	b := &booter{}
	p, _ := New(Config{Size: 1}, b.boot)
	defer p.Close()
	p.Warm()
	waitFor(t, "one idle machine", func() bool { return p.Stats().Idle == 1 })
	b.mu.Lock()
	first := b.all[0]
	b.mu.Unlock()
	first.dead.Store(true)
	vm, _, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if vm == first {
		t.Fatal("a dead machine was handed out")
	}
	if first.closed.Load() != 1 {
		t.Fatal("the dead machine was not closed")
	}
}

func TestPoolBackoffOnFailure(t *testing.T) {
	b := &booter{}
	b.fail.Store(true)
	p, _ := New(Config{Size: 2}, b.boot)
	defer p.Close()
	p.Warm()
	waitFor(t, "a boot failure", func() bool { return p.Stats().BootFailures >= 1 })
	time.Sleep(200 * time.Millisecond)
	// The first retry waits 500ms: a broken host must not spin.
	if n := p.Stats().BootFailures; n > 2 {
		t.Fatalf("%d boot failures in 200ms: no backoff", n)
	}
	if p.Stats().LastError == "" {
		t.Fatal("last error not recorded")
	}
}

func TestPoolGetWaitsForBootInFlight(t *testing.T) {
	b := &booter{delay: 100 * time.Millisecond}
	p, _ := New(Config{Size: 1}, b.boot)
	defer p.Close()
	vm, warm, err := p.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !warm || b.n.Load() != 1 {
		t.Fatalf("Get booted its own machine (warm %v, boots %d) instead of taking the one in flight", warm, b.n.Load())
	}
	vm.Close()
}

func TestPoolCloseClosesIdle(t *testing.T) {
	b := &booter{}
	p, _ := New(Config{Size: 4, MaxBoots: 4}, b.boot)
	p.Warm()
	waitFor(t, "a full pool", func() bool { return p.Stats().Idle == 4 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, vm := range b.all {
		if vm.closed.Load() != 1 {
			t.Fatalf("machine %d closed %d times", vm.id, vm.closed.Load())
		}
	}
	if _, _, err := p.Get(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close = %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{{Size: -1}, {Size: MaxSize + 1}, {MaxBoots: -1}, {MaxIdle: -1}, {BootTimeout: -1}} {
		if _, err := New(c, (&booter{}).boot); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestTryGetLeavesTheColdBootToTheCaller(t *testing.T) {
	b := &booter{}
	p, _ := New(Config{}, b.boot)
	defer p.Close()
	vm, ok, err := p.TryGet(context.Background())
	if err != nil || ok || vm != nil || b.n.Load() != 0 {
		t.Fatalf("TryGet on an empty pool = %v, %v, %v after %d boots", vm, ok, err, b.n.Load())
	}
	if s := p.Stats(); s.Misses != 1 {
		t.Fatalf("stats %+v", s)
	}
}
