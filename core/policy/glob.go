package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"sync"
)

// MaxGlobBytes bounds the length of a glob pattern.
const MaxGlobBytes = 1024

// ErrBadGlob means a glob pattern is malformed.
var ErrBadGlob = errors.New("bad glob pattern")

// Glob is a compiled path pattern. It is safe for concurrent use.
//
// Syntax: `*` matches any run of characters except `/`; `?` matches one
// character except `/`; `[abc]`, `[a-z]`, `[!a-z]` (or `[^a-z]`) match one
// character of a class, never `/`; `\x` matches x literally; `**` as a whole
// path segment matches zero or more segments, so `/root/**` matches `/root`
// and everything under it and `/**/id_rsa` matches `id_rsa` in any
// directory. Matching is anchored at both ends and runs in linear time.
type Glob struct {
	pattern string
	re      *regexp.Regexp
	// literal is set when the pattern has no metacharacters: matching is a
	// string comparison.
	literal bool
	// prefix is the literal text before the first metacharacter: paths
	// without it are rejected without running the expression.
	prefix string
}

// CompileGlob compiles a glob pattern. Errors wrap ErrBadGlob.
func CompileGlob(pattern string) (*Glob, error) {
	if len(pattern) > MaxGlobBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds the limit of %d", ErrBadGlob, len(pattern), MaxGlobBytes)
	}
	if !strings.ContainsAny(pattern, `*?[\`) {
		return &Glob{pattern: pattern, literal: true}, nil
	}
	expr, err := globRegexp(pattern)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrBadGlob, pattern, err)
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrBadGlob, pattern, err)
	}
	prefix := pattern[:strings.IndexAny(pattern, `*?[\`)]
	if strings.HasSuffix(pattern, "/**") && len(prefix) == len(pattern)-2 {
		// A trailing /** also matches the directory itself.
		prefix = strings.TrimSuffix(prefix, "/")
	}
	return &Glob{pattern: pattern, re: re, prefix: prefix}, nil
}

// Match reports whether path matches the pattern.
func (g *Glob) Match(path string) bool {
	if g.literal {
		return path == g.pattern
	}
	if !strings.HasPrefix(path, g.prefix) {
		return false
	}
	return g.re.MatchString(path)
}

// String returns the pattern.
func (g *Glob) String() string { return g.pattern }

// globRegexp translates a glob into an anchored RE2 expression.
func globRegexp(pattern string) (string, error) {
	segs, err := splitSegments(pattern)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(`\A`)
	sepDone := false // the separator before the next segment was emitted
	for i, seg := range segs {
		if seg == "**" {
			last := i == len(segs)-1
			switch {
			case i == 0 && last:
				b.WriteString(`.*`)
			case i == 0:
				b.WriteString(`(?:.*/)?`)
				sepDone = true
			case last:
				b.WriteString(`(?:/.*)?`)
			default:
				b.WriteString(`/(?:.*/)?`)
				sepDone = true
			}
			continue
		}
		if i > 0 && !sepDone {
			b.WriteByte('/')
		}
		sepDone = false
		if err := translateSegment(&b, seg); err != nil {
			return "", err
		}
	}
	b.WriteString(`\z`)
	return b.String(), nil
}

// splitSegments splits pattern at unescaped slashes outside classes.
func splitSegments(p string) ([]string, error) {
	var segs []string
	start, inClass := 0, false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '\\':
			i++
			if i >= len(p) {
				return nil, errors.New("trailing backslash")
			}
		case c == '[' && !inClass:
			inClass = true
		case c == ']' && inClass:
			inClass = false
		case c == '/' && !inClass:
			segs = append(segs, p[start:i])
			start = i + 1
		}
	}
	if inClass {
		return nil, errors.New("unterminated character class")
	}
	return append(segs, p[start:]), nil
}

func translateSegment(b *strings.Builder, seg string) error {
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch c {
		case '*':
			if i+1 < len(seg) && seg[i+1] == '*' {
				return errors.New("** must be a whole path segment")
			}
			b.WriteString(`[^/]*`)
		case '?':
			b.WriteString(`[^/]`)
		case '\\':
			i++
			b.WriteString(regexp.QuoteMeta(seg[i : i+1]))
		case '[':
			end, err := translateClass(b, seg, i)
			if err != nil {
				return err
			}
			i = end
		default:
			b.WriteString(regexp.QuoteMeta(seg[i : i+1]))
		}
	}
	return nil
}

// translateClass writes the class starting at seg[start] == '[' and returns
// the index of its closing bracket.
func translateClass(b *strings.Builder, seg string, start int) (int, error) {
	i := start + 1
	negate := i < len(seg) && (seg[i] == '!' || seg[i] == '^')
	if negate {
		i++
	}
	var body strings.Builder
	n := 0
	for ; i < len(seg) && seg[i] != ']'; i++ {
		c := seg[i]
		if c == '\\' {
			i++
			c = seg[i]
		}
		if c == '/' {
			return 0, errors.New("a character class cannot match '/'")
		}
		if c == '-' && n > 0 && i+1 < len(seg) && seg[i+1] != ']' {
			body.WriteByte('-')
			continue
		}
		if c == '\\' || c == ']' || c == '[' || c == '^' || c == '-' {
			body.WriteByte('\\')
		}
		body.WriteByte(c)
		n++
	}
	if i >= len(seg) {
		return 0, errors.New("unterminated character class")
	}
	if n == 0 {
		return 0, errors.New("empty character class")
	}
	if negate {
		b.WriteString(`[^/` + body.String() + `]`)
	} else {
		b.WriteString(`[` + body.String() + `]`)
	}
	return i, nil
}

// globCache holds globs compiled at evaluation time for patterns that are
// not constants of a condition. It is bounded: beyond maxCachedGlobs
// patterns are compiled on every use.
var globCache sync.Map

const maxCachedGlobs = 1024

var globCacheSize struct {
	sync.Mutex
	n int
}

func cachedGlob(pattern string) (*Glob, error) {
	if g, ok := globCache.Load(pattern); ok {
		return g.(*Glob), nil
	}
	g, err := CompileGlob(pattern)
	if err != nil {
		return nil, err
	}
	globCacheSize.Lock()
	if globCacheSize.n < maxCachedGlobs {
		if _, loaded := globCache.LoadOrStore(pattern, g); !loaded {
			globCacheSize.n++
		}
	}
	globCacheSize.Unlock()
	return g, nil
}

// Under reports whether path is dir or lies inside it, comparing whole path
// segments: /work/a is under /work, /workshop is not. An empty dir contains
// nothing, so an unknown workspace never excuses a write.
func Under(path, dir string) bool {
	if dir == "" {
		return false
	}
	if dir != "/" {
		dir = strings.TrimSuffix(dir, "/")
	} else {
		return strings.HasPrefix(path, "/")
	}
	return strings.HasPrefix(path, dir) && (len(path) == len(dir) || path[len(dir)] == '/')
}

// InCIDR reports whether address is an IP address inside the CIDR range
// cidr. IPv4-mapped IPv6 addresses (::ffff:169.254.169.254) count as their
// IPv4 form and zones are ignored. It is false when either string does not
// parse, so it never fails.
func InCIDR(address, cidr string) bool {
	p, err := parseCIDR(cidr)
	if err != nil {
		return false
	}
	return prefixContains(p, address)
}

func parseCIDR(cidr string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return netip.Prefix{}, err
	}
	return p.Masked(), nil
}

func prefixContains(p netip.Prefix, address string) bool {
	if !mayBeIP(address) {
		return false
	}
	a, err := netip.ParseAddr(address)
	if err != nil {
		return false
	}
	return p.Contains(a.WithZone("").Unmap())
}
