package transport

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/core/profiling"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	payloads := [][]byte{nil, []byte("x"), bytes.Repeat([]byte{0xff}, 70000)}
	for i, p := range payloads {
		buf.Write(AppendFrame(nil, TypeStdout+Type(i%2), p))
	}
	for i, p := range payloads {
		f, err := ReadFrame(&buf, DefaultMaxFrame)
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.Type != TypeStdout+Type(i%2) || !bytes.Equal(f.Payload, p) {
			t.Fatalf("frame %d: got %s %d bytes", i, f.Type, len(f.Payload))
		}
	}
	if _, err := ReadFrame(&buf, DefaultMaxFrame); err != io.EOF {
		t.Fatalf("at end: got %v, want io.EOF", err)
	}
}

func TestFrameGarbage(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"unknown type", []byte{0, 0, 0, 0, 0}, ErrBadFrame},
		{"type past the last", []byte{0, 0, 0, 0, byte(typeLast + 1)}, ErrBadFrame},
		{"too large", []byte{0xff, 0xff, 0xff, 0xff, byte(TypeStdout)}, ErrFrameTooLarge},
		{"just over the limit", AppendFrame(nil, TypeStdout, make([]byte, 101)), ErrFrameTooLarge},
		{"cut in the header", []byte{0, 0, 1}, io.ErrUnexpectedEOF},
		{"cut in the payload", []byte{0, 0, 0, 9, byte(TypeStdout), 'a'}, io.ErrUnexpectedEOF},
		{"ascii noise", []byte("GET / HTTP/1.1\r\n\r\n"), ErrBadFrame},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadFrame(bytes.NewReader(tt.in), 100)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWriteFrameRefusesOversize(t *testing.T) {
	g, h := Pipe(64)
	defer g.Close()
	defer h.Close()
	if err := g.WriteFrame(TypeStdout, make([]byte, 65)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("got %v, want ErrFrameTooLarge", err)
	}
	if err := g.WriteFrame(0, nil); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("got %v, want ErrBadFrame", err)
	}
}

func TestHandshake(t *testing.T) {
	g, h := Pipe(0)
	defer g.Close()
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		w, err := GuestHandshake(ctx, g, Hello{Kernel: "6.1.0", Collector: "ebpf-guest", InitStartNS: 5, ReadyNS: 9})
		if err == nil && w.Version != MaxVersion {
			err = fmt.Errorf("welcome version %d", w.Version)
		}
		errc <- err
	}()
	hello, v, err := HostHandshake(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if v != MaxVersion || hello.Kernel != "6.1.0" || hello.Collector != "ebpf-guest" || hello.ReadyNS != 9 {
		t.Fatalf("got hello %+v version %d", hello, v)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestHandshakeVersionMismatch(t *testing.T) {
	g, h := Pipe(0)
	defer g.Close()
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() {
		// A guest from the future that speaks only version 99.
		_ = g.Send(&Hello{Magic: Magic, MinVersion: 99, MaxVersion: 99})
		f, err := g.ReadFrame()
		if err == nil && f.Type != TypeError {
			t.Errorf("guest got %s, want an error frame", f.Type)
		}
	}()
	if _, _, err := HostHandshake(ctx, h); !errors.Is(err, ErrVersion) {
		t.Fatalf("got %v, want ErrVersion", err)
	}
}

func TestHandshakeGarbage(t *testing.T) {
	tests := map[string][]byte{
		"wrong magic": mustFrame(t, &Hello{Magic: "nope", MinVersion: 1, MaxVersion: 1}),
		"not json":    AppendFrame(nil, TypeHello, []byte("{{{")),
		"wrong type":  AppendFrame(nil, TypeStdout, []byte("hi")),
		"noise":       []byte("\x00\x00\x00\x02\x7fhi"),
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			a, b := net.Pipe()
			h := NewConn(b, 0)
			defer h.Close()
			go func() { a.Write(in); a.Close() }()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, _, err := HostHandshake(ctx, h)
			if !errors.Is(err, ErrHandshake) && !errors.Is(err, ErrBadFrame) {
				t.Fatalf("got %v, want a handshake or frame error", err)
			}
		})
	}
}

func TestHandshakeTimeout(t *testing.T) {
	_, h := Pipe(0)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := HostHandshake(ctx, h); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
}

