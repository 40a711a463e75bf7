package agent

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"glasshouse.dev/glasshouse/core/policy"
)

// ErrInvalidSelector means a selector could not be parsed; the message
// names it and says why.
var ErrInvalidSelector = errors.New("invalid selector")

// Bounds on a selection.
const (
	MaxSelectors     = 256
	MaxSelectorBytes = 1024
)

// Selector kinds.
const (
	SelectAll       = "all"
	SelectGlob      = "glob"
	SelectPod       = "pod"
	SelectContainer = "container"
)

// Selector picks cgroups to observe. Paths are relative to the cgroup2
// mount and start with "/" (the root cgroup is "/"), as in
// /proc/PID/cgroup. The zero value selects nothing.
type Selector struct {
	kind string
	glob *policy.Glob
	// id is a pod UID, a container id or its prefix; "*" for any.
	id string
}

// ParseSelector parses one selector:
//
//	all                  the root cgroup: everything on the host, as one workload
//	glob:PATTERN         cgroups whose path matches PATTERN (see policy.Glob:
//	/PATTERN             *, ?, [..], and ** for any number of segments)
//	pod:UID              the pod-level cgroup of the pod with that UID (dashes
//	                     or underscores), its containers included
//	pod:*                every pod
//	container:ID         the cgroup of the container whose id is ID or starts
//	                     with ID (at least 12 hex digits)
//	container:*          every container
//
// Errors wrap ErrInvalidSelector.
func ParseSelector(s string) (Selector, error) {
	if len(s) > MaxSelectorBytes {
		return Selector{}, fmt.Errorf("%w: selector of %d bytes exceeds the limit of %d", ErrInvalidSelector, len(s), MaxSelectorBytes)
	}
	s = strings.TrimSpace(s)
	if s == SelectAll {
		return Selector{kind: SelectAll}, nil
	}
	kind, arg, found := strings.Cut(s, ":")
	if !found && strings.HasPrefix(s, "/") {
		kind, arg = SelectGlob, s
	}
	switch kind {
	case SelectGlob:
		if !strings.HasPrefix(arg, "/") {
			return Selector{}, fmt.Errorf("%w %q: a glob must start with / (paths are relative to the cgroup2 mount)", ErrInvalidSelector, s)
		}
		if strings.ContainsRune(arg, 0) {
			return Selector{}, fmt.Errorf("%w %q: NUL byte", ErrInvalidSelector, s)
		}
		g, err := policy.CompileGlob(arg)
		if err != nil {
			return Selector{}, fmt.Errorf("%w %q: %v", ErrInvalidSelector, s, err)
		}
		return Selector{kind: SelectGlob, glob: g}, nil
	case SelectPod:
		if arg == "*" {
			return Selector{kind: SelectPod, id: "*"}, nil
		}
		uid, ok := canonicalUID(strings.ReplaceAll(arg, "_", "-"))
		if !ok {
			return Selector{}, fmt.Errorf("%w %q: a pod UID is 8-4-4-4-12 hex digits (or a static pod's 32 hex digits)", ErrInvalidSelector, s)
		}
		return Selector{kind: SelectPod, id: uid}, nil
	case SelectContainer:
		if arg == "*" {
			return Selector{kind: SelectContainer, id: "*"}, nil
		}
		// Runtimes print ids with a scheme ("containerd://<id>").
		if _, id, ok := strings.Cut(arg, "://"); ok {
			arg = id
		}
		id := strings.ToLower(arg)
		if len(id) < 12 || len(id) > 64 || !isHex(id, len(id)) {
			return Selector{}, fmt.Errorf("%w %q: a container id is 12 to 64 hex digits", ErrInvalidSelector, s)
		}
		return Selector{kind: SelectContainer, id: id}, nil
	}
	return Selector{}, fmt.Errorf("%w %q: want all, glob:PATTERN, /PATTERN, pod:UID, pod:*, container:ID or container:*", ErrInvalidSelector, s)
}

// String returns the selector in the form ParseSelector reads.
func (s Selector) String() string {
	switch s.kind {
	case SelectAll:
		return SelectAll
	case SelectGlob:
		return SelectGlob + ":" + s.glob.String()
	case SelectPod, SelectContainer:
		return s.kind + ":" + s.id
	}
	return ""
}

