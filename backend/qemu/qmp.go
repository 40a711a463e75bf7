package qemu

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// maxQMPLine bounds one QMP message: QEMU's answers to the few commands
// the backend sends are far smaller.
const maxQMPLine = 1 << 20

// errQMP is wrapped by every QMP protocol error.
var errQMP = errors.New("qmp")

// qmpMessage is one line QEMU sends on its monitor: the greeting, a
// command's return or error, or an event.
type qmpMessage struct {
	Greeting *json.RawMessage `json:"QMP,omitempty"`
	Return   *json.RawMessage `json:"return,omitempty"`
	Error    *qmpError        `json:"error,omitempty"`
	Event    string           `json:"event,omitempty"`
	Data     json.RawMessage  `json:"data,omitempty"`
}

type qmpError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

// parseQMP decodes one monitor line. Errors wrap errQMP.
func parseQMP(line []byte) (qmpMessage, error) {
	var m qmpMessage
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return m, fmt.Errorf("%w: not a JSON object: %q", errQMP, clipBytes(line))
	}
	if err := json.Unmarshal(line, &m); err != nil {
		return m, fmt.Errorf("%w: %v", errQMP, err)
	}
	n := 0
	for _, set := range []bool{m.Greeting != nil, m.Return != nil, m.Error != nil, m.Event != ""} {
		if set {
			n++
		}
	}
	if n != 1 {
		return m, fmt.Errorf("%w: message is not exactly one of greeting, return, error and event: %q", errQMP, clipBytes(line))
	}
	if m.Error != nil && len(m.Error.Desc) > 4096 {
		m.Error.Desc = m.Error.Desc[:4096]
	}
	return m, nil
}

// readQMP reads one line of at most maxQMPLine bytes and parses it.
func readQMP(r *bufio.Reader) (qmpMessage, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxQMPLine {
			return qmpMessage{}, fmt.Errorf("%w: a message of more than %d bytes", errQMP, maxQMPLine)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return qmpMessage{}, err
		}
	}
	return parseQMP(line)
}

// migrationStatus returns the status of a MIGRATION event or of
// query-migrate's return.
func migrationStatus(data []byte) (string, error) {
	var s struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return "", fmt.Errorf("%w: migration status: %v", errQMP, err)
	}
	return s.Status, nil
}

func clipBytes(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}
