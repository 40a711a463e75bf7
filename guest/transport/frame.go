// Package transport is the channel between a microVM guest and its host:
// typed, length-prefixed frames over any byte stream, a versioned handshake,
// and the messages guest/init and the VM backends exchange.
//
// A frame is a 4-byte big-endian payload length, a 1-byte type and the
// payload. Frames larger than a Conn's maximum are refused before anything
// is allocated, unknown types are errors, and a stream that ends inside a
// frame gives io.ErrUnexpectedEOF: garbage never panics or allocates beyond
// the limit.
//
// Byte streams come from virtio-serial (a port found by name in the guest;
// a unix socket chardev on the QEMU host), vsock (AF_VSOCK in the guest;
// Firecracker's hybrid unix-socket vsock or AF_VSOCK through vhost-vsock on
// the host) or an in-memory pipe for tests. The package knows nothing about
// the VMM, so Firecracker and QEMU share one guest.
//
// A Conn is safe for one reader and many concurrent writers. Closing it
// unblocks both.
package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Errors callers tell apart; test with errors.Is.
var (
	// ErrFrameTooLarge means a frame's declared length exceeds the maximum.
	ErrFrameTooLarge = errors.New("frame too large")
	// ErrBadFrame means a frame's type or payload is malformed.
	ErrBadFrame = errors.New("malformed frame")
	// ErrVersion means the two sides share no protocol version.
	ErrVersion = errors.New("protocol version mismatch")
	// ErrHandshake means the peer did not speak the protocol.
	ErrHandshake = errors.New("handshake failed")
)

// HeaderSize is the size of a frame header: length (4) and type (1).
const HeaderSize = 5

// DefaultMaxFrame is the default maximum payload size of a frame.
const DefaultMaxFrame = 1 << 20

// MaxFrameLimit bounds what a Conn may be configured to accept.
const MaxFrameLimit = 16 << 20

// Type is a frame's type.
type Type uint8

// Frame types. The direction is given as guest→host (G→H) or host→guest
// (H→G).
const (
	// TypeHello (G→H) opens the handshake: a Hello message.
	TypeHello Type = iota + 1
	// TypeWelcome (H→G) completes it: a Welcome message.
	TypeWelcome
	// TypeRun (H→G) asks the guest to run a workload: a Run message.
	TypeRun
	// TypeFile (both) carries a chunk of a workspace file: a FileChunk.
	// H→G before TypeRun places input files; G→H after TypeExit returns
	// collected files.
	TypeFile
	// TypeStdin (H→G) is workload stdin; an empty payload closes it.
	TypeStdin
	// TypeStarted (G→H) says the workload runs: a Started message.
	TypeStarted
	// TypeStdout and TypeStderr (G→H) carry raw workload output.
	TypeStdout
	TypeStderr
	// TypeEvents (G→H) carries a batch of profiling events: an Events
	// message.
	TypeEvents
	// TypeExit (G→H) reports how the workload ended: an Exit message.
	TypeExit
	// TypeKill (H→G) asks the guest to kill the workload: a Kill message.
	TypeKill
	// TypeError (both) reports a failure that ends the session: an Error
	// message.
	TypeError
	// TypeDone (G→H) is the last frame of a run: a Done message. The guest
	// powers off after sending it.
	TypeDone
	// TypeWake (H→G, version 2) wakes a guest restored from a snapshot: a
	// Wake message. It is the first frame the host sends to a restored
	// guest, which answers TypeAwake.
	TypeWake
	// TypeAwake (G→H, version 2) says a restored guest reseeded its random
	// number generator, set its clock and mounted its workspace: an Awake
	// message.
	TypeAwake
	// TypeParked (G→H, version 2) says a snapshot template took the
	// host's Welcome and now only waits for Wake: the host may save it. A
	// Parked message.
	TypeParked

	typeLast = TypeParked
)

var typeNames = [...]string{
	TypeHello: "hello", TypeWelcome: "welcome", TypeRun: "run", TypeFile: "file",
	TypeStdin: "stdin", TypeStarted: "started", TypeStdout: "stdout", TypeStderr: "stderr",
	TypeEvents: "events", TypeExit: "exit", TypeKill: "kill", TypeError: "error", TypeDone: "done",
	TypeWake: "wake", TypeAwake: "awake", TypeParked: "parked",
}

func (t Type) String() string {
	if t.Valid() {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Valid reports whether t is a known frame type.
func (t Type) Valid() bool { return t >= TypeHello && t <= typeLast }

// Frame is one decoded frame. Payload is owned by the caller.
type Frame struct {
	Type    Type
	Payload []byte
}

// ReadFrame reads one frame from r, refusing payloads larger than max
// bytes. It returns io.EOF only when r ends cleanly between frames,
// io.ErrUnexpectedEOF when it ends inside one, and errors wrapping
// ErrFrameTooLarge or ErrBadFrame for garbage.
func ReadFrame(r io.Reader, max int) (Frame, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Frame{}, err
	}
	n := binary.BigEndian.Uint32(hdr[:4])
	t := Type(hdr[4])
	if !t.Valid() {
		return Frame{}, fmt.Errorf("%w: unknown type %d", ErrBadFrame, hdr[4])
	}
	if uint64(n) > uint64(max) {
		return Frame{}, fmt.Errorf("%w: %s frame of %d bytes exceeds the limit of %d", ErrFrameTooLarge, t, n, max)
	}
	f := Frame{Type: t, Payload: make([]byte, n)}
	if _, err := io.ReadFull(r, f.Payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return f, nil
}

// AppendFrame appends the encoding of a frame to b.
func AppendFrame(b []byte, t Type, payload []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	b = append(b, byte(t))
	return append(b, payload...)
}