func mustFrame(t *testing.T, v any) []byte {
	t.Helper()
	f, err := Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return AppendFrame(nil, f.Type, f.Payload)
}

func TestMessagesRoundTrip(t *testing.T) {
	g, h := Pipe(0)
	defer g.Close()
	defer h.Close()
	run := &Run{Argv: []string{"python3", "main.py"}, Env: []string{"PATH=/bin", "X=a=b"}, TimeoutMS: 1000,
		MemoryBytes: 1 << 20, PIDs: 5, OutputBytes: 10, Network: "none", Collect: []string{"out/a.txt"}}
	ev := &Events{Events: []profiling.Event{{Kind: profiling.KindExec, PID: 7, Exe: "/usr/bin/python3", Argv: []string{"python3"}, Time: time.Unix(1, 5).UTC()},
		{Kind: profiling.KindFile, PID: 7, Op: "read", Path: "/etc/hosts", Count: 40}}}
	go func() {
		_ = g.Send(run)
		_ = g.Send(ev)
		_ = g.SendFile("out/a.txt", bytes.Repeat([]byte("z"), 3000), true, false)
		_ = g.SendFile("empty", nil, false, true)
	}()
	f, err := h.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	var gotRun Run
	if err := Decode(f, &gotRun); err != nil {
		t.Fatal(err)
	}
	if strings.Join(gotRun.Env, ",") != "PATH=/bin,X=a=b" || gotRun.Collect[0] != "out/a.txt" {
		t.Fatalf("run: %+v", gotRun)
	}
	f, _ = h.ReadFrame()
	var gotEv Events
	if err := Decode(f, &gotEv); err != nil {
		t.Fatal(err)
	}
	if gotEv.Events[0].Exe != "/usr/bin/python3" || !gotEv.Events[0].Time.Equal(time.Unix(1, 5)) || gotEv.Events[1].Count != 40 {
		t.Fatalf("events: %+v", gotEv)
	}
	// Decoding into the wrong message is refused.
	if err := Decode(f, &gotRun); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("wrong type: got %v", err)
	}
	var data []byte
	for {
		f, err := h.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		c, err := DecodeFileChunk(f)
		if err != nil {
			t.Fatal(err)
		}
		if c.Path != "out/a.txt" || !c.Executable {
			t.Fatalf("chunk %+v", c)
		}
		data = append(data, c.Data...)
		if c.Last {
			break
		}
	}
	if len(data) != 3000 {
		t.Fatalf("file: %d bytes", len(data))
	}
	f, _ = h.ReadFrame()
	c, err := DecodeFileChunk(f)
	if err != nil || c.Path != "empty" || !c.Last || !c.Truncated || len(c.Data) != 0 {
		t.Fatalf("empty file chunk: %+v %v", c, err)
	}
}

func TestEventsValidate(t *testing.T) {
	for _, n := range []int64{0, 1, MaxEventCount} {
		e := Events{Events: []profiling.Event{{Kind: profiling.KindFile, Path: "/a", Count: n}}}
		if err := e.Validate(); err != nil {
			t.Errorf("count %d: %v", n, err)
		}
	}
	for _, n := range []int64{-1, MaxEventCount + 1} {
		e := Events{Events: []profiling.Event{{Kind: profiling.KindFile, Path: "/a"}, {Kind: profiling.KindFile, Path: "/a", Count: n}}}
		err := e.Validate()
		if !errors.Is(err, ErrBadFrame) || !strings.Contains(err.Error(), "events[1]: count") {
			t.Errorf("count %d: got %v, want a bad frame naming events[1]'s count", n, err)
		}
	}
}

