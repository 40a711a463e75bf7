// Package docker holds the Dockerfile and compose file of Glasshouse and
// the tests that check them without a Docker engine: the Dockerfile's
// stages and users, its build command run as written (and the binaries it
// makes checked to be static), and the compose file decoded and checked for
// the capabilities and mounts the agent needs.
package docker

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"glasshouse.dev/glasshouse/agent"
)

// instruction is one Dockerfile instruction with continuations joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
}

func parseDockerfile(t *testing.T) []instruction {
	t.Helper()
	raw, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out []instruction
	var cur strings.Builder
	for _, line := range strings.Split(string(raw), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, `\`) {
			cur.WriteString(strings.TrimSuffix(trimmed, `\`) + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	return out
}

// stages groups instructions by build stage name.
func stages(ins []instruction) (map[string][]instruction, map[string]string) {
	byStage := map[string][]instruction{}
	base := map[string]string{}
	name := ""
	for _, in := range ins {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			name = f[len(f)-1]
			base[name] = f[0]
		}
		byStage[name] = append(byStage[name], in)
	}
	return byStage, base
}

func last(ins []instruction, cmd string) string {
	v := ""
	for _, in := range ins {
		if in.cmd == cmd {
			v = in.args
		}
	}
	return v
}

func TestDockerfileStages(t *testing.T) {
	byStage, base := stages(parseDockerfile(t))
	for _, s := range []string{"build", "agent", "server"} {
		if _, ok := byStage[s]; !ok {
			t.Fatalf("no %q stage (multi-stage build)", s)
		}
	}
	if !strings.HasPrefix(base["build"], "golang:1.26") {
		t.Errorf("build stage uses %s, want golang:1.26 (go.mod's toolchain)", base["build"])
	}
	if base["agent"] != "scratch" {
		t.Errorf("agent image is based on %s: the static binary needs nothing, use scratch", base["agent"])
	}
	if u := last(byStage["server"], "USER"); u == "" || strings.HasPrefix(u, "0") || strings.HasPrefix(u, "root") {
		t.Errorf("server runs as %q, want a non-root user", u)
	}
	for _, s := range []string{"agent", "server"} {
		copied := false
		for _, in := range byStage[s] {
			copied = copied || in.cmd == "COPY" && strings.Contains(in.args, "--from=build")
		}
		if !copied {
			t.Errorf("%s stage does not copy its binary from the build stage", s)
		}
	}
	// The agent's default command reads the host's cgroup tree where the
	// compose file and the DaemonSet mount it.
	if cmd := last(byStage["agent"], "CMD"); !strings.Contains(cmd, `"/host/sys/fs/cgroup"`) {
		t.Errorf("agent CMD %s does not point --cgroup-root at /host/sys/fs/cgroup", cmd)
	}
}

// TestDockerfileBuildsStaticBinaries runs the build stage's go build
// command exactly as written (outside Docker) and checks that both
// binaries are static: no ELF interpreter, no shared libraries.
func TestDockerfileBuildsStaticBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	byStage, _ := stages(parseDockerfile(t))
	var build string
	for _, in := range byStage["build"] {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			build = in.args
		}
	}
	if !strings.Contains(build, "CGO_ENABLED=0") || !strings.Contains(build, "-trimpath") {
		t.Fatalf("build command %q: want CGO_ENABLED=0 and -trimpath", build)
	}
	out := t.TempDir()
	cmdline := strings.ReplaceAll(build, "/out/", out+"/")
	cmd := exec.Command("sh", "-c", cmdline)
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), "VERSION=docker-test")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmdline, err, b)
	}
	for _, bin := range []string{"glasshouse-agent", "glasshouse-server"} {
		path := filepath.Join(out, bin)
		f, err := elf.Open(path)
		if err != nil {
			t.Fatalf("%s: %v", bin, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s has an ELF interpreter: not static", bin)
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("%s needs shared libraries %v", bin, libs)
		}
		f.Close()
	}
	v, err := exec.Command(filepath.Join(out, "glasshouse-agent"), "--version").Output()
	if err != nil || !strings.Contains(string(v), "docker-test") {
		t.Errorf("agent --version = %q, %v: the VERSION build argument was not stamped", v, err)
	}
}

// compose is the part of the compose file the test checks.
type compose struct {
	Services map[string]struct {
		Image       string   `json:"image"`
		User        string   `json:"user"`
		Pid         string   `json:"pid"`
		Cgroup      string   `json:"cgroup"`
		Privileged  bool     `json:"privileged"`
		CapDrop     []string `json:"cap_drop"`
		CapAdd      []string `json:"cap_add"`
		Devices     []string `json:"devices"`
		SecurityOpt []string `json:"security_opt"`
		ReadOnly    bool     `json:"read_only"`
		Command     []string `json:"command"`
		Volumes     []string `json:"volumes"`
	} `json:"services"`
}

func TestCompose(t *testing.T) {
	raw, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	a, ok := c.Services["agent"]
	if !ok {
		t.Fatal("no agent service")
	}
	if a.Privileged {
		t.Error("the agent must not be privileged")
	}
	if a.Pid != "host" || a.Cgroup != "host" {
		t.Errorf("agent pid %q cgroup %q, want host and host", a.Pid, a.Cgroup)
	}
	if !slices.Equal(a.CapDrop, []string{"ALL"}) {
		t.Errorf("agent cap_drop %v", a.CapDrop)
	}
	caps := slices.Clone(a.CapAdd)
	slices.Sort(caps)
	if want := []string{"BPF", "DAC_READ_SEARCH", "NET_ADMIN", "PERFMON", "SYS_PTRACE"}; !slices.Equal(caps, want) {
		t.Errorf("agent cap_add %v, want %v", caps, want)
	}
	if !slices.Contains(a.SecurityOpt, "no-new-privileges:true") || !a.ReadOnly {
		t.Error("agent lacks no-new-privileges or a read-only root")
	}
	if !slices.Contains(a.Volumes, "/sys/fs/cgroup:/host/sys/fs/cgroup:ro") || !slices.Contains(a.Command, "--cgroup-root=/host/sys/fs/cgroup") {
		t.Errorf("agent does not read the host's cgroup tree: %v %v", a.Volumes, a.Command)
	}
	// The config it mounts parses.
	for _, v := range a.Volumes {
		if src, dst, ok := strings.Cut(v, ":"); ok && strings.HasPrefix(dst, "/etc/glasshouse/agent.yaml") {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			fc, err := agent.ParseFileConfig(src, b)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := agent.ParseSelection(fc.Select); err != nil {
				t.Fatal(err)
			}
		}
	}
	s, ok := c.Services["server"]
	if !ok {
		t.Fatal("no server service")
	}
	if s.User == "" || strings.HasPrefix(s.User, "0") || s.Privileged {
		t.Errorf("server user %q privileged %v: want non-root, unprivileged", s.User, s.Privileged)
	}
	if !slices.Contains(s.Devices, "/dev/kvm:/dev/kvm") || !slices.Equal(s.CapDrop, []string{"ALL"}) {
		t.Errorf("server devices %v cap_drop %v", s.Devices, s.CapDrop)
	}
}
