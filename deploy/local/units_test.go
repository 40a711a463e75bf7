// Package local holds the systemd units and the example agent
// configuration of a single-host Glasshouse install, and the tests that
// check them: systemd-analyze verify on the units with the binaries built,
// and the hardening settings the README promises.
package local

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"glasshouse.dev/glasshouse/agent"
	"glasshouse.dev/glasshouse/internal/testenv"
)

// unitValues returns every value of key in the unit file.
func unitValues(t *testing.T, path, key string) []string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == key {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

func one(t *testing.T, path, key string) string {
	t.Helper()
	v := unitValues(t, path, key)
	if len(v) != 1 {
		t.Fatalf("%s: %d values of %s, want 1", path, len(v), key)
	}
	return v[0]
}

func TestAgentUnitHardening(t *testing.T) {
	const u = "glasshouse-agent.service"
	caps := strings.Fields(one(t, u, "CapabilityBoundingSet"))
	slices.Sort(caps)
	want := []string{"CAP_BPF", "CAP_DAC_READ_SEARCH", "CAP_NET_ADMIN", "CAP_PERFMON", "CAP_SYS_PTRACE"}
	if !slices.Equal(caps, want) {
		t.Errorf("agent capabilities %v, want %v", caps, want)
	}
	amb := strings.Fields(one(t, u, "AmbientCapabilities"))
	slices.Sort(amb)
	if !slices.Equal(amb, want) {
		t.Errorf("ambient capabilities %v, want %v", amb, want)
	}
	for key, val := range map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "PrivateDevices": "yes",
		"ProtectKernelModules": "yes", "ProtectKernelTunables": "yes", "ProtectControlGroups": "yes",
		"RestrictSUIDSGID": "yes", "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native",
		"ExecReload": "/bin/kill -HUP $MAINPID", "KillSignal": "SIGTERM",
	} {
		if got := one(t, u, key); got != val {
			t.Errorf("%s=%s, want %s", key, got, val)
		}
	}
	if f := one(t, u, "SystemCallFilter"); !strings.Contains(f, "bpf") {
		t.Errorf("SystemCallFilter %q does not allow bpf()", f)
	}
}

func TestServerUnitHardening(t *testing.T) {
	const u = "glasshouse-server.service"
	for key, val := range map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "DevicePolicy": "closed",
		"DeviceAllow": "/dev/kvm rw", "ProtectKernelModules": "yes", "SystemCallArchitectures": "native",
	} {
		if got := one(t, u, key); got != val {
			t.Errorf("%s=%s, want %s", key, got, val)
		}
	}
	if caps := one(t, u, "CapabilityBoundingSet"); strings.Contains(caps, "CAP_SYS_MODULE") || strings.Contains(caps, "CAP_SYS_RAWIO") {
		t.Errorf("server keeps %s", caps)
	}
}

func TestAgentConfigExample(t *testing.T) {
	fc, err := agent.ReadFileConfig("agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := agent.ParseSelection(fc.Select); err != nil {
		t.Fatal(err)
	}
	if fc.Policy == "" {
		t.Error("the example evaluates no policy")
	}
}

// TestUnitsVerify runs systemd-analyze verify on both units, with their
// ExecStart pointing at binaries built from this tree.
func TestUnitsVerify(t *testing.T) {
	sa := testenv.RequireBinary(t, "systemd-analyze")
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+"/", "glasshouse.dev/glasshouse/cmd/glasshouse-agent", "glasshouse.dev/glasshouse/cmd/glasshouse-server")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, b)
	}
	for _, u := range []string{"glasshouse-agent.service", "glasshouse-server.service"} {
		raw, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		unit := strings.ReplaceAll(string(raw), "/usr/local/bin/", dir+"/")
		path := filepath.Join(dir, u)
		if err := os.WriteFile(path, []byte(unit), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(sa, "verify", path).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", u, err, out)
		}
	}
}
