package agent

import (
	"errors"
	"strings"
	"testing"
)

const sampleStat = "4242 (py thon) (x)) S 17 4242 4242 0 -1 4194560 1234 0 0 0 10 5 0 0 20 0 1 0 987654 12345678 900 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"

func TestParseProcStat(t *testing.T) {
	st, err := parseProcStat([]byte(sampleStat))
	if err != nil {
		t.Fatal(err)
	}
	if st.PPID != 17 || st.StartTicks != 987654 {
		t.Fatalf("%+v", st)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 2", "1 (x) S -3 " + strings.Repeat("0 ", 30), "1 (x) S 2 " + strings.Repeat("z ", 30)} {
		if _, err := parseProcStat([]byte(bad)); !errors.Is(err, errParse) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestParseStatusAndCmdline(t *testing.T) {
	uid, err := parseStatusUID([]byte("Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t5\n"))
	if err != nil || uid != 1000 {
		t.Fatalf("%d %v", uid, err)
	}
	if _, err := parseStatusUID([]byte("Name: x\n")); !errors.Is(err, errParse) {
		t.Fatal(err)
	}
	if got := splitCmdline([]byte("python3\x00-c\x00print(1)\x00"), 2); strings.Join(got, "|") != "python3|-c" {
		t.Fatalf("%q", got)
	}
	if got := splitCmdline(nil, 5); got != nil {
		t.Fatalf("%q", got)
	}
}

func TestParseKeyedAndProcs(t *testing.T) {
	m, err := parseKeyed([]byte("populated 1\nfrozen 0\n"))
	if err != nil || m["populated"] != 1 || m["frozen"] != 0 {
		t.Fatalf("%v %v", m, err)
	}
	if _, err := parseKeyed([]byte("populated\n")); !errors.Is(err, errParse) {
		t.Fatal(err)
	}
	pids, err := parseProcs([]byte("1\n22\n333\n"), 2)
	if err != nil || len(pids) != 2 || pids[1] != 22 {
		t.Fatalf("%v %v", pids, err)
	}
	if _, err := parseProcs([]byte("1\nx\n"), 5); !errors.Is(err, errParse) {
		t.Fatal(err)
	}
}

// FuzzParseProcStat: /proc/PID/stat carries a command name the process
// chose, so the parser must hold against any bytes.
func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte(sampleStat))
	f.Add([]byte("1 ((((((( R 0 " + strings.Repeat("9 ", 25)))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseProcStat(b)
		if err == nil && st.PPID < 0 {
			t.Fatalf("negative ppid %d", st.PPID)
		}
	})
}

// FuzzParseKernelFiles covers the other kernel-file parsers.
func FuzzParseKernelFiles(f *testing.F) {
	f.Add([]byte("populated 1\nfrozen 0\n"))
	f.Add([]byte("usage_usec 10\nuser_usec 5\nsystem_usec 5\n"))
	f.Add([]byte("Uid:\t0\t0\t0\t0\n"))
	f.Add([]byte("12\n13\n"))
	f.Add([]byte("a\x00b\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseKeyed(b)
		if uid, err := parseStatusUID(b); err == nil && uid < 0 {
			t.Fatalf("negative uid %d", uid)
		}
		if pids, err := parseProcs(b, 4); err == nil {
			if len(pids) > 4 {
				t.Fatalf("%d pids past the cap", len(pids))
			}
			for _, p := range pids {
				if p <= 0 {
					t.Fatalf("pid %d", p)
				}
			}
		}
		if args := splitCmdline(b, 3); len(args) > 3 {
			t.Fatalf("%d args past the cap", len(args))
		}
	})
}

func TestParseFileConfig(t *testing.T) {
	fc, err := ParseFileConfig("a.yaml", []byte("select:\n  - container:*\n  - /ci/**\npolicy: no-network\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(fc.Select) != 2 || fc.Policy != "no-network" {
		t.Fatalf("%+v", fc)
	}
	for _, bad := range []string{
		"selects: [all]\n",         // unknown key
		"select: [\"pod:nope\"]\n", // bad selector
		"select: all\n",            // not a list
		"select: [all]\nselect: [all]\n",
		"policy: [x]\n",
		strings.Repeat("#", MaxConfigFileBytes+1),
	} {
		if _, err := ParseFileConfig("b.yaml", []byte(bad)); !errors.Is(err, ErrInvalidConfigFile) {
			t.Errorf("%.40q: %v", bad, err)
		}
	}
	if fc, err := ParseFileConfig("empty", nil); err != nil || len(fc.Select) != 0 {
		t.Fatalf("empty file: %+v %v", fc, err)
	}
}

// FuzzParseFileConfig: the config file is operator input.
func FuzzParseFileConfig(f *testing.F) {
	f.Add([]byte("select:\n  - container:*\npolicy: no-network\n"))
	f.Add([]byte("select: [all, \"/a/**\"]\n"))
	f.Add([]byte("{select: [1, 2], policy: {a: b}}"))
	f.Add([]byte("&a [*a]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fc, err := ParseFileConfig("fuzz", b)
		if err != nil {
			if !errors.Is(err, ErrInvalidConfigFile) {
				t.Fatalf("error %v does not wrap ErrInvalidConfigFile", err)
			}
			return
		}
		if len(fc.Select) > 0 {
			if _, err := ParseSelection(fc.Select); err != nil {
				t.Fatalf("accepted selection does not parse: %v", err)
			}
		}
	})
}
