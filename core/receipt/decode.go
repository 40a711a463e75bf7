package receipt

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// This file is a typed parser of the stored forms of a Receipt: Decode's
// fast path. It accepts only what the canonical encoder writes (the escapes
// encoding/json uses, valid UTF-8, integers, the fields this build knows)
// and gives up on anything else, leaving the decision to the generic path.
// It needs to be exact only for documents it accepts: Decode re-encodes the
// result and accepts it only if that reproduces the document byte for byte
// and hashes to its digest, so a lenient parse can never pass an edit.
// FuzzVerify checks that every receipt it accepts equals what Parse gives.

// typedDecoder reads JSON from b. A failure is sticky: once bad is set,
// every read returns a zero value and the caller checks bad at the end.
type typedDecoder struct {
	b   []byte
	i   int
	bad bool
}

// parseTyped parses doc into a Receipt, or reports false.
func parseTyped(doc []byte) (*Receipt, bool) {
	d := typedDecoder{b: doc}
	var r Receipt
	d.object(func(key []byte) {
		switch string(key) {
		case "backend":
			d.backend(&r.Backend)
		case "digest":
			r.Digest = d.str()
		case "files":
			r.Files = arrayOf(&d, (*typedDecoder).file)
		case "finished_at":
			r.FinishedAt = d.timestamp()
		case "host":
			d.host(&r.Host)
		case "id":
			r.ID = d.str()
		case "limits":
			d.limits(&r.Limits)
		case "network":
			r.Network = arrayOf(&d, (*typedDecoder).net)
		case "outcome":
			d.outcome(&r.Outcome)
		case "output":
			d.output(&r.Output)
		case "policy":
			r.Policy = new(Policy)
			d.policy(r.Policy)
		case "processes":
			r.Processes = arrayOf(&d, (*typedDecoder).process)
		case "profiling":
			d.profiling(&r.Profiling)
		case "resources":
			d.resources(&r.Resources)
		case "schema":
			r.Schema = d.str()
		case "started_at":
			r.StartedAt = d.timestamp()
		case "subject":
			d.subject(&r.Subject)
		default:
			d.bad = true
		}
	})
	d.ws()
	if d.bad || d.i != len(d.b) {
		return nil, false
	}
	return &r, true
}

func (d *typedDecoder) subject(s *Subject) {
	d.object(func(key []byte) {
		switch string(key) {
		case "argv":
			s.Argv = d.strs()
		case "code_sha256":
			s.CodeSHA256 = d.str()
		case "files":
			s.Files = arrayOf(d, (*typedDecoder).artifact)
		case "language":
			s.Language = d.str()
		default:
			d.bad = true
		}
	})
}

func (d *typedDecoder) artifact(a *Artifact) {
	d.object(func(key []byte) {
		switch string(key) {
		case "bytes":
			a.Bytes = d.int()
		case "path":
			a.Path = d.str()
		case "sha256":
			a.SHA256 = d.str()
		default:
			d.bad = true
		}
	})
}

func (d *typedDecoder) backend(k *Backend) {
	d.object(func(key []byte) {
		switch string(key) {
		case "accel":
			k.Accel = d.str()
		case "containment":
			k.Containment = d.str()
		case "isolation":
			k.Isolation = d.str()
		case "name":
			k.Name = d.str()
		case "notes":
			k.Notes = d.strs()
		case "version":
			k.Version = d.str()
		default:
			d.bad = true
		}
	})
}

func (d *typedDecoder) host(h *Host) {
	d.object(func(key []byte) {
		switch string(key) {
		case "arch":
			h.Arch = d.str()
		case "glasshouse_version":
			h.GlasshouseVersion = d.str()
		case "kernel":
			h.Kernel = d.str()
		default:
			d.bad = true
		}
	})
}

func (d *typedDecoder) limits(l *Limits) {
	d.object(func(key []byte) {
		switch string(key) {
		case "cpu_millis":
			l.CPUMillis = d.int()
		case "memory_bytes":
			l.MemoryBytes = d.int()
		case "network":
			l.Network = d.str()
		case "output_bytes":
			l.OutputBytes = d.int()
		case "pids":
			l.PIDs = d.int()
		case "timeout_ms":
			l.TimeoutMS = d.int()
		default:
			d.bad = true
		}
	})
}

func (d *typedDecoder) outcome(o *Outcome) {
	d.object(func(key []byte) {
		switch string(key) {
		case "duration_ms":
			o.DurationMS = d.int()
		case "error":
			o.Error = d.str()
		case "exit_code":
			o.ExitCode = int(d.int())
		case "failure":
			o.Failure = d.str()
		case "oom_killed":
			o.OOMKilled = d.bool()
		case "signal":
			o.Signal = d.str()
		case "timed_out":
			o.TimedOut = d.bool()
		default:
			d.bad = true
		}
	})
}

