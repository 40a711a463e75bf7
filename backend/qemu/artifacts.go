package qemu

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"glasshouse.dev/glasshouse/core/execution"
)

// Artifact file names inside the artifacts directory.
const (
	KernelFile    = "vmlinuz"
	InitramfsFile = "initramfs.cpio"
	RootfsFile    = "rootfs.ext4"
)

// artifacts are the files a guest boots from.
type artifacts struct {
	dir                       string
	kernel, initramfs, rootfs string
}

// builtBy says which script builds each artifact.
var builtBy = map[string]string{
	KernelFile:    "scripts/build-guest.sh",
	InitramfsFile: "scripts/build-guest.sh",
	RootfsFile:    "scripts/build-minimal-rootfs.sh (root)",
}

// artifactDirs lists where artifacts are looked for, in order.
func artifactDirs(configured string) []string {
	if configured != "" {
		return []string{configured}
	}
	var dirs []string
	if d := os.Getenv("GLASSHOUSE_ARTIFACTS"); d != "" {
		dirs = append(dirs, d)
	}
	return append(dirs, "artifacts", "/var/lib/glasshouse/artifacts")
}

// findArtifacts returns the first directory holding every artifact, or an
// error wrapping execution.ErrBackendUnavailable that names what is missing
// and the script that builds it.
func findArtifacts(configured string) (artifacts, error) {
	var report []string
	for _, dir := range artifactDirs(configured) {
		a := artifacts{dir: dir, kernel: filepath.Join(dir, KernelFile),
			initramfs: filepath.Join(dir, InitramfsFile), rootfs: filepath.Join(dir, RootfsFile)}
		var missing []string
		for _, f := range []string{KernelFile, InitramfsFile, RootfsFile} {
			if st, err := os.Stat(filepath.Join(dir, f)); err != nil || !st.Mode().IsRegular() {
				missing = append(missing, fmt.Sprintf("%s (built by %s)", f, builtBy[f]))
			}
		}
		if len(missing) == 0 {
			abs, err := filepath.Abs(dir)
			if err == nil {
				a.dir, a.kernel, a.initramfs, a.rootfs = abs, filepath.Join(abs, KernelFile),
					filepath.Join(abs, InitramfsFile), filepath.Join(abs, RootfsFile)
			}
			return a, nil
		}
		report = append(report, fmt.Sprintf("%s lacks %s", dir, strings.Join(missing, ", ")))
	}
	return artifacts{}, fmt.Errorf("%w: guest artifacts not found: %s; set GLASSHOUSE_ARTIFACTS or run the build scripts",
		execution.ErrBackendUnavailable, strings.Join(report, "; "))
}

// stamp returns the input hash recorded next to an artifact, for cache keys.
func stamp(path string) string {
	b, err := os.ReadFile(path + ".inputs")
	if err != nil {
		if st, serr := os.Stat(path); serr == nil {
			return fmt.Sprintf("%d-%d", st.Size(), st.ModTime().UnixNano())
		}
		return ""
	}
	return strings.TrimSpace(string(b))
}
