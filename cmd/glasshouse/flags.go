package main

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// sizeFlag is a byte count written as a number with an optional binary or
// decimal unit: 4096, 256MiB, 1G, 512k.
type sizeFlag struct{ n int64 }

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"B", 1},
}

func (s *sizeFlag) String() string { return strconv.FormatInt(s.n, 10) }

func (s *sizeFlag) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	s.n = n
	return nil
}

func parseSize(v string) (int64, error) {
	num, mult := v, int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(v, u.suffix) {
			num, mult = strings.TrimSuffix(v, u.suffix), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%q is not a size (want e.g. 4096, 256MiB, 1G)", v)
	}
	if f < 0 {
		return 0, fmt.Errorf("%q is negative", v)
	}
	b := f * float64(mult)
	if b > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is too large", v)
	}
	return int64(b), nil
}

// envFlag collects --env K=V (set) and --env K (copy K from the host).
type envFlag struct{ env map[string]string }

func (e *envFlag) String() string { return "" }

func (e *envFlag) Set(v string) error {
	if e.env == nil {
		e.env = map[string]string{}
	}
	k, val, ok := strings.Cut(v, "=")
	if k == "" {
		return fmt.Errorf("%q: want NAME=VALUE or NAME", v)
	}
	if !ok {
		hv, present := os.LookupEnv(k)
		if !present {
			return fmt.Errorf("%q is not set in the host environment", k)
		}
		val = hv
	}
	e.env[k] = val
	return nil
}

// listFlag collects repeated string flags.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// optionalFlag is a flag that may be given bare (--profile) or with a value
// (--profile=required); bare means def.
type optionalFlag struct {
	set   bool
	value string
	def   string
}

func (o *optionalFlag) String() string { return o.value }

func (o *optionalFlag) Set(v string) error {
	o.set = true
	if v == "true" {
		v = o.def
	}
	o.value = v
	return nil
}

// IsBoolFlag lets the flag package accept the bare form.
func (o *optionalFlag) IsBoolFlag() bool { return true }
