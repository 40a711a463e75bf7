//go:build linux

package main

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/guest/transport"
)

// eventBatch is how many events go in one Events frame at most; a batch is
// also sent every flushEvery while events trickle in.
const (
	eventBatch = 256
	flushEvery = 50 * time.Millisecond
)

// profiler forwards a guest collector session's events to the host.
type profiler struct {
	sess profiling.Session
	sink *eventSink
	done chan struct{}
	wg   sync.WaitGroup
}

// eventSink batches events into Events frames. It holds them until
// opened: the host takes events only after the Started frame, and the
// session starts before the workload so that its first exec is seen.
type eventSink struct {
	conn *transport.Conn
	open atomic.Bool
	// shift corrects event times: the collector converts kernel time to
	// wall time with the clock it saw when it loaded, before init stepped
	// the clock to the host's.
	shift time.Duration
	mu    sync.Mutex
	batch []profiling.Event
}

func (e *eventSink) Add(ev *profiling.Event) {
	e.mu.Lock()
	e.batch = append(e.batch, *ev)
	last := &e.batch[len(e.batch)-1]
	if !last.Time.IsZero() {
		last.Time = last.Time.Add(e.shift)
	}
	last.Exe, last.Cwd = sandboxPath(last.Exe), sandboxPath(last.Cwd)
	last.Path, last.Target = sandboxPath(last.Path), sandboxPath(last.Target)
	full := len(e.batch) >= eventBatch
	e.mu.Unlock()
	if full {
		e.flush()
	}
}

func (e *eventSink) flush() {
	if !e.open.Load() {
		return
	}
	e.mu.Lock()
	batch := e.batch
	e.batch = nil
	e.mu.Unlock()
	for len(batch) > 0 {
		n := min(len(batch), eventBatch)
		msg := &transport.Events{Events: batch[:n]}
		if err := e.conn.Send(msg); err != nil {
			return
		}
		batch = batch[n:]
	}
}

func startProfiler(conn *transport.Conn, ctrl profiling.Controller, cg *cgroup, shift time.Duration) (*profiler, error) {
	if err := ctrl.Available(); err != nil {
		return nil, err
	}
	sink := &eventSink{conn: conn, shift: shift}
	sess, err := ctrl.Start(context.Background(), profiling.Target{RunID: "guest", CgroupID: cg.id, CgroupPath: cg.dir}, sink)
	if err != nil {
		return nil, err
	}
	p := &profiler{sess: sess, sink: sink, done: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(flushEvery)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-t.C:
				sink.flush()
			}
		}
	}()
	return p, nil
}

// begin lets events flow to the host; call it once Started is sent.
func (p *profiler) begin() {
	p.sink.open.Store(true)
	p.sink.flush()
}

// stop ends the session once every event was delivered, and sends the
// last batch if begin was called.
func (p *profiler) stop() (profiling.Report, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err := p.sess.Stop(ctx)
	close(p.done)
	p.wg.Wait()
	p.sink.flush()
	return rep, err
}

// sandboxPath turns a path the kernel resolved from the guest's real root
// into the path the workload sees in its chroot (rootDir).
func sandboxPath(p string) string {
	if p == rootDir {
		return "/"
	}
	if rest, ok := strings.CutPrefix(p, rootDir+"/"); ok {
		return "/" + rest
	}
	return p
}
