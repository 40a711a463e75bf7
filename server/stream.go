package server

import (
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"glasshouse.dev/glasshouse/core/execution"
)

// streamWriteTimeout bounds each write to a streaming client; a client that
// stops reading loses its stream, not the run.
const streamWriteTimeout = 30 * time.Second

// streamer collects a run's live output from the backend's goroutines and
// hands it to the HTTP handler as NDJSON lines. Writes never block the
// backend: output is queued (bounded by the run's output limit, which the
// backend enforces) and the handler drains the queue when woken.
type streamer struct {
	mu      sync.Mutex
	lines   [][]byte
	partial map[string][]byte
	wake    chan struct{}
}

func newStreamer() *streamer {
	return &streamer{partial: map[string][]byte{}, wake: make(chan struct{}, 1)}
}

type chunkLine struct {
	Type string `json:"type"`
	Data string `json:"data"`
}

func (st *streamer) push(line []byte) {
	st.lines = append(st.lines, line)
	select {
	case st.wake <- struct{}{}:
	default:
	}
}

// event queues a line holding v.
func (st *streamer) event(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	st.mu.Lock()
	st.push(append(b, '\n'))
	st.mu.Unlock()
}

// write queues p as a chunk of stream kind. A UTF-8 sequence split across
// writes is held back until it is complete, so chunks never carry a
// replacement character the output did not contain.
func (st *streamer) write(kind string, p []byte) {
	st.mu.Lock()
	defer st.mu.Unlock()
	data := append(st.partial[kind], p...)
	cut := len(data)
	for i := len(data) - 1; i >= 0 && i >= len(data)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(data[i]) {
			if !utf8.FullRune(data[i:]) {
				cut = i
			}
			break
		}
	}
	st.partial[kind] = append([]byte(nil), data[cut:]...)
	if cut > 0 {
		b, _ := json.Marshal(chunkLine{Type: kind, Data: string(data[:cut])})
		st.push(append(b, '\n'))
	}
}

// flushPartial queues whatever incomplete sequences remain at the end.
func (st *streamer) flushPartial() {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, kind := range []string{"stdout", "stderr"} {
		if p := st.partial[kind]; len(p) > 0 {
			b, _ := json.Marshal(chunkLine{Type: kind, Data: string(p)})
			st.push(append(b, '\n'))
			st.partial[kind] = nil
		}
	}
}

func (st *streamer) take() [][]byte {
	st.mu.Lock()
	defer st.mu.Unlock()
	l := st.lines
	st.lines = nil
	return l
}

type streamWriter struct {
	st   *streamer
	kind string
}

func (w streamWriter) Write(p []byte) (int, error) {
	w.st.write(w.kind, p)
	return len(p), nil
}

var _ io.Writer = streamWriter{}

// resultLine is the last line of a stream; batch lines carry an index.
type resultLine struct {
	Type  string `json:"type"`
	Index *int   `json:"index,omitempty"`
	*RunResponse
}

type errorLine struct {
	Type  string `json:"type"`
	Index *int   `json:"index,omitempty"`
	*Error
	Status int `json:"status"`
}

func lineOf(index *int, resp *RunResponse, e *Error) []byte {
	var v any = resultLine{Type: "result", Index: index, RunResponse: resp}
	if e != nil {
		v = errorLine{Type: "error", Index: index, Error: e, Status: e.Status}
	}
	b, _ := json.Marshal(v)
	return append(b, '\n')
}

// ndjsonWriter writes lines to a streaming response; after the first write
// error (the client went away) it drops everything.
type ndjsonWriter struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	sent   bool
	broken bool
}

func newNDJSONWriter(w http.ResponseWriter) *ndjsonWriter {
	return &ndjsonWriter{w: w, rc: http.NewResponseController(w)}
}

func (n *ndjsonWriter) send(lines ...[]byte) {
	if n.broken {
		return
	}
	if !n.sent {
		n.w.Header().Set("Content-Type", "application/x-ndjson")
		n.w.Header().Set("X-Content-Type-Options", "nosniff")
		n.w.Header().Set("Cache-Control", "no-store")
		n.w.WriteHeader(http.StatusOK)
		n.sent = true
	}
	_ = n.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	for _, l := range lines {
		if _, err := n.w.Write(l); err != nil {
			n.broken = true
			return
		}
	}
	if err := n.rc.Flush(); err != nil {
		n.broken = true
	}
}

// stream executes the run and streams its output as NDJSON: a "started"
// line with the run id, "stdout"/"stderr" chunks as they come, and a final
// "result" (or "error") line. The run goes on if the client disconnects.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, tenant string, bs *backendState, plan *Plan, ev execution.Evaluator, release func()) *Error {
	st := newStreamer()
	plan.Spec.Stdout = streamWriter{st: st, kind: "stdout"}
	plan.Spec.Stderr = streamWriter{st: st, kind: "stderr"}
	type result struct {
		resp *RunResponse
		err  *Error
	}
	done := make(chan result, 1)
	go func() {
		resp, e := s.execute(tenant, bs, plan, ev, release, func(id string) {
			setRunID(r, id)
			st.event(map[string]string{"type": "started", "id": id, "receipt_url": receiptURL(id)})
		})
		done <- result{resp, e}
	}()
	out := newNDJSONWriter(w)
	for {
		select {
		case <-st.wake:
			out.send(st.take()...)
		case res := <-done:
			st.flushPartial()
			lines := st.take()
			if res.err != nil && !out.sent && len(lines) == 0 {
				return res.err
			}
			out.send(append(lines, lineOf(nil, res.resp, res.err))...)
			return nil
		}
	}
}
