package qemu

import (
	"bufio"
	"errors"
	"strings"
	"testing"
)

func TestParseQMP(t *testing.T) {
	for _, line := range []string{
		`{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}`,
		`{"return": {}}`,
		`{"error": {"class": "GenericError", "desc": "no"}}`,
		`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "MIGRATION", "data": {"status": "completed"}}`,
	} {
		if _, err := parseQMP([]byte(line)); err != nil {
			t.Errorf("%s: %v", line, err)
		}
	}
	for _, line := range []string{``, `[]`, `{}`, `{"return": {}, "event": "X"}`, `{"return": `, "\x00"} {
		if _, err := parseQMP([]byte(line)); !errors.Is(err, errQMP) {
			t.Errorf("%q: got %v, want errQMP", line, err)
		}
	}
	if s, err := migrationStatus([]byte(`{"status": "completed", "total-time": 10}`)); err != nil || s != "completed" {
		t.Errorf("migration status %q %v", s, err)
	}
	long := `{"return": "` + strings.Repeat("x", maxQMPLine) + `"}` + "\n"
	if _, err := readQMP(bufio.NewReaderSize(strings.NewReader(long), 4096)); !errors.Is(err, errQMP) {
		t.Errorf("an over-long line: %v", err)
	}
}

// FuzzParseQMP feeds arbitrary monitor output to the QMP reader: it must
// return messages or errors, never panic or read past its line limit.
func FuzzParseQMP(f *testing.F) {
	f.Add([]byte(`{"QMP": {"version": {}, "capabilities": []}}` + "\n" + `{"return": {}}` + "\n"))
	f.Add([]byte(`{"event": "RESUME", "data": {}}` + "\n" + `{"error": {"class": "x", "desc": "y"}}` + "\n"))
	f.Add([]byte(`{"return": {"status": "active"}}`))
	f.Add([]byte("garbage\n{\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReaderSize(strings.NewReader(string(in)), 16)
		for i := 0; i < 100; i++ {
			m, err := readQMP(r)
			if err != nil {
				return
			}
			if m.Return != nil {
				_, _ = migrationStatus(*m.Return)
			}
		}
	})
}
