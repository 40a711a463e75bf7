// Package k8s holds the Kubernetes manifests of Glasshouse and the tests
// that decode them, strictly, into k8s.io/api types and check the fields
// the agent and the server depend on. No cluster is needed.
package k8s

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"glasshouse.dev/glasshouse/agent"
	"glasshouse.dev/glasshouse/core/policy"
)

// objects are the decoded manifests, by kind and name.
type objects struct {
	daemonSets map[string]*appsv1.DaemonSet
	services   map[string]*corev1.Service
	configMaps map[string]*corev1.ConfigMap
	accounts   map[string]*corev1.ServiceAccount
	roles      map[string]*rbacv1.Role
	bindings   map[string]*rbacv1.RoleBinding
	namespaces map[string]*corev1.Namespace
}

// load decodes every document of every .yaml file here. Unknown fields are
// errors (UnmarshalStrict), so a misspelt field fails the test instead of
// being dropped by the API server.
func load(t *testing.T) *objects {
	t.Helper()
	o := &objects{
		daemonSets: map[string]*appsv1.DaemonSet{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, accounts: map[string]*corev1.ServiceAccount{},
		roles: map[string]*rbacv1.Role{}, bindings: map[string]*rbacv1.RoleBinding{},
		namespaces: map[string]*corev1.Namespace{},
	}
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(raw, []byte("\n---\n")) {
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			var meta struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s doc %d: %v", f, i, err)
			}
			var obj any
			switch meta.APIVersion + " " + meta.Kind {
			case "apps/v1 DaemonSet":
				obj = &appsv1.DaemonSet{}
			case "v1 Service":
				obj = &corev1.Service{}
			case "v1 ConfigMap":
				obj = &corev1.ConfigMap{}
			case "v1 ServiceAccount":
				obj = &corev1.ServiceAccount{}
			case "v1 Namespace":
				obj = &corev1.Namespace{}
			case "rbac.authorization.k8s.io/v1 Role":
				obj = &rbacv1.Role{}
			case "rbac.authorization.k8s.io/v1 RoleBinding":
				obj = &rbacv1.RoleBinding{}
			default:
				t.Fatalf("%s doc %d: unexpected %s %s", f, i, meta.APIVersion, meta.Kind)
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Fatalf("%s doc %d (%s): %v", f, i, meta.Kind, err)
			}
			switch v := obj.(type) {
			case *appsv1.DaemonSet:
				o.daemonSets[v.Name] = v
			case *corev1.Service:
				o.services[v.Name] = v
			case *corev1.ConfigMap:
				o.configMaps[v.Name] = v
			case *corev1.ServiceAccount:
				o.accounts[v.Name] = v
			case *corev1.Namespace:
				o.namespaces[v.Name] = v
			case *rbacv1.Role:
				o.roles[v.Name] = v
			case *rbacv1.RoleBinding:
				o.bindings[v.Name] = v
			}
		}
	}
	return o
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %q", name)
	return corev1.Container{}
}

func mountOf(c corev1.Container, path string) (corev1.VolumeMount, bool) {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path {
			return m, true
		}
	}
	return corev1.VolumeMount{}, false
}

func volume(spec corev1.PodSpec, name string) (corev1.Volume, bool) {
	for _, v := range spec.Volumes {
		if v.Name == name {
			return v, true
		}
	}
	return corev1.Volume{}, false
}

// flagValue returns the value of --name=value in args.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

