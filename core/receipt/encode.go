package receipt

import (
	"strconv"
	"unicode/utf8"
)

// This file is a direct encoder of the canonical JSON of a Receipt: the
// bytes Canonical(json.Marshal(r)) yields, written field by field in sorted
// key order without reflection, maps or a second pass. Sealing, encoding
// and verifying receipts go through it. TestCanonicalEncoderMatchesGeneric
// and FuzzCanonicalEncoder prove it byte-identical to the generic path on
// receipts with every field set (found by reflection, so a field added to a
// type without a line here fails them).
//
// Rules of the generic path it reproduces:
//   - object keys sorted bytewise; omitempty fields left out when empty;
//   - nil slices and a nil Policy encode as null, empty slices as [];
//   - strings escaped as encoding/json does without HTML escaping, after
//     each byte that is not valid UTF-8 was replaced by U+FFFD (the first
//     encoding writes \ufffd, and the canonicaliser decodes it and writes
//     the character itself).

// appendReceipt appends the canonical JSON of r. Without digest, the
// "digest" member is left out: the form the digest is taken over.
func appendReceipt(b []byte, r *Receipt, digest bool) []byte {
	b = append(b, `{"backend":`...)
	b = appendBackend(b, &r.Backend)
	if digest {
		b = append(b, `,"digest":`...)
		b = appendString(b, r.Digest)
	}
	b = append(b, `,"files":`...)
	if r.Files == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range r.Files {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendFile(b, &r.Files[i])
		}
		b = append(b, ']')
	}
	b = append(b, `,"finished_at":`...)
	b = appendTimestamp(b, r.FinishedAt)
	b = append(b, `,"host":{"arch":`...)
	b = appendString(b, r.Host.Arch)
	b = append(b, `,"glasshouse_version":`...)
	b = appendString(b, r.Host.GlasshouseVersion)
	b = append(b, `,"kernel":`...)
	b = appendString(b, r.Host.Kernel)
	b = append(b, `},"id":`...)
	b = appendString(b, r.ID)
	b = append(b, `,"limits":`...)
	b = appendLimits(b, &r.Limits)
	b = append(b, `,"network":`...)
	if r.Network == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range r.Network {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendNet(b, &r.Network[i])
		}
		b = append(b, ']')
	}
	b = append(b, `,"outcome":`...)
	b = appendOutcome(b, &r.Outcome)
	b = append(b, `,"output":`...)
	b = appendOutput(b, &r.Output)
	if r.Policy != nil {
		b = append(b, `,"policy":`...)
		b = appendPolicy(b, r.Policy)
	}
	b = append(b, `,"processes":`...)
	if r.Processes == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range r.Processes {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendProcess(b, &r.Processes[i])
		}
		b = append(b, ']')
	}
	b = append(b, `,"profiling":`...)
	b = appendProfiling(b, &r.Profiling)
	b = append(b, `,"resources":`...)
	b = appendResources(b, &r.Resources)
	b = append(b, `,"schema":`...)
	b = appendString(b, r.Schema)
	b = append(b, `,"started_at":`...)
	b = appendTimestamp(b, r.StartedAt)
	b = append(b, `,"subject":`...)
	b = appendSubject(b, &r.Subject)
	return append(b, '}')
}

func appendSubject(b []byte, s *Subject) []byte {
	b = append(b, `{"argv":`...)
	b = appendStrings(b, s.Argv)
	if s.CodeSHA256 != "" {
		b = append(b, `,"code_sha256":`...)
		b = appendString(b, s.CodeSHA256)
	}
	b = append(b, `,"files":`...)
	b = appendArtifacts(b, s.Files)
	if s.Language != "" {
		b = append(b, `,"language":`...)
		b = appendString(b, s.Language)
	}
	return append(b, '}')
}

