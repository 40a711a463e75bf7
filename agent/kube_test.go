package agent

import (
	"errors"
	"strings"
	"testing"
)

const (
	testUID  = "0b1f8e6c-4f2a-4d8e-9d1c-2a7d1f0e9b3a"
	testUID_ = "0b1f8e6c_4f2a_4d8e_9d1c_2a7d1f0e9b3a"
	testCID  = "4c01db0b339c13a9e3e0b1f5d3f5e2b9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d3"
	testHash = "6d7d0c1a5b3e4f2a9c8b7a6d5e4f3c2b"
)

func TestParseKube(t *testing.T) {
	tests := []struct {
		name string
		path string
		want KubeRef
		ok   bool
	}{
		{"cgroupfs guaranteed pod", "/kubepods/pod" + testUID,
			KubeRef{PodUID: testUID, QoS: QoSGuaranteed, Level: LevelPod}, true},
		{"cgroupfs burstable container", "/kubepods/burstable/pod" + testUID + "/" + testCID,
			KubeRef{PodUID: testUID, QoS: QoSBurstable, Level: LevelContainer, ContainerID: testCID}, true},
		{"cgroupfs besteffort crio", "/kubepods/besteffort/pod" + testUID + "/crio-" + testCID,
			KubeRef{PodUID: testUID, QoS: QoSBestEffort, Level: LevelContainer, ContainerID: testCID, Runtime: "crio"}, true},
		{"cgroupfs static pod hash", "/kubepods/burstable/pod" + testHash,
			KubeRef{PodUID: testHash, QoS: QoSBurstable, Level: LevelPod}, true},
		{"cgroupfs nested in container", "/kubepods/pod" + testUID + "/" + testCID + "/inner",
			KubeRef{PodUID: testUID, QoS: QoSGuaranteed, Level: LevelOther, ContainerID: testCID}, true},
		{"cgroupfs unknown child", "/kubepods/pod" + testUID + "/not-a-container",
			KubeRef{PodUID: testUID, QoS: QoSGuaranteed, Level: LevelOther}, true},
		{"systemd guaranteed pod", "/kubepods.slice/kubepods-pod" + testUID_ + ".slice",
			KubeRef{PodUID: testUID, QoS: QoSGuaranteed, Level: LevelPod}, true},
		{"systemd burstable containerd", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + testUID_ + ".slice/cri-containerd-" + testCID + ".scope",
			KubeRef{PodUID: testUID, QoS: QoSBurstable, Level: LevelContainer, ContainerID: testCID, Runtime: "containerd"}, true},
		{"systemd besteffort docker", "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + testUID_ + ".slice/docker-" + testCID + ".scope",
			KubeRef{PodUID: testUID, QoS: QoSBestEffort, Level: LevelContainer, ContainerID: testCID, Runtime: "docker"}, true},
		{"systemd crio", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + testUID_ + ".slice/crio-" + testCID + ".scope",
			KubeRef{PodUID: testUID, QoS: QoSBurstable, Level: LevelContainer, ContainerID: testCID, Runtime: "crio"}, true},
		{"systemd crio conmon", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + testUID_ + ".slice/crio-conmon-" + testCID + ".scope",
			KubeRef{PodUID: testUID, QoS: QoSBurstable, Level: LevelOther}, true},
		{"kind cgroup root", "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod" + testUID_ + ".slice/cri-containerd-" + testCID + ".scope",
			KubeRef{PodUID: testUID, QoS: QoSBurstable, Level: LevelContainer, ContainerID: testCID, Runtime: "containerd"}, true},
		{"upper-case uid", "/kubepods/pod" + strings.ToUpper(testUID),
			KubeRef{PodUID: testUID, QoS: QoSGuaranteed, Level: LevelPod}, true},
		{"qos slice only", "/kubepods.slice/kubepods-burstable.slice", KubeRef{}, false},
		{"kubepods root", "/kubepods", KubeRef{}, false},
		{"pod without kubepods", "/pod" + testUID, KubeRef{}, false},
		{"pod under other parent", "/system.slice/pod" + testUID, KubeRef{}, false},
		{"short uid", "/kubepods/pod1234", KubeRef{}, false},
		{"bad uid dashes", "/kubepods/pod0b1f8e6c4-f2a-4d8e-9d1c-2a7d1f0e9b3a", KubeRef{}, false},
		{"systemd not kubepods", "/system.slice/foo-pod" + testUID_ + ".slice", KubeRef{}, false},
		{"short container id", "/kubepods/pod" + testUID + "/cri-containerd-abc.scope",
			KubeRef{PodUID: testUID, QoS: QoSGuaranteed, Level: LevelOther}, true},
		{"root", "/", KubeRef{}, false},
		{"empty", "", KubeRef{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseKube(tt.path)
			if ok != tt.ok || got != tt.want {
				t.Fatalf("ParseKube(%q) = %+v, %v; want %+v, %v", tt.path, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParseKubeTooLong(t *testing.T) {
	p := "/kubepods/pod" + testUID + "/" + strings.Repeat("x", MaxCgroupPath)
	if _, ok := ParseKube(p); ok {
		t.Fatal("a path over MaxCgroupPath was accepted")
	}
}

// FuzzParseKube checks that the parser never panics and that what it
// returns is well formed: canonical ids, a known QoS and level.
func FuzzParseKube(f *testing.F) {
	for _, s := range []string{
		"/kubepods/burstable/pod" + testUID + "/" + testCID,
		"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + testUID_ + ".slice/cri-containerd-" + testCID + ".scope",
		"/kubepods.slice/kubepods-pod" + testUID_ + ".slice/docker-" + testCID + ".scope",
		"/kubepods/besteffort/pod" + testHash + "/crio-" + testCID,
		"/kubepods-pod.slice", "/kubepods/pod/", "//kubepods//pod" + testUID, "/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		ref, ok := ParseKube(path)
		if !ok {
			if ref != (KubeRef{}) {
				t.Fatalf("not ok but ref %+v", ref)
			}
			return
		}
		if _, valid := canonicalUID(ref.PodUID); !valid || strings.ToLower(ref.PodUID) != ref.PodUID {
			t.Fatalf("pod uid %q is not canonical", ref.PodUID)
		}
		switch ref.QoS {
		case QoSGuaranteed, QoSBurstable, QoSBestEffort:
		default:
			t.Fatalf("qos %q", ref.QoS)
		}
		switch ref.Level {
		case LevelPod:
			if ref.ContainerID != "" {
				t.Fatalf("pod level with container id %q", ref.ContainerID)
			}
		case LevelContainer:
			if !isHex(ref.ContainerID, 64) {
				t.Fatalf("container id %q", ref.ContainerID)
			}
		case LevelOther:
		default:
			t.Fatalf("level %q", ref.Level)
		}
		if !strings.Contains(path, strings.ReplaceAll(ref.PodUID, "-", "")[:8]) && !strings.Contains(strings.ToLower(path), ref.PodUID[:8]) {
			t.Fatalf("pod uid %q not in path %q", ref.PodUID, path)
		}
	})
}

func TestParseSelector(t *testing.T) {
	good := []struct {
		in, canonical string
	}{
		{"all", "all"},
		{" all ", "all"},
		{"/kubepods/**", "glob:/kubepods/**"},
		{"glob:/ci/*/job-?", "glob:/ci/*/job-?"},
		{"pod:" + testUID, "pod:" + testUID},
		{"pod:" + testUID_, "pod:" + testUID},
		{"pod:" + strings.ToUpper(testUID), "pod:" + testUID},
		{"pod:*", "pod:*"},
		{"container:" + testCID, "container:" + testCID},
		{"container:containerd://" + testCID, "container:" + testCID},
		{"container:" + testCID[:12], "container:" + testCID[:12]},
		{"container:*", "container:*"},
	}
	for _, tt := range good {
		s, err := ParseSelector(tt.in)
		if err != nil {
			t.Errorf("ParseSelector(%q): %v", tt.in, err)
			continue
		}
		if s.String() != tt.canonical {
			t.Errorf("ParseSelector(%q) = %q, want %q", tt.in, s.String(), tt.canonical)
		}
	}
	bad := []string{
		"", "everything", "glob:relative/*", "glob:/a/[", "pod:123", "pod:", "container:abc",
		"container:" + testCID + "00", "container:zzzzzzzzzzzzzz", "kube:x", "relative",
		"/" + strings.Repeat("a", MaxSelectorBytes),
	}
	for _, in := range bad {
		_, err := ParseSelector(in)
		if !errors.Is(err, ErrInvalidSelector) {
			t.Errorf("ParseSelector(%q) = %v, want ErrInvalidSelector", in, err)
		}
	}
}

func TestSelectionMatch(t *testing.T) {
	podPath := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + testUID_ + ".slice"
	ctrPath := podPath + "/cri-containerd-" + testCID + ".scope"
	tests := []struct {
		sel  string
		path string
		want bool
	}{
		{"all", "/", true},
		{"all", "/system.slice", false},
		{"/ci/**", "/ci", true},
		{"/ci/**", "/ci/job-1/step", true},
		{"/ci/*", "/ci", false},
		{"/ci/*", "/ci/job-1", true},
		{"/ci/*", "/ci/job-1/step", false},
		{"pod:" + testUID, podPath, true},
		{"pod:" + testUID, ctrPath, false},
		{"pod:*", podPath, true},
		{"pod:*", "/kubepods.slice", false},
		{"container:" + testCID[:12], ctrPath, true},
		{"container:" + testCID, podPath, false},
		{"container:*", ctrPath, true},
		{"container:*", "/system.slice/docker-" + testCID + ".scope", false},
		{"/system.slice/docker-*.scope", "/system.slice/docker-" + testCID + ".scope", true},
	}
	for _, tt := range tests {
		s, err := ParseSelection([]string{tt.sel})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Match(tt.path); got != tt.want {
			t.Errorf("%s matches %s = %v, want %v", tt.sel, tt.path, got, tt.want)
		}
	}
}

func TestSelectionTopmostAndRoots(t *testing.T) {
	s, err := ParseSelection([]string{"/ci/**", "/jobs/*/run", "/jobs/a/run/x", "glob:/kube*/x"})
	if err != nil {
		t.Fatal(err)
	}
	got := s.Topmost([]string{"/ci/b/c", "/ci", "/ci/a", "/ci-other", "/jobs/a/run/x", "/jobs/a/run", "/jobs/b/run", "/other"})
	want := []string{"/ci", "/jobs/a/run", "/jobs/b/run"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("Topmost = %q, want %q", got, want)
	}
	roots := s.WatchRoots()
	if strings.Join(roots, " ") != "/" {
		// "glob:/kube*/x" can match any top-level cgroup: the root covers all.
		t.Fatalf("WatchRoots = %q", roots)
	}
	s2, _ := ParseSelection([]string{"/a/b/**", "/a/b/c/*", "/a/x"})
	if r := s2.WatchRoots(); strings.Join(r, " ") != "/a/b /a/x" {
		t.Fatalf("WatchRoots = %q", r)
	}
	if _, err := ParseSelection([]string{" ", ""}); !errors.Is(err, ErrInvalidSelector) {
		t.Fatalf("empty selection: %v", err)
	}
	many := make([]string, MaxSelectors+1)
	for i := range many {
		many[i] = "all"
	}
	if _, err := ParseSelection(many); !errors.Is(err, ErrInvalidSelector) {
		t.Fatalf("too many selectors: %v", err)
	}
}

// FuzzParseSelector checks that parsing never panics, that what parses
// re-parses to the same selector, and that matching never panics.
func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"all", "/ci/**", "glob:/a/*/b?", "pod:" + testUID, "pod:*", "container:" + testCID[:20], "container:*", "glob:/[a-", "pod:" + testUID_} {
		f.Add(s, "/kubepods/pod"+testUID+"/"+testCID)
	}
	f.Fuzz(func(t *testing.T, spec, path string) {
		s, err := ParseSelector(spec)
		if err != nil {
			if !errors.Is(err, ErrInvalidSelector) {
				t.Fatalf("error %v does not wrap ErrInvalidSelector", err)
			}
			return
		}
		again, err := ParseSelector(s.String())
		if err != nil || again.String() != s.String() {
			t.Fatalf("%q → %q does not re-parse: %v", spec, s.String(), err)
		}
		ref, ok := ParseKube(path)
		_ = s.Match(path, ref, ok)
		_ = s.watchRoot()
	})
}
