package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/store"
)

// Sink receives sealed receipts. doc is the receipt's compact JSON
// (receipt.MarshalCompact), one line without a newline. Implementations
// must be safe for concurrent use; the agent calls Write from one
// goroutine.
type Sink interface {
	// Name identifies the sink in logs and metrics ("stdout", "file",
	// "store").
	Name() string
	// Write delivers one receipt.
	Write(ctx context.Context, r *receipt.Receipt, doc []byte) error
}

// NDJSONSink writes one receipt a line to a writer (stdout).
type NDJSONSink struct {
	name string
	mu   sync.Mutex
	w    io.Writer
}

// NewNDJSONSink returns a sink that writes receipts to w as NDJSON.
func NewNDJSONSink(name string, w io.Writer) *NDJSONSink {
	return &NDJSONSink{name: name, w: w}
}

// Name implements Sink.
func (s *NDJSONSink) Name() string { return s.name }

// Write implements Sink.
func (s *NDJSONSink) Write(_ context.Context, _ *receipt.Receipt, doc []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	line := make([]byte, 0, len(doc)+1)
	line = append(append(line, doc...), '\n')
	if _, err := s.w.Write(line); err != nil {
		return fmt.Errorf("write receipt: %w", err)
	}
	return nil
}

// Bounds of FileSink.
const (
	DefaultFileMaxBytes = 256 << 20
	MinFileMaxBytes     = 1 << 20
)

// FileSink appends receipts as NDJSON to a file. When the file would grow
// past its size limit it is renamed to PATH.1 (replacing the previous one)
// and a new file is started, so the sink never holds more than twice the
// limit on disk.
type FileSink struct {
	path string
	max  int64

	mu   sync.Mutex
	f    *os.File
	size int64
}

// OpenFileSink opens (creating, mode 0600) the file at path for appending.
// maxBytes is the rotation size (0 means DefaultFileMaxBytes; at least
// MinFileMaxBytes). The caller must Close it.
func OpenFileSink(path string, maxBytes int64) (*FileSink, error) {
	if path == "" {
		return nil, errors.New("receipt file: empty path")
	}
	if maxBytes == 0 {
		maxBytes = DefaultFileMaxBytes
	}
	if maxBytes < MinFileMaxBytes {
		return nil, fmt.Errorf("receipt file max bytes %d: want at least %d", maxBytes, MinFileMaxBytes)
	}
	s := &FileSink{path: path, max: maxBytes}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *FileSink) open() error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("create receipt directory: %w", err)
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open receipt file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat receipt file: %w", err)
	}
	s.f, s.size = f, st.Size()
	return nil
}

// Name implements Sink.
func (s *FileSink) Name() string { return "file" }

// Write implements Sink.
func (s *FileSink) Write(_ context.Context, _ *receipt.Receipt, doc []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return errors.New("receipt file is closed")
	}
	n := int64(len(doc) + 1)
	if s.size > 0 && s.size+n > s.max {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	line := make([]byte, 0, n)
	line = append(append(line, doc...), '\n')
	w, err := s.f.Write(line)
	s.size += int64(w)
	if err != nil {
		return fmt.Errorf("write receipt file: %w", err)
	}
	return nil
}

func (s *FileSink) rotate() error {
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("close receipt file: %w", err)
	}
	s.f = nil
	if err := os.Rename(s.path, s.path+".1"); err != nil {
		return fmt.Errorf("rotate receipt file: %w", err)
	}
	return s.open()
}

// Close closes the file.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// StoreSink records receipts in a store.Store (the shared store the
// server reads), as completed runs of one tenant.
type StoreSink struct {
	st     store.Store
	tenant string
}

// NewStoreSink returns a sink that records receipts in st under tenant.
func NewStoreSink(st store.Store, tenant string) (*StoreSink, error) {
	if st == nil {
		return nil, errors.New("store sink: nil store")
	}
	if tenant == "" || len(tenant) > 128 {
		return nil, fmt.Errorf("store sink: tenant %q: want 1 to 128 bytes", tenant)
	}
	return &StoreSink{st: st, tenant: tenant}, nil
}

// Name implements Sink.
func (s *StoreSink) Name() string { return "store" }

// Write implements Sink.
func (s *StoreSink) Write(ctx context.Context, r *receipt.Receipt, doc []byte) error {
	verdict := ""
	if r.Policy != nil {
		verdict = r.Policy.Verdict
	}
	err := s.st.Complete(ctx, store.Completed{
		ID:         r.ID,
		Tenant:     s.tenant,
		Backend:    r.Backend.Name,
		StartedAt:  r.StartedAt.Time,
		FinishedAt: r.FinishedAt.Time,
		Failure:    r.Outcome.Failure,
		Verdict:    verdict,
		Digest:     r.Digest,
		Receipt:    doc,
	})
	if err != nil {
		return fmt.Errorf("store receipt %s: %w", r.ID, err)
	}
	return nil
}

// writeTimeout bounds one sink write.
const writeTimeout = 30 * time.Second