func appendArtifacts(b []byte, as []Artifact) []byte {
	if as == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i := range as {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"bytes":`...)
		b = strconv.AppendInt(b, as[i].Bytes, 10)
		b = append(b, `,"path":`...)
		b = appendString(b, as[i].Path)
		b = append(b, `,"sha256":`...)
		b = appendString(b, as[i].SHA256)
		b = append(b, '}')
	}
	return append(b, ']')
}

func appendBackend(b []byte, k *Backend) []byte {
	b = append(b, `{"accel":`...)
	b = appendString(b, k.Accel)
	if k.Containment != "" {
		b = append(b, `,"containment":`...)
		b = appendString(b, k.Containment)
	}
	b = append(b, `,"isolation":`...)
	b = appendString(b, k.Isolation)
	b = append(b, `,"name":`...)
	b = appendString(b, k.Name)
	if len(k.Notes) > 0 {
		b = append(b, `,"notes":`...)
		b = appendStrings(b, k.Notes)
	}
	b = append(b, `,"version":`...)
	b = appendString(b, k.Version)
	return append(b, '}')
}

func appendLimits(b []byte, l *Limits) []byte {
	b = append(b, '{')
	if l.CPUMillis != 0 {
		b = append(b, `"cpu_millis":`...)
		b = strconv.AppendInt(b, l.CPUMillis, 10)
		b = append(b, ',')
	}
	b = append(b, `"memory_bytes":`...)
	b = strconv.AppendInt(b, l.MemoryBytes, 10)
	b = append(b, `,"network":`...)
	b = appendString(b, l.Network)
	b = append(b, `,"output_bytes":`...)
	b = strconv.AppendInt(b, l.OutputBytes, 10)
	b = append(b, `,"pids":`...)
	b = strconv.AppendInt(b, l.PIDs, 10)
	b = append(b, `,"timeout_ms":`...)
	b = strconv.AppendInt(b, l.TimeoutMS, 10)
	return append(b, '}')
}

func appendOutcome(b []byte, o *Outcome) []byte {
	b = append(b, `{"duration_ms":`...)
	b = strconv.AppendInt(b, o.DurationMS, 10)
	b = append(b, `,"error":`...)
	b = appendString(b, o.Error)
	b = append(b, `,"exit_code":`...)
	b = strconv.AppendInt(b, int64(o.ExitCode), 10)
	b = append(b, `,"failure":`...)
	b = appendString(b, o.Failure)
	b = append(b, `,"oom_killed":`...)
	b = strconv.AppendBool(b, o.OOMKilled)
	b = append(b, `,"signal":`...)
	b = appendString(b, o.Signal)
	b = append(b, `,"timed_out":`...)
	b = strconv.AppendBool(b, o.TimedOut)
	return append(b, '}')
}

func appendOutput(b []byte, o *Output) []byte {
	b = append(b, '{')
	if len(o.Files) > 0 {
		b = append(b, `"files":`...)
		b = appendArtifacts(b, o.Files)
		b = append(b, ',')
	}
	b = append(b, `"stderr_bytes":`...)
	b = strconv.AppendInt(b, o.StderrBytes, 10)
	b = append(b, `,"stderr_sha256":`...)
	b = appendString(b, o.StderrSHA256)
	b = append(b, `,"stderr_truncated":`...)
	b = strconv.AppendBool(b, o.StderrTruncated)
	b = append(b, `,"stdout_bytes":`...)
	b = strconv.AppendInt(b, o.StdoutBytes, 10)
	b = append(b, `,"stdout_sha256":`...)
	b = appendString(b, o.StdoutSHA256)
	b = append(b, `,"stdout_truncated":`...)
	b = strconv.AppendBool(b, o.StdoutTruncated)
	return append(b, '}')
}

func appendResources(b []byte, r *Resources) []byte {
	b = append(b, `{"cpu_system_ms":`...)
	b = strconv.AppendInt(b, r.CPUSystemMS, 10)
	b = append(b, `,"cpu_user_ms":`...)
	b = strconv.AppendInt(b, r.CPUUserMS, 10)
	b = append(b, `,"memory_peak_bytes":`...)
	b = strconv.AppendInt(b, r.MemoryPeakBytes, 10)
	b = append(b, `,"pids_peak":`...)
	b = strconv.AppendInt(b, r.PIDsPeak, 10)
	b = append(b, `,"read_bytes":`...)
	b = strconv.AppendInt(b, r.ReadBytes, 10)
	b = append(b, `,"write_bytes":`...)
	b = strconv.AppendInt(b, r.WriteBytes, 10)
	return append(b, '}')
}

func appendProfiling(b []byte, p *Profiling) []byte {
	b = append(b, `{"collector":`...)
	b = appendString(b, p.Collector)
	b = append(b, `,"dropped":`...)
	b = strconv.AppendInt(b, p.Dropped, 10)
	b = append(b, `,"events":`...)
	b = strconv.AppendInt(b, p.Events, 10)
	b = append(b, `,"mode":`...)
	b = appendString(b, p.Mode)
	b = append(b, `,"omitted":{"files":`...)
	b = strconv.AppendInt(b, p.Omitted.Files, 10)
	b = append(b, `,"network":`...)
	b = strconv.AppendInt(b, p.Omitted.Network, 10)
	b = append(b, `,"processes":`...)
	b = strconv.AppendInt(b, p.Omitted.Processes, 10)
	b = append(b, `},"reason":`...)
	b = appendString(b, p.Reason)
	b = append(b, `,"status":`...)
	b = appendString(b, p.Status)
	return append(b, '}')
}

func appendProcess(b []byte, p *Process) []byte {
	b = append(b, `{"argv":`...)
	b = appendStrings(b, p.Argv)
	b = append(b, `,"cwd":`...)
	b = appendString(b, p.Cwd)
	b = append(b, `,"end_offset_ms":`...)
	b = strconv.AppendInt(b, p.EndOffsetMS, 10)
	b = append(b, `,"exe":`...)
	b = appendString(b, p.Exe)
	if len(p.ExecFailed) > 0 {
		b = append(b, `,"exec_failed":`...)
		b = appendStrings(b, p.ExecFailed)
	}
	b = append(b, `,"exit_code":`...)
	b = strconv.AppendInt(b, p.ExitCode, 10)
	b = append(b, `,"pid":`...)
	b = strconv.AppendInt(b, p.PID, 10)
	b = append(b, `,"ppid":`...)
	b = strconv.AppendInt(b, p.PPID, 10)
	b = append(b, `,"signal":`...)
	b = appendString(b, p.Signal)
	b = append(b, `,"start_offset_ms":`...)
	b = strconv.AppendInt(b, p.StartOffsetMS, 10)
	b = append(b, `,"uid":`...)
	b = strconv.AppendInt(b, p.UID, 10)
	return append(b, '}')
}

func appendFile(b []byte, f *File) []byte {
	b = append(b, `{"count":`...)
	b = strconv.AppendInt(b, f.Count, 10)
	if f.Errno != "" {
		b = append(b, `,"errno":`...)
		b = appendString(b, f.Errno)
	}
	b = append(b, `,"ok":`...)
	b = strconv.AppendBool(b, f.OK)
	b = append(b, `,"op":`...)
	b = appendString(b, f.Op)
	b = append(b, `,"path":`...)
	b = appendString(b, f.Path)
	b = append(b, `,"pid":`...)
	b = strconv.AppendInt(b, f.PID, 10)
	if f.Target != "" {
		b = append(b, `,"target":`...)
		b = appendString(b, f.Target)
	}
	return append(b, '}')
}

func appendNet(b []byte, n *Net) []byte {
	b = append(b, `{"address":`...)
	b = appendString(b, n.Address)
	b = append(b, `,"count":`...)
	b = strconv.AppendInt(b, n.Count, 10)
	if n.Errno != "" {
		b = append(b, `,"errno":`...)
		b = appendString(b, n.Errno)
	}
	b = append(b, `,"family":`...)
	b = appendString(b, n.Family)
	b = append(b, `,"ok":`...)
	b = strconv.AppendBool(b, n.OK)
	b = append(b, `,"op":`...)
	b = appendString(b, n.Op)
	b = append(b, `,"pid":`...)
	b = strconv.AppendInt(b, n.PID, 10)
	b = append(b, `,"port":`...)
	b = strconv.AppendInt(b, n.Port, 10)
	b = append(b, `,"protocol":`...)
	b = appendString(b, n.Protocol)
	return append(b, '}')
}

func appendPolicy(b []byte, p *Policy) []byte {
	b = append(b, `{"name":`...)
	b = appendString(b, p.Name)
	b = append(b, `,"verdict":`...)
	b = appendString(b, p.Verdict)
	b = append(b, `,"violations":`...)
	if p.Violations == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range p.Violations {
			v := &p.Violations[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"evidence":`...)
			b = appendStrings(b, v.Evidence)
			b = append(b, `,"message":`...)
			b = appendString(b, v.Message)
			b = append(b, `,"rule":`...)
			b = appendString(b, v.Rule)
			b = append(b, `,"severity":`...)
			b = appendString(b, v.Severity)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func appendTimestamp(b []byte, t Timestamp) []byte {
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, TimestampLayout)
	return append(b, '"')
}

func appendStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a canonical JSON string: encoding/json's
// escaping without HTML escapes, with every byte that is not valid UTF-8
// written as U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, "\uFFFD"...)
			i++
			start = i
			continue
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