func (d *typedDecoder) output(o *Output) {
	d.object(func(key []byte) {
		switch string(key) {
		case "files":
			o.Files = arrayOf(d, (*typedDecoder).artifact)
		case "stderr_bytes":
			o.StderrBytes = d.int()
		case "stderr_sha256":
			o.StderrSHA256 = d.str()
		case "stderr_truncated":
			o.StderrTruncated = d.bool()
		case "stdout_bytes":
			o.StdoutBytes = d.int()
		case "stdout_sha256":
			o.StdoutSHA256 = d.str()
		case "stdout_truncated":
			o.StdoutTruncated = d.bool()
		default:
			d.bad = true
		}
	})
}

func (d *typedDecoder) resources(r *Resources) {
	d.object(func(key []byte) {
		switch string(key) {
		case "cpu_system_ms":
			r.CPUSystemMS = d.int()
		case "cpu_user_ms":
			r.CPUUserMS = d.int()
		case "memory_peak_bytes":
			r.MemoryPeakBytes = d.int()
		case "pids_peak":
			r.PIDsPeak = d.int()
		case "read_bytes":
			r.ReadBytes = d.int()
		case "write_bytes":
			r.WriteBytes = d.int()
		default:
			d.bad = true
		}
	})
}

func (d *typedDecoder) profiling(p *Profiling) {
	d.object(func(key []byte) {
		switch string(key) {
		case "collector":
			p.Collector = d.str()
		case "dropped":
			p.Dropped = d.int()
		case "events":
			p.Events = d.int()
		case "mode":
			p.Mode = d.str()
		case "omitted":
			d.object(func(key []byte) {
				switch string(key) {
				case "files":
					p.Omitted.Files = d.int()
				case "network":
					p.Omitted.Network = d.int()
				case "processes":
					p.Omitted.Processes = d.int()
				default:
					d.bad = true
				}
			})
		case "reason":
			p.Reason = d.str()
		case "status":
			p.Status = d.str()
		default:
			d.bad = true
		}
	})
}

func (d *typedDecoder) process(p *Process) {
	d.object(func(key []byte) {
		switch string(key) {
		case "argv":
			p.Argv = d.strs()
		case "cwd":
			p.Cwd = d.str()
		case "end_offset_ms":
			p.EndOffsetMS = d.int()
		case "exe":
			p.Exe = d.str()
		case "exec_failed":
			p.ExecFailed = d.strs()
		case "exit_code":
			p.ExitCode = d.int()
		case "pid":
			p.PID = d.int()
		case "ppid":
			p.PPID = d.int()
		case "signal":
			p.Signal = d.str()
		case "start_offset_ms":
			p.StartOffsetMS = d.int()
		case "uid":
			p.UID = d.int()
		default:
			d.bad = true
		}
	})
}

func (d *typedDecoder) file(f *File) {
	d.object(func(key []byte) {
		switch string(key) {
		case "count":
			f.Count = d.int()
		case "errno":
			f.Errno = d.str()
		case "ok":
			f.OK = d.bool()
		case "op":
			f.Op = d.str()
		case "path":
			f.Path = d.str()
		case "pid":
			f.PID = d.int()
		case "target":
			f.Target = d.str()
		default:
			d.bad = true
		}
	})
}

func (d *typedDecoder) net(n *Net) {
	d.object(func(key []byte) {
		switch string(key) {
		case "address":
			n.Address = d.str()
		case "count":
			n.Count = d.int()
		case "errno":
			n.Errno = d.str()
		case "family":
			n.Family = d.str()
		case "ok":
			n.OK = d.bool()
		case "op":
			n.Op = d.str()
		case "pid":
			n.PID = d.int()
		case "port":
			n.Port = d.int()
		case "protocol":
			n.Protocol = d.str()
		default:
			d.bad = true
		}
	})
}

func (d *typedDecoder) policy(p *Policy) {
	d.object(func(key []byte) {
		switch string(key) {
		case "name":
			p.Name = d.str()
		case "verdict":
			p.Verdict = d.str()
		case "violations":
			p.Violations = arrayOf(d, (*typedDecoder).violation)
		default:
			d.bad = true
		}
	})
}

func (d *typedDecoder) violation(v *Violation) {
	d.object(func(key []byte) {
		switch string(key) {
		case "evidence":
			v.Evidence = d.strs()
		case "message":
			v.Message = d.str()
		case "rule":
			v.Rule = d.str()
		case "severity":
			v.Severity = d.str()
		default:
			d.bad = true
		}
	})
}

// ws skips insignificant whitespace.
func (d *typedDecoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\n', '\t', '\r':
			d.i++
		default:
			return
		}
	}
}

// next skips whitespace and consumes c, or fails.
func (d *typedDecoder) next(c byte) bool {
	d.ws()
	if d.bad || d.i >= len(d.b) || d.b[d.i] != c {
		d.bad = true
		return false
	}
	d.i++
	return true
}

// peek skips whitespace and reports whether the next byte is c.
func (d *typedDecoder) peek(c byte) bool {
	d.ws()
	return !d.bad && d.i < len(d.b) && d.b[d.i] == c
}

