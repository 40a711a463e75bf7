//go:build linux

package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"time"
)

// qmpConn is a QEMU monitor connection in control mode.
type qmpConn struct {
	c net.Conn
	r *bufio.Reader
	// events keeps the events seen while waiting for returns.
	events []qmpMessage
}

// newQMP reads QEMU's greeting on c and negotiates capabilities.
func newQMP(ctx context.Context, c net.Conn) (*qmpConn, error) {
	q := &qmpConn{c: c, r: bufio.NewReaderSize(c, 64<<10)}
	stop := q.deadline(ctx)
	defer stop()
	m, err := readQMP(q.r)
	if err != nil {
		return nil, fmt.Errorf("qmp greeting: %w", err)
	}
	if m.Greeting == nil {
		return nil, fmt.Errorf("%w: expected the greeting, got %+v", errQMP, m)
	}
	if _, err := q.execute(ctx, "qmp_capabilities", nil); err != nil {
		return nil, err
	}
	return q, nil
}

// deadline makes reads and writes fail when ctx ends.
func (q *qmpConn) deadline(ctx context.Context) func() bool {
	if d, ok := ctx.Deadline(); ok {
		_ = q.c.SetDeadline(d)
	}
	return context.AfterFunc(ctx, func() { _ = q.c.SetDeadline(time.Unix(1, 0)) })
}

// execute runs one command and returns its result.
func (q *qmpConn) execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	stop := q.deadline(ctx)
	defer stop()
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, err := q.c.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	for {
		m, err := readQMP(q.r)
		if err != nil {
			return nil, fmt.Errorf("qmp %s: %w", cmd, err)
		}
		switch {
		case m.Event != "":
			if len(q.events) < 64 {
				q.events = append(q.events, m)
			}
		case m.Error != nil:
			return nil, fmt.Errorf("%w: %s: %s: %s", errQMP, cmd, m.Error.Class, m.Error.Desc)
		case m.Return != nil:
			return *m.Return, nil
		}
	}
}

// waitMigration waits until the outgoing migration completes, polling
// query-migrate.
func (q *qmpConn) waitMigration(ctx context.Context) error {
	for {
		ret, err := q.execute(ctx, "query-migrate", nil)
		if err != nil {
			return err
		}
		status, err := migrationStatus(ret)
		if err != nil {
			return err
		}
		switch status {
		case "completed":
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("%w: migration %s", errQMP, status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("migration: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (q *qmpConn) Close() error { return q.c.Close() }
