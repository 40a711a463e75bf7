package execution

import (
	"io"
	"sync"
)

// Capture keeps the first Limit bytes of an output stream for the Result
// and mirrors them, as they arrive, to Live (a Spec's Stdout or Stderr).
// Backends share it so that every one enforces Limits.OutputBytes the
// same way: bytes past the limit are neither kept nor mirrored, and the
// stream is flagged truncated. It is safe for concurrent use.
type Capture struct {
	Limit int64
	Live  io.Writer

	mu        sync.Mutex
	buf       []byte
	truncated bool
}

// Add appends p up to the limit. It reports false once the stream has
// gone past the limit: the backend then stops the run (output_limit).
func (c *Capture) Add(p []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.truncated {
		return false
	}
	keep := p
	if room := c.Limit - int64(len(c.buf)); int64(len(keep)) > room {
		keep = keep[:max(room, 0)]
		c.truncated = true
	}
	c.buf = append(c.buf, keep...)
	if c.Live != nil && len(keep) > 0 {
		_, _ = c.Live.Write(keep)
	}
	return !c.truncated
}

// Bytes returns what was kept and whether the stream went past the limit.
func (c *Capture) Bytes() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf, c.truncated
}