// object reads an object, calling member for each key with the decoder
// positioned at the member's value. Keys must be plain (no escapes) and
// sorted.
func (d *typedDecoder) object(member func(key []byte)) {
	if !d.next('{') {
		return
	}
	if d.peek('}') {
		d.i++
		return
	}
	var prev []byte
	for !d.bad {
		if !d.next('"') {
			return
		}
		start := d.i
		for d.i < len(d.b) && d.b[d.i] != '"' && d.b[d.i] != '\\' {
			d.i++
		}
		if d.i >= len(d.b) || d.b[d.i] != '"' {
			d.bad = true
			return
		}
		key := d.b[start:d.i]
		// Keys in strictly increasing order, as the canonical form has
		// them: no duplicate, which encoding/json would merge.
		if prev != nil && string(prev) >= string(key) {
			d.bad = true
			return
		}
		prev = key
		d.i++
		if !d.next(':') {
			return
		}
		d.ws()
		member(key)
		d.ws()
		if d.bad || d.i >= len(d.b) {
			d.bad = true
			return
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case '}':
			d.i++
			return
		default:
			d.bad = true
		}
	}
}

// null consumes a null literal if one is next.
func (d *typedDecoder) null() bool {
	d.ws()
	if len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return true
	}
	return false
}

// arrayOf reads an array of T with elem, or null as a nil slice, like
// encoding/json.
func arrayOf[T any](d *typedDecoder, elem func(*typedDecoder, *T)) []T {
	if d.null() {
		return nil
	}
	if !d.next('[') {
		return nil
	}
	out := []T{}
	if d.peek(']') {
		d.i++
		return out
	}
	for !d.bad {
		var v T
		elem(d, &v)
		out = append(out, v)
		d.ws()
		if d.bad || d.i >= len(d.b) {
			d.bad = true
			return nil
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case ']':
			d.i++
			return out
		default:
			d.bad = true
		}
	}
	return nil
}

func (d *typedDecoder) strs() []string {
	return arrayOf(d, func(d *typedDecoder, s *string) { *s = d.str() })
}

// str reads a string. It accepts only valid UTF-8 and the escapes the
// canonical encoder writes; anything else fails.
func (d *typedDecoder) str() string {
	if !d.next('"') {
		return ""
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := string(d.b[start:d.i])
			d.i++
			return s
		case c == '\\':
			return d.strEscaped(start)
		case c < 0x20:
			d.bad = true
			return ""
		case c < utf8.RuneSelf:
			d.i++
		default:
			r, size := utf8.DecodeRune(d.b[d.i:])
			if r == utf8.RuneError && size == 1 {
				d.bad = true
				return ""
			}
			d.i += size
		}
	}
	d.bad = true
	return ""
}

// strEscaped continues str from the first backslash.
func (d *typedDecoder) strEscaped(start int) string {
	out := append(make([]byte, 0, d.i-start+16), d.b[start:d.i]...)
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return string(out)
		case c == '\\':
			if d.i+1 >= len(d.b) {
				d.bad = true
				return ""
			}
			e := d.b[d.i+1]
			d.i += 2
			switch e {
			case '"', '\\':
				out = append(out, e)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				if len(d.b)-d.i < 4 {
					d.bad = true
					return ""
				}
				v, err := strconv.ParseUint(string(d.b[d.i:d.i+4]), 16, 16)
				// Only the \u escapes the encoder writes: control
				// characters and the two line separators.
				if err != nil || (v >= 0x20 && v != 0x2028 && v != 0x2029) {
					d.bad = true
					return ""
				}
				out = utf8.AppendRune(out, rune(v))
				d.i += 4
			default:
				d.bad = true
				return ""
			}
		case c < 0x20:
			d.bad = true
			return ""
		case c < utf8.RuneSelf:
			out = append(out, c)
			d.i++
		default:
			r, size := utf8.DecodeRune(d.b[d.i:])
			if r == utf8.RuneError && size == 1 {
				d.bad = true
				return ""
			}
			out = append(out, d.b[d.i:d.i+size]...)
			d.i += size
		}
	}
	d.bad = true
	return ""
}

// int reads an integer written without fraction or exponent.
func (d *typedDecoder) int() int64 {
	d.ws()
	start := d.i
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	digits := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	if d.i-digits > 1 && d.b[digits] == '0' {
		d.bad = true // a leading zero is not JSON
		return 0
	}
	v, err := strconv.ParseInt(string(d.b[start:d.i]), 10, 64)
	if err != nil {
		d.bad = true
	}
	return v
}

func (d *typedDecoder) bool() bool {
	d.ws()
	switch {
	case len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "true":
		d.i += 4
		return true
	case len(d.b)-d.i >= 5 && string(d.b[d.i:d.i+5]) == "false":
		d.i += 5
		return false
	}
	d.bad = true
	return false
}

// timestamp reads a Timestamp as its UnmarshalJSON does.
func (d *typedDecoder) timestamp() Timestamp {
	s := d.str()
	if d.bad {
		return Timestamp{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		d.bad = true
		return Timestamp{}
	}
	return Timestamp{t.UTC()}
}