func TestRunValidate(t *testing.T) {
	ok := func() Run {
		return Run{Argv: []string{"a"}, TimeoutMS: 1, MemoryBytes: 1, PIDs: 1, OutputBytes: 1, Network: "none"}
	}
	tests := map[string]func(*Run){
		"empty argv":     func(r *Run) { r.Argv = nil },
		"nul in arg":     func(r *Run) { r.Argv = []string{"a\x00b"} },
		"bad env":        func(r *Run) { r.Env = []string{"=x"} },
		"no timeout":     func(r *Run) { r.TimeoutMS = 0 },
		"bad network":    func(r *Run) { r.Network = "everything" },
		"escaping path":  func(r *Run) { r.Collect = []string{"../etc/passwd"} },
		"absolute path":  func(r *Run) { r.Collect = []string{"/etc/passwd"} },
		"too many args":  func(r *Run) { r.Argv = make([]string, MaxArgs+1) },
		"huge arg":       func(r *Run) { r.Argv = []string{strings.Repeat("a", MaxStringLen+1)} },
		"negative cpu":   func(r *Run) { r.CPUMillis = -1 },
		"dot component":  func(r *Run) { r.Collect = []string{"a/./b"} },
		"empty segment":  func(r *Run) { r.Collect = []string{"a//b"} },
		"too many files": func(r *Run) { r.Collect = make([]string, MaxCollect+1) },
	}
	base := ok()
	if err := base.Validate(); err != nil {
		t.Fatalf("valid run: %v", err)
	}
	for name, mut := range tests {
		t.Run(name, func(t *testing.T) {
			r := ok()
			mut(&r)
			if err := r.Validate(); !errors.Is(err, ErrBadFrame) {
				t.Fatalf("got %v, want ErrBadFrame", err)
			}
		})
	}
}

// fakeFirecracker serves a hybrid vsock unix socket: it refuses (closes)
// the first refusals connections as Firecracker does while the guest is not
// listening, then answers OK and echoes.
func fakeFirecracker(t *testing.T, refusals int32) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "v.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				line, err := r.ReadString('\n')
				if err != nil || line != "CONNECT 1024\n" {
					return
				}
				if n.Add(1) <= refusals {
					return
				}
				fmt.Fprintf(c, "OK 1073741824\nearly")
				io.Copy(c, r)
			}()
		}
	}()
	return path
}

func TestDialHybridVsock(t *testing.T) {
	path := fakeFirecracker(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := DialHybridVsock(ctx, path, 1024, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Bytes that arrived with the reply line are not lost.
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "early" {
		t.Fatalf("got %q, %v", buf, err)
	}
	conn := NewConn(c, 0)
	if err := conn.WriteFrame(TypeStdout, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	f, err := conn.ReadFrame()
	if err != nil || string(f.Payload) != "ping" {
		t.Fatalf("echo: %v %q", err, f.Payload)
	}
}

func TestDialHybridVsockGivesUp(t *testing.T) {
	path := fakeFirecracker(t, 1<<30)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := DialHybridVsock(ctx, path, 1024, 5*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want DeadlineExceeded", err)
	}
}

func TestParseHybridReply(t *testing.T) {
	for in, ok := range map[string]bool{"OK 5": true, "OK": false, "ok 5": false, "OK x": false, "OK 99999999999": false, "": false} {
		if err := ParseHybridReply(in); (err == nil) != ok {
			t.Errorf("%q: got %v", in, err)
		}
	}
}

func TestFindVirtioPort(t *testing.T) {
	dir := t.TempDir()
	for port, name := range map[string]string{"vport0p1": "org.qemu.guest_agent", "vport1p2": "glasshouse.0"} {
		writeFile(t, filepath.Join(dir, port, "name"), name+"\n")
	}
	got, err := FindVirtioPort(dir, "glasshouse.0")
	if err != nil || got != "/dev/vport1p2" {
		t.Fatalf("got %q, %v", got, err)
	}
	if _, err := FindVirtioPort(dir, "missing"); err == nil {
		t.Fatal("found a missing port")
	}
}

func TestWakeBounds(t *testing.T) {
	ok := Wake{Entropy: make([]byte, MinWakeEntropy), HostTimeNS: 1}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, w := range map[string]Wake{
		"short entropy": {Entropy: make([]byte, MinWakeEntropy-1), HostTimeNS: 1},
		"long entropy":  {Entropy: make([]byte, MaxWakeEntropy+1), HostTimeNS: 1},
		"no clock":      {Entropy: make([]byte, MinWakeEntropy)},
	} {
		f, err := Encode(&w)
		if err != nil {
			t.Fatal(err)
		}
		var got Wake
		if err := Decode(f, &got); !errors.Is(err, ErrBadFrame) {
			t.Errorf("%s: Decode = %v, want ErrBadFrame", name, err)
		}
	}
	f, _ := Encode(&Awake{WakeNS: -1})
	if err := Decode(f, &Awake{}); !errors.Is(err, ErrBadFrame) {
		t.Errorf("negative awake duration: %v", err)
	}
}
