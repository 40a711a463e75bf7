package receipt

import (
	"cmp"
	"slices"

	"glasshouse.dev/glasshouse/core/version"
)

// Seal normalises r and sets its digest. Normalising sets the schema, turns
// nil lists into empty ones, sorts every list into its canonical order and
// derives the profiling status from drops and omissions, so two runs that
// behaved the same produce byte-identical sections. Seal may be called again
// after r is changed.
func Seal(r *Receipt) error {
	Normalize(r)
	r.Digest = ""
	r.Digest = digestString(appendReceipt(make([]byte, 0, encodedSizeHint(r)), r, false))
	return nil
}

// Normalize puts r into canonical order without computing a digest.
func Normalize(r *Receipt) {
	r.Schema = version.ReceiptSchema
	r.Subject.Argv = nonNil(r.Subject.Argv)
	r.Subject.Files = nonNil(r.Subject.Files)
	slices.SortFunc(r.Subject.Files, compareArtifacts)
	slices.SortFunc(r.Output.Files, compareArtifacts)
	r.Processes = nonNil(r.Processes)
	for i := range r.Processes {
		r.Processes[i].Argv = nonNil(r.Processes[i].Argv)
	}
	r.Files = nonNil(r.Files)
	r.Network = nonNil(r.Network)
	SortProcesses(r.Processes)
	SortFiles(r.Files)
	SortNetwork(r.Network)
	if r.Policy != nil {
		r.Policy.Violations = nonNil(r.Policy.Violations)
		for i := range r.Policy.Violations {
			r.Policy.Violations[i].Evidence = nonNil(r.Policy.Violations[i].Evidence)
		}
	}
	p := &r.Profiling
	if p.Status == StatusComplete && (p.Dropped > 0 || p.Omitted.Total() > 0) {
		p.Status = StatusPartial
	}
}

// SortProcesses orders processes by start offset, then pid.
func SortProcesses(ps []Process) {
	slices.SortStableFunc(ps, func(a, b Process) int {
		return cmp.Or(
			cmp.Compare(a.StartOffsetMS, b.StartOffsetMS),
			cmp.Compare(a.PID, b.PID),
		)
	})
}

// SortFiles orders file entries by path, then op, then the remaining fields
// so that the order is total.
func SortFiles(fs []File) {
	slices.SortFunc(fs, func(a, b File) int {
		return cmp.Or(
			cmp.Compare(a.Path, b.Path),
			cmp.Compare(a.Op, b.Op),
			cmp.Compare(a.Target, b.Target),
			cmp.Compare(a.PID, b.PID),
			compareBool(a.OK, b.OK),
			cmp.Compare(a.Errno, b.Errno),
			cmp.Compare(a.Count, b.Count),
		)
	})
}

// SortNetwork orders network entries by op, address and port, then the
// remaining fields so that the order is total.
func SortNetwork(ns []Net) {
	slices.SortFunc(ns, func(a, b Net) int {
		return cmp.Or(
			cmp.Compare(a.Op, b.Op),
			cmp.Compare(a.Address, b.Address),
			cmp.Compare(a.Port, b.Port),
			cmp.Compare(a.Family, b.Family),
			cmp.Compare(a.Protocol, b.Protocol),
			cmp.Compare(a.PID, b.PID),
			compareBool(a.OK, b.OK),
			cmp.Compare(a.Errno, b.Errno),
			cmp.Compare(a.Count, b.Count),
		)
	})
}

func compareArtifacts(a, b Artifact) int {
	return cmp.Or(cmp.Compare(a.Path, b.Path), cmp.Compare(a.SHA256, b.SHA256))
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	default:
		return 1
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
