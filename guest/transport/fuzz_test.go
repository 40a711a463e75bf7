package transport

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// FuzzReadFrame feeds arbitrary bytes to the frame decoder and every
// message decoder: they must return errors, never panic, never allocate past
// the frame limit, and whatever decodes must re-encode to the same frame.
func FuzzReadFrame(f *testing.F) {
	f.Add(AppendFrame(nil, TypeStdout, []byte("hello")))
	f.Add(AppendFrame(nil, TypeHello, []byte(`{"magic":"glasshouse/transport","min_version":1,"max_version":1}`)))
	f.Add(AppendFrame(nil, TypeRun, []byte(`{"argv":["python3","main.py"],"env":["A=b"],"timeout_ms":1,"memory_bytes":1,"pids":1,"output_bytes":1,"network":"none","collect":["x"]}`)))
	f.Add(AppendFrame(nil, TypeEvents, []byte(`{"events":[{"Kind":1,"PID":3,"Argv":["a"]}]}`)))
	f.Add(AppendFrame(nil, TypeEvents, []byte(`{"events":[{"Kind":5,"PID":3,"Path":"/a","Op":"read","Count":40}]}`)))
	f.Add(AppendFrame(nil, TypeFile, AppendFileChunk(nil, &FileChunk{Path: "a/b", Data: []byte("x"), Last: true})))
	f.Add(AppendFrame(nil, TypeExit, []byte(`{"exit_code":1,"notes":["x"]}`)))
	f.Add(AppendFrame(nil, TypeWake, []byte(`{"entropy":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","host_time_ns":1,"prewarm":true}`)))
	f.Add(AppendFrame(nil, TypeAwake, []byte(`{"reseed_error":"x","prewarm_ns":5,"wake_ns":-1}`)))
	f.Add(AppendFrame(nil, TypeParked, []byte(`{"ready_ns":7}`)))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Add([]byte{0, 0, 0, 1})
	const max = 4096
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		for {
			fr, err := ReadFrame(r, max)
			if err != nil {
				if err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrBadFrame) && !errors.Is(err, ErrFrameTooLarge) {
					t.Fatalf("unexpected error class: %v", err)
				}
				return
			}
			if len(fr.Payload) > max {
				t.Fatalf("payload of %d bytes passed the limit", len(fr.Payload))
			}
			decodeAny(t, fr)
		}
	})
}

func decodeAny(t *testing.T, fr Frame) {
	var v any
	switch fr.Type {
	case TypeHello:
		v = &Hello{}
	case TypeWelcome:
		v = &Welcome{}
	case TypeRun:
		v = &Run{}
	case TypeStarted:
		v = &Started{}
	case TypeExit:
		v = &Exit{}
	case TypeEvents:
		v = &Events{}
	case TypeDone:
		v = &Done{}
	case TypeKill:
		v = &Kill{}
	case TypeError:
		v = &Error{}
	case TypeWake:
		v = &Wake{}
	case TypeAwake:
		v = &Awake{}
	case TypeParked:
		v = &Parked{}
	case TypeFile:
		c, err := DecodeFileChunk(fr)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) {
				t.Fatalf("file chunk: unexpected error class: %v", err)
			}
			return
		}
		if got := AppendFileChunk(nil, &c); !bytes.Equal(got, fr.Payload) {
			t.Fatalf("file chunk does not re-encode: %q vs %q", got, fr.Payload)
		}
		return
	default:
		return
	}
	if err := Decode(fr, v); err != nil {
		if !errors.Is(err, ErrBadFrame) && !errors.Is(err, ErrHandshake) && !errors.Is(err, ErrVersion) {
			t.Fatalf("%s: unexpected error class: %v", fr.Type, err)
		}
		return
	}
	if _, err := Encode(v); err != nil {
		t.Fatalf("%s: decoded message does not encode: %v", fr.Type, err)
	}
}

// FuzzHybridReply feeds arbitrary CONNECT replies to the hybrid vsock
// parser.
func FuzzHybridReply(f *testing.F) {
	f.Add("OK 1073741824")
	f.Add("OK ")
	f.Add("ERR")
	f.Fuzz(func(t *testing.T, line string) {
		if err := ParseHybridReply(line); err != nil && !errors.Is(err, ErrHandshake) {
			t.Fatalf("unexpected error class: %v", err)
		}
	})
}
