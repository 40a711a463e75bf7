package agent

import (
	"strings"
)

// Kubernetes QoS classes, as the kubelet names its cgroups.
const (
	QoSGuaranteed = "guaranteed"
	QoSBurstable  = "burstable"
	QoSBestEffort = "besteffort"
)

// Levels of a cgroup inside a pod's subtree.
const (
	// LevelPod is the pod's own cgroup; its containers are nested in it.
	LevelPod = "pod"
	// LevelContainer is one container's cgroup.
	LevelContainer = "container"
	// LevelOther is any other cgroup in a pod's subtree: a runtime's
	// monitor (crio-conmon-*), or a cgroup nested inside a container.
	LevelOther = "other"
)

// MaxCgroupPath bounds the cgroup paths the agent accepts (PATH_MAX).
const MaxCgroupPath = 4096

// KubeRef is what the kubelet's cgroup naming says about a cgroup.
type KubeRef struct {
	// PodUID is the pod's UID, lower case with dashes
	// ("0b1f8e6c-4f2a-4d8e-9d1c-2a7d1f0e9b3a"), or the 32 hex digits of a
	// static pod's config hash.
	PodUID string
	// QoS is the pod's QoS class: guaranteed, burstable or besteffort.
	QoS string
	// Level says what this cgroup is in the pod: LevelPod,
	// LevelContainer or LevelOther.
	Level string
	// ContainerID is the container's 64 hex digit id when Level is
	// LevelContainer (or LevelOther below a container), else "".
	ContainerID string
	// Runtime is "containerd", "docker" or "crio" when the cgroup name
	// says so; plain cgroupfs container ids do not.
	Runtime string
}

// ParseKube reads the kubelet's cgroup naming in path (relative to the
// cgroup2 mount, "/kubepods/burstable/pod<uid>/<id>"). It understands the
// cgroupfs driver
//
//	/kubepods/pod<uid>/<id>
//	/kubepods/burstable/pod<uid>/<id>        (also crio-<id>, docker-<id>)
//
// and the systemd driver
//
//	/kubepods.slice/kubepods-pod<uid_>.slice/cri-containerd-<id>.scope
//	/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/docker-<id>.scope
//	(and crio-<id>.scope; crio-conmon-<id>.scope is LevelOther)
//
// where <uid_> is the UID with dashes written as underscores. The kubelet's
// cgroup root may put anything before the kubepods segment (kind nodes use
// /kubelet.slice/kubelet-kubepods.slice/...). ok is false when path is not
// in a pod's subtree.
func ParseKube(path string) (ref KubeRef, ok bool) {
	if len(path) > MaxCgroupPath {
		return KubeRef{}, false
	}
	segs := strings.Split(strings.Trim(path, "/"), "/")
	for i, seg := range segs {
		uid, qos, found := podSegment(segs[:i], seg)
		if !found {
			continue
		}
		ref = KubeRef{PodUID: uid, QoS: qos, Level: LevelPod}
		rest := segs[i+1:]
		if len(rest) == 0 {
			return ref, true
		}
		id, runtime, container := containerSegment(rest[0])
		ref.Level = LevelOther
		if container {
			ref.ContainerID, ref.Runtime = id, runtime
			if len(rest) == 1 {
				ref.Level = LevelContainer
			}
		}
		return ref, true
	}
	return KubeRef{}, false
}

// podSegment recognises a pod's cgroup name. before are the segments above
// it: the cgroupfs form needs a "kubepods" segment among them.
func podSegment(before []string, seg string) (uid, qos string, ok bool) {
	if name, isSlice := strings.CutSuffix(seg, ".slice"); isSlice {
		// systemd: [prefix-]kubepods[-qos]-pod<uid_>.slice
		at := strings.LastIndex(name, "-pod")
		if at < 0 {
			return "", "", false
		}
		head, raw := name[:at], name[at+len("-pod"):]
		qos = ""
		for _, c := range []struct{ slice, qos string }{
			{"kubepods", QoSGuaranteed},
			{"kubepods-burstable", QoSBurstable},
			{"kubepods-besteffort", QoSBestEffort},
		} {
			if head == c.slice || strings.HasSuffix(head, "-"+c.slice) {
				qos = c.qos
			}
		}
		if qos == "" {
			return "", "", false
		}
		uid, ok = canonicalUID(strings.ReplaceAll(raw, "_", "-"))
		return uid, qos, ok
	}
	raw, isPod := strings.CutPrefix(seg, "pod")
	if !isPod || len(before) == 0 {
		return "", "", false
	}
	// cgroupfs: .../kubepods[/burstable|/besteffort]/pod<uid>
	parent := before[len(before)-1]
	switch {
	case isKubepods(parent):
		qos = QoSGuaranteed
	case (parent == QoSBurstable || parent == QoSBestEffort) && len(before) >= 2 && isKubepods(before[len(before)-2]):
		qos = parent
	default:
		return "", "", false
	}
	uid, ok = canonicalUID(raw)
	return uid, qos, ok
}

// isKubepods reports whether seg is the kubelet's cgroupfs root of pods
// ("kubepods", or "kubepods.slice" when a systemd-named root is used with
// the cgroupfs layout below it).
func isKubepods(seg string) bool {
	return seg == "kubepods" || seg == "kubepods.slice"
}

// containerSegment recognises a container's cgroup name.
func containerSegment(seg string) (id, runtime string, ok bool) {
	name := seg
	if n, scope := strings.CutSuffix(seg, ".scope"); scope {
		name = n
	}
	if strings.HasPrefix(name, "crio-conmon-") {
		return "", "", false
	}
	for _, p := range []struct{ prefix, runtime string }{
		{"cri-containerd-", "containerd"},
		{"containerd-", "containerd"},
		{"docker-", "docker"},
		{"crio-", "crio"},
	} {
		if rest, found := strings.CutPrefix(name, p.prefix); found {
			if isHex(rest, 64) {
				return rest, p.runtime, true
			}
			return "", "", false
		}
	}
	if name == seg && isHex(seg, 64) {
		return seg, "", true
	}
	return "", "", false
}

// canonicalUID accepts a pod UID (8-4-4-4-12 hex digits) or a static pod's
// 32 hex digit config hash, and returns it in lower case.
func canonicalUID(s string) (string, bool) {
	s = strings.ToLower(s)
	if isHex(s, 32) {
		return s, true
	}
	if len(s) != 36 {
		return "", false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return "", false
			}
		default:
			if !isHexDigit(s[i]) {
				return "", false
			}
		}
	}
	return s, true
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return false
		}
	}
	return true
}

func isHexDigit(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'f'
}