func TestAgentDaemonSet(t *testing.T) {
	o := load(t)
	ds := o.daemonSets["glasshouse-agent"]
	if ds == nil {
		t.Fatal("no glasshouse-agent DaemonSet")
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostPID {
		t.Error("hostPID must be true: running containers are described from the host's /proc")
	}
	if spec.HostNetwork {
		t.Error("hostNetwork is not needed")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("the agent does not call the API: no service account token")
	}
	if len(spec.Tolerations) == 0 || spec.Tolerations[0].Operator != corev1.TolerationOpExists {
		t.Error("the agent must run on every node, tainted ones included")
	}
	sel := ds.Spec.Selector.MatchLabels
	for k, v := range sel {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the template labels", k, v)
		}
	}
	c := container(t, spec, "agent")
	sc := c.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged {
		t.Fatal("the agent must not be privileged: it uses named capabilities")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation must be false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem must be true")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Fatal("capabilities must drop ALL")
	}
	want := []corev1.Capability{"BPF", "PERFMON", "NET_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH"}
	got := slices.Clone(sc.Capabilities.Add)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("capabilities added %v, want exactly %v", got, want)
	}
	if spec.SecurityContext == nil || spec.SecurityContext.SeccompProfile == nil || spec.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("seccomp profile must be RuntimeDefault")
	}

	// The mounts the collector and the discovery need.
	root, ok := flagValue(c.Args, "cgroup-root")
	if !ok {
		t.Fatal("--cgroup-root not set")
	}
	m, ok := mountOf(c, root)
	if !ok || !m.ReadOnly {
		t.Fatalf("--cgroup-root %s is not a read-only mount", root)
	}
	if v, ok := volume(spec, m.Name); !ok || v.HostPath == nil || v.HostPath.Path != "/sys/fs/cgroup" {
		t.Errorf("cgroup mount is not the host's /sys/fs/cgroup: %+v", v)
	}
	for path, host := range map[string]string{"/sys/fs/bpf": "/sys/fs/bpf", "/sys/kernel/tracing": "/sys/kernel/tracing"} {
		m, ok := mountOf(c, path)
		if !ok || !m.ReadOnly {
			t.Errorf("%s not mounted read-only", path)
			continue
		}
		if v, ok := volume(spec, m.Name); !ok || v.HostPath == nil || v.HostPath.Path != host {
			t.Errorf("%s is not the host's %s", path, host)
		}
	}

	// The config the agent reads parses, and names policies that load.
	cfgPath, ok := flagValue(c.Args, "config")
	if !ok {
		t.Fatal("--config not set")
	}
	cm, ok := mountOf(c, filepath.Dir(cfgPath))
	if !ok {
		t.Fatalf("--config %s is not mounted", cfgPath)
	}
	v, _ := volume(spec, cm.Name)
	if v.ConfigMap == nil {
		t.Fatalf("config volume %q is not a ConfigMap", cm.Name)
	}
	data := o.configMaps[v.ConfigMap.Name].Data[filepath.Base(cfgPath)]
	fc, err := agent.ParseFileConfig(cfgPath, []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := agent.ParseSelection(fc.Select); err != nil {
		t.Fatal(err)
	}
	checkPolicyRef(t, o, spec, c, fc.Policy)
	if _, ok := flagValue(c.Args, "config-poll"); !ok {
		t.Error("--config-poll not set: ConfigMap updates would need a SIGHUP no one can send")
	}

	// Health probes and metrics use the port the agent listens on.
	listen, _ := flagValue(c.Args, "listen")
	if !strings.HasSuffix(listen, ":9464") || len(c.Ports) == 0 || c.Ports[0].ContainerPort != 9464 {
		t.Errorf("listen %q / ports %+v disagree", listen, c.Ports)
	}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/health" || p.HTTPGet.Port.String() != "metrics" {
			t.Errorf("probe %+v", p)
		}
	}
	if c.Resources.Limits.Memory().IsZero() {
		t.Error("no memory limit")
	}
}

