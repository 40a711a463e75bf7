// Package store keeps receipts and the runs still in flight, per tenant.
//
// Store is the interface the server writes through; store/sqlite is the
// embedded default, and a shared database can implement the same interface
// to serve a fleet. A run is recorded with Begin before its workload starts
// and finished with Complete; a run that is still in flight when its server
// dies is found again with InFlight and completed by the server as an
// infrastructure failure, so no run is lost.
//
// Implementations must be safe for concurrent use. The caller must Close a
// store it opened.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors a caller must tell apart. Implementations wrap them; test with
// errors.Is.
var (
	// ErrNotFound means no run with that id belongs to the tenant.
	ErrNotFound = errors.New("run not found")
	// ErrExists means a run with that id is already recorded, or was
	// already completed.
	ErrExists = errors.New("run already exists")
	// ErrClosed means the store was closed.
	ErrClosed = errors.New("store is closed")
	// ErrInvalid means an argument was rejected; the message names it.
	ErrInvalid = errors.New("invalid store argument")
)

// State is where a run is in its life.
type State string

// States.
const (
	// StateRunning: recorded by Begin, not yet completed.
	StateRunning State = "running"
	// StateDone: completed with a sealed receipt.
	StateDone State = "done"
)

// Pending is a run recorded before its workload starts.
type Pending struct {
	ID     string
	Tenant string
	// Node names the server that runs it, so that a server sharing a store
	// recovers only its own runs.
	Node      string
	Backend   string
	StartedAt time.Time
	// Draft is the unsealed receipt JSON of the run's inputs, from which a
	// receipt is built if the run is lost.
	Draft []byte
}

// Completed is a finished run and its sealed receipt.
type Completed struct {
	ID         string
	Tenant     string
	Backend    string
	StartedAt  time.Time
	FinishedAt time.Time
	// Failure is the receipt's outcome.failure; Verdict its policy verdict
	// or "".
	Failure string
	Verdict string
	Digest  string
	// Receipt is the sealed receipt as served to clients.
	Receipt []byte
}

// Summary describes a stored run without its receipt.
type Summary struct {
	ID         string
	Tenant     string
	State      State
	Backend    string
	StartedAt  time.Time
	FinishedAt time.Time // zero while running
	Failure    string
	Verdict    string
	Digest     string
}

// Record is a stored run with its receipt (nil while running).
type Record struct {
	Summary
	Receipt []byte
}

// Query selects a tenant's completed runs, newest first.
type Query struct {
	// Failure and Verdict, when set, must match exactly.
	Failure string
	Verdict string
	// Since keeps runs that started at or after it.
	Since time.Time
	// Limit is the page size, 1..MaxLimit.
	Limit int
	// Cursor continues a previous page (Page.Next); "" starts at the
	// newest run.
	Cursor string
}

// MaxLimit bounds Query.Limit.
const MaxLimit = 1000

// Validate checks q.
func (q *Query) Validate() error {
	if q.Limit < 1 || q.Limit > MaxLimit {
		return fmt.Errorf("%w: limit %d is outside [1, %d]", ErrInvalid, q.Limit, MaxLimit)
	}
	if len(q.Failure) > 64 || len(q.Verdict) > 64 {
		return fmt.Errorf("%w: failure and verdict filters are at most 64 bytes", ErrInvalid)
	}
	if len(q.Cursor) > 512 {
		return fmt.Errorf("%w: cursor is %d bytes, the limit is 512", ErrInvalid, len(q.Cursor))
	}
	return nil
}

// Page is one page of a listing.
type Page struct {
	Runs []Summary
	// Next is the cursor of the following page, "" on the last one.
	Next string
}

// Retention says which completed runs to delete. Zero fields keep all.
type Retention struct {
	// MaxAge deletes runs that finished longer ago than this.
	MaxAge time.Duration
	// MaxCount keeps only the newest MaxCount completed runs.
	MaxCount int64
}

// Store keeps runs and their receipts.
type Store interface {
	// Begin records p as in flight. It returns ErrExists if the id is
	// taken.
	Begin(ctx context.Context, p Pending) error
	// Complete records the run's receipt and marks it done. A run that was
	// not begun is inserted; one already completed, or begun by another
	// tenant, gives ErrExists.
	Complete(ctx context.Context, c Completed) error
	// Abandon deletes an in-flight run that never produced a receipt
	// (because the request was refused). It returns ErrNotFound if there
	// is no such in-flight run.
	Abandon(ctx context.Context, id string) error
	// Get returns the tenant's run id, or ErrNotFound, including when the
	// run belongs to another tenant.
	Get(ctx context.Context, tenant, id string) (Record, error)
	// List returns a page of the tenant's completed runs, newest first.
	List(ctx context.Context, tenant string, q Query) (Page, error)
	// InFlight returns node's runs that were begun and never completed.
	InFlight(ctx context.Context, node string) ([]Pending, error)
	// Prune deletes completed runs beyond r, measured at now, and returns
	// how many it deleted. In-flight runs are never pruned.
	Prune(ctx context.Context, r Retention, now time.Time) (int64, error)
	// Ping checks that the store can be read and written.
	Ping(ctx context.Context) error
	// Close releases the store. Calls after Close return ErrClosed.
	Close() error
}
