package training

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"unicode/utf8"
)

// AppendJSON appends the record as one JSON object: the bytes
// encoding/json would write with HTML escaping off (encode_test.go checks
// that), several times faster, since trainers write one per rollout.
func (r *Record) AppendJSON(b []byte) []byte {
	b = append(b, `{"schema":`...)
	b = appendString(b, r.Schema)
	b = append(b, `,"receipt_id":`...)
	b = appendString(b, r.ReceiptID)
	b = append(b, `,"receipt_digest":`...)
	b = appendString(b, r.ReceiptDigest)
	b = append(b, `,"backend":`...)
	b = appendString(b, r.Backend)
	b = append(b, `,"mask":`...)
	b = strconv.AppendBool(b, r.Mask)
	b = append(b, `,"mask_reason":`...)
	b = appendString(b, r.MaskReason)
	b = append(b, `,"failure":`...)
	b = appendString(b, r.Failure)
	b = append(b, `,"exit_code":`...)
	b = strconv.AppendInt(b, int64(r.ExitCode), 10)

	c := &r.Correctness
	b = append(b, `,"correctness":{"checked":`...)
	b = strconv.AppendBool(b, c.Checked)
	b = append(b, `,"source":`...)
	b = appendString(b, c.Source)
	b = append(b, `,"passed":`...)
	b = strconv.AppendBool(b, c.Passed)
	b = append(b, `,"score":`...)
	b = appendFloat(b, c.Score)
	b = append(b, `,"reason":`...)
	b = appendString(b, c.Reason)

	h := &r.Behaviour
	b = append(b, `},"behaviour":{"observed":`...)
	b = appendString(b, h.Observed)
	b = append(b, `,"workspace":`...)
	b = appendString(b, h.Workspace)
	b = appendIntField(b, "network_attempts", h.NetworkAttempts)
	b = appendIntField(b, "network_denied", h.NetworkDenied)
	b = appendIntField(b, "writes_outside_workspace", h.WritesOutsideWorkspace)
	b = appendIntField(b, "process_spawns", h.ProcessSpawns)
	b = appendIntField(b, "grader_reads", h.GraderReads)
	b = appendIntField(b, "grader_writes", h.GraderWrites)
	b = append(b, `,"slept_to_timeout":`...)
	b = strconv.AppendBool(b, h.SleptToTimeout)

	u := &r.Resources
	b = append(b, `},"resources":{"duration_ms":`...)
	b = strconv.AppendInt(b, u.DurationMS, 10)
	b = appendIntField(b, "cpu_ms", u.CPUMS)
	b = appendIntField(b, "memory_peak_bytes", u.MemoryPeakBytes)
	b = appendIntField(b, "pids_peak", u.PIDsPeak)
	b = appendIntField(b, "read_bytes", u.ReadBytes)
	b = appendIntField(b, "write_bytes", u.WriteBytes)
	b = appendIntField(b, "stdout_bytes", u.StdoutBytes)
	b = appendIntField(b, "stderr_bytes", u.StderrBytes)

	b = append(b, `},"reward":{"total":`...)
	b = appendFloat(b, r.Reward.Total)
	b = append(b, `,"terms":`...)
	if r.Reward.Terms == nil {
		b = append(b, "null"...)
	} else {
		keys := make([]string, 0, len(r.Reward.Terms))
		for k := range r.Reward.Terms {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendFloat(b, r.Reward.Terms[k])
		}
		b = append(b, '}')
	}
	return append(b, "}}"...)
}

func appendIntField(b []byte, name string, v int64) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

// appendFloat formats like encoding/json. Reward terms are finite by
// construction (weights and values are); a non-finite value is written as
// 0 rather than producing invalid JSON.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, '0')
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

// appendString quotes s as encoding/json does without HTML escaping,
// taking the slow path for anything but plain printable ASCII.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			q, _ := json.Marshal(s)
			return appendUnescapedHTML(b, q)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendUnescapedHTML undoes encoding/json's \u003c, \u003e and \u0026.
func appendUnescapedHTML(b, q []byte) []byte {
	for i := 0; i < len(q); i++ {
		if q[i] == '\\' && i+5 < len(q) && q[i+1] == 'u' && q[i+2] == '0' && q[i+3] == '0' {
			switch string(q[i+4 : i+6]) {
			case "3c":
				b = append(b, '<')
				i += 5
				continue
			case "3e":
				b = append(b, '>')
				i += 5
				continue
			case "26":
				b = append(b, '&')
				i += 5
				continue
			}
		}
		if q[i] == '\\' && i+1 < len(q) {
			b = append(b, q[i], q[i+1])
			i++
			continue
		}
		b = append(b, q[i])
	}
	return b
}