// checkPolicyRef loads every policy the agent's config names: packs by
// name, files from the policies ConfigMap where they are mounted.
func checkPolicyRef(t *testing.T, o *objects, spec corev1.PodSpec, c corev1.Container, ref string) {
	t.Helper()
	dir := t.TempDir()
	var parts []string
	for _, item := range strings.Split(ref, ",") {
		item = strings.TrimSpace(item)
		if !strings.Contains(item, "/") {
			parts = append(parts, item)
			continue
		}
		m, ok := mountOf(c, filepath.Dir(item))
		if !ok {
			t.Fatalf("policy file %s is not mounted", item)
		}
		v, _ := volume(spec, m.Name)
		if v.ConfigMap == nil || o.configMaps[v.ConfigMap.Name] == nil {
			t.Fatalf("policy volume %s is not a known ConfigMap", m.Name)
		}
		src, ok := o.configMaps[v.ConfigMap.Name].Data[filepath.Base(item)]
		if !ok {
			t.Fatalf("ConfigMap %s has no %s", v.ConfigMap.Name, filepath.Base(item))
		}
		local := filepath.Join(dir, filepath.Base(item))
		if err := os.WriteFile(local, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		parts = append(parts, local)
	}
	if _, err := policy.Load(strings.Join(parts, ",")); err != nil {
		t.Fatalf("policy %q: %v", ref, err)
	}
}

func TestServerDaemonSet(t *testing.T) {
	o := load(t)
	ds := o.daemonSets["glasshouse-server"]
	if ds == nil {
		t.Fatal("no glasshouse-server DaemonSet")
	}
	spec := ds.Spec.Template.Spec
	if spec.NodeSelector["glasshouse.dev/kvm"] != "true" {
		t.Errorf("server must run on KVM-labelled nodes: %v", spec.NodeSelector)
	}
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Error("server must run as non-root")
	}
	c := container(t, spec, "server")
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || *c.SecurityContext.Privileged {
		t.Error("server must not be privileged")
	}
	kvm := corev1.ResourceName("devices.kubevirt.io/kvm")
	if q := c.Resources.Limits[kvm]; q.Value() != 1 {
		t.Errorf("server must request /dev/kvm through the device plugin resource %s", kvm)
	}
	data, _ := flagValue(c.Args, "data-dir")
	if m, ok := mountOf(c, data); !ok || m.ReadOnly {
		t.Errorf("--data-dir %s is not a writable mount", data)
	}
	tokens, _ := flagValue(c.Args, "tokens")
	if _, ok := mountOf(c, filepath.Dir(tokens)); !ok {
		t.Errorf("--tokens %s is not mounted (required off loopback)", tokens)
	}
	if len(spec.InitContainers) != 1 {
		t.Fatal("the data-owner init container is missing")
	}
	if m, ok := mountOf(spec.InitContainers[0], data); !ok || m.Name != "data" {
		t.Error("the init container does not fix the data directory's owner")
	}

	svc := o.services["glasshouse-server"]
	if svc == nil {
		t.Fatal("no glasshouse-server Service")
	}
	for k, v := range svc.Spec.Selector {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("Service selector %s=%s matches no server pod", k, v)
		}
	}
	if svc.Spec.Ports[0].TargetPort.String() != c.Ports[0].Name {
		t.Errorf("Service targets %s, the container port is %s", svc.Spec.Ports[0].TargetPort.String(), c.Ports[0].Name)
	}
	if svc.Spec.SessionAffinity != corev1.ServiceAffinityClientIP {
		t.Error("receipts live in node-local stores: the Service needs ClientIP affinity")
	}
}

func TestRBACAndNamespace(t *testing.T) {
	o := load(t)
	for _, name := range []string{"glasshouse-agent", "glasshouse-server"} {
		sa := o.accounts[name]
		if sa == nil {
			t.Fatalf("no ServiceAccount %s", name)
		}
		if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
			t.Errorf("ServiceAccount %s mounts a token it does not use", name)
		}
	}
	for _, ds := range o.daemonSets {
		if o.accounts[ds.Spec.Template.Spec.ServiceAccountName] == nil {
			t.Errorf("%s uses an undefined ServiceAccount", ds.Name)
		}
		if o.namespaces[ds.Namespace] == nil {
			t.Errorf("%s is in undefined namespace %q", ds.Name, ds.Namespace)
		}
	}
	role := o.roles["glasshouse-policy-editor"]
	if role == nil {
		t.Fatal("no policy editor role")
	}
	for _, r := range role.Rules {
		if len(r.ResourceNames) == 0 {
			t.Errorf("rule %+v is not limited to named resources", r)
		}
		for _, n := range r.ResourceNames {
			if o.configMaps[n] == nil {
				t.Errorf("role names unknown ConfigMap %s", n)
			}
		}
		if slices.Contains(r.Verbs, "*") || slices.Contains(r.Verbs, "delete") {
			t.Errorf("rule grants %v", r.Verbs)
		}
	}
	b := o.bindings["glasshouse-policy-editor"]
	if b == nil || b.RoleRef.Name != role.Name || b.RoleRef.Kind != "Role" {
		t.Errorf("role binding %+v", b)
	}
}
