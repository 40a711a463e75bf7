package server

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

var (
	errQueueFull = errors.New("queue is full")
	errDraining  = errors.New("server is shutting down")
)

// admission bounds the runs executing at once (slots) and the requests
// waiting for a slot (the queue). Waiters are served in arrival order.
type admission struct {
	slots    chan struct{}
	maxQueue int64
	waiting  atomic.Int64
	drain    chan struct{}
	drainOne sync.Once

	// mean run time in seconds, as an exponentially weighted moving
	// average, to estimate Retry-After.
	mu   sync.Mutex
	mean float64
}

func newAdmission(concurrency, queue int) *admission {
	return &admission{slots: make(chan struct{}, concurrency), maxQueue: int64(queue), drain: make(chan struct{}), mean: 1}
}

// acquire takes a slot, waiting in the queue when all are busy. queued
// false waits without counting against the queue (batch entries, which
// were admitted as a whole). The returned release must be called once.
func (a *admission) acquire(ctx context.Context, queued bool) (release func(), err error) {
	select {
	case <-a.drain:
		return nil, errDraining
	default:
	}
	select {
	case a.slots <- struct{}{}:
		return a.releaser(), nil
	default:
	}
	if queued {
		if a.waiting.Add(1) > a.maxQueue {
			a.waiting.Add(-1)
			return nil, errQueueFull
		}
		defer a.waiting.Add(-1)
	}
	select {
	case a.slots <- struct{}{}:
		return a.releaser(), nil
	case <-a.drain:
		return nil, errDraining
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// enter reserves a place in the queue for a batch without taking a slot;
// leave gives it back.
func (a *admission) enter() (leave func(), err error) {
	select {
	case <-a.drain:
		return nil, errDraining
	default:
	}
	if a.waiting.Add(1) > a.maxQueue {
		a.waiting.Add(-1)
		return nil, errQueueFull
	}
	var once sync.Once
	return func() { once.Do(func() { a.waiting.Add(-1) }) }, nil
}

func (a *admission) releaser() func() {
	start := time.Now()
	var once sync.Once
	return func() {
		once.Do(func() {
			<-a.slots
			d := time.Since(start).Seconds()
			a.mu.Lock()
			a.mean = 0.9*a.mean + 0.1*d
			a.mu.Unlock()
		})
	}
}

// stopAdmitting makes every waiter and every later acquire fail with
// errDraining.
func (a *admission) stopAdmitting() { a.drainOne.Do(func() { close(a.drain) }) }

func (a *admission) inFlight() int   { return len(a.slots) }
func (a *admission) queued() int64   { return a.waiting.Load() }
func (a *admission) capacity() int   { return cap(a.slots) }
func (a *admission) queueLimit() int { return int(a.maxQueue) }

// retryAfter estimates, in whole seconds (at least 1), when a slot frees
// up for a request that finds the queue full.
func (a *admission) retryAfter() int {
	a.mu.Lock()
	mean := a.mean
	a.mu.Unlock()
	est := mean * float64(a.queued()+1) / float64(a.capacity())
	return int(math.Max(1, math.Min(60, math.Ceil(est))))
}