// Match reports whether the cgroup at path (relative to the cgroup2 mount)
// is selected. ref is ParseKube(path); pass it to avoid parsing twice.
func (s Selector) Match(path string, ref KubeRef, isKube bool) bool {
	switch s.kind {
	case SelectAll:
		return path == "/"
	case SelectGlob:
		return s.glob.Match(path)
	case SelectPod:
		return isKube && ref.Level == LevelPod && (s.id == "*" || s.id == ref.PodUID)
	case SelectContainer:
		return isKube && ref.Level == LevelContainer && (s.id == "*" || strings.HasPrefix(ref.ContainerID, s.id))
	}
	return false
}

// watchRoot is the deepest directory under which every cgroup this
// selector can match lives; "" for all, which selects the root itself
// and needs no watch.
func (s Selector) watchRoot() string {
	switch s.kind {
	case SelectAll:
		return ""
	case SelectPod, SelectContainer:
		return "/"
	}
	p := s.glob.String()
	if i := strings.IndexAny(p, `*?[\`); i >= 0 {
		p = p[:i]
		// The literal part may end inside a segment ("/kubepods/pod*").
		if j := strings.LastIndexByte(p, '/'); j >= 0 {
			p = p[:j+1]
		}
	}
	p = path.Clean(p)
	if p == "." || p == "" {
		return "/"
	}
	return p
}

// Selection is a set of selectors; a cgroup is selected when any selects
// it. Nested selected cgroups belong to their topmost selected ancestor.
// A Selection is immutable and safe for concurrent use.
type Selection struct {
	sels []Selector
}

// ParseSelection parses selectors (see ParseSelector). Empty entries are
// ignored; an empty selection is an error.
func ParseSelection(specs []string) (*Selection, error) {
	if len(specs) > MaxSelectors {
		return nil, fmt.Errorf("%w: %d selectors exceed the limit of %d", ErrInvalidSelector, len(specs), MaxSelectors)
	}
	var sels []Selector
	for _, spec := range specs {
		if strings.TrimSpace(spec) == "" {
			continue
		}
		s, err := ParseSelector(spec)
		if err != nil {
			return nil, err
		}
		sels = append(sels, s)
	}
	if len(sels) == 0 {
		return nil, fmt.Errorf("%w: no selector given (use all, a glob, pod:UID or container:ID)", ErrInvalidSelector)
	}
	return &Selection{sels: sels}, nil
}

// Match reports whether the cgroup at path is selected (ignoring nesting).
func (s *Selection) Match(path string) bool {
	ref, isKube := ParseKube(path)
	for _, sel := range s.sels {
		if sel.Match(path, ref, isKube) {
			return true
		}
	}
	return false
}

// Strings returns the selectors in the form ParseSelector reads.
func (s *Selection) Strings() []string {
	out := make([]string, len(s.sels))
	for i, sel := range s.sels {
		out[i] = sel.String()
	}
	return out
}

// WatchRoots returns the minimal set of directories (relative to the
// cgroup2 mount) under which every selectable cgroup lives: the agent
// watches these subtrees for cgroups that appear and disappear.
func (s *Selection) WatchRoots() []string {
	var roots []string
	for _, sel := range s.sels {
		if r := sel.watchRoot(); r != "" {
			roots = append(roots, r)
		}
	}
	sort.Strings(roots)
	var out []string
	for _, r := range roots {
		if len(out) > 0 && isUnder(r, out[len(out)-1]) {
			continue
		}
		out = append(out, r)
	}
	return out
}

// Topmost returns the selected cgroups among paths, keeping only those
// with no selected ancestor, sorted. paths must be cgroup paths as
// ParseKube reads them.
func (s *Selection) Topmost(paths []string) []string {
	sorted := append([]string(nil), paths...)
	sort.Strings(sorted)
	var out []string
	for _, p := range sorted {
		if !s.Match(p) {
			continue
		}
		// Sorted order puts an ancestor before its descendants, but not
		// always right before ("/a", "/a-b", "/a/c"), so check them all
		// with a prefix walk.
		if hasAncestorIn(p, out) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// hasAncestorIn reports whether a proper ancestor of p is in set (sorted).
func hasAncestorIn(p string, set []string) bool {
	if p == "/" {
		return false
	}
	for q := parentOf(p); ; q = parentOf(q) {
		i := sort.SearchStrings(set, q)
		if i < len(set) && set[i] == q {
			return true
		}
		if q == "/" {
			return false
		}
	}
}

// parentOf returns the parent cgroup path ("/" for "/" and top-level ones).
func parentOf(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// isUnder reports whether p is dir or below it.
func isUnder(p, dir string) bool {
	if dir == "/" {
		return true
	}
	return p == dir || strings.HasPrefix(p, dir+"/")
}
