//go:build linux

package netguard

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"glasshouse.dev/glasshouse/core/execution"
)

// Enforce puts mode in force on cgroupDir and everything below it, for as
// long as the cgroup exists. Unlike Attach, it owns nothing: programs of the
// mode that are already attached to cgroupDir (by this process or an
// earlier one) are kept, missing ones are attached and left attached.
// Callers keep one parent cgroup per mode and create runs beneath it, so a
// run pays no BPF syscalls at all. Enforce serialises with other processes
// through an flock on the cgroup directory.
func Enforce(cgroupDir string, mode execution.Network) error {
	if err := checkMode(mode); err != nil {
		return err
	}
	if mode == execution.NetworkFull {
		return nil
	}
	dir, err := os.Open(cgroupDir)
	if err != nil {
		return fmt.Errorf("open cgroup: %w", err)
	}
	defer dir.Close()
	fd := int(dir.Fd())
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock cgroup %s: %w", cgroupDir, err)
	}
	defer unix.Flock(fd, unix.LOCK_UN)
	for _, p := range modes[mode] {
		// The kernel knows a program by its function name, which is also
		// its name in the object, so nothing needs loading to ask.
		present, err := attached(fd, p.attach, p.name)
		if err != nil {
			return fmt.Errorf("%w: query %s on %s: %v", ErrNotSupported, p.attach, cgroupDir, err)
		}
		if present {
			continue
		}
		spec, err := specOnce()
		if err != nil {
			return fmt.Errorf("parse netguard object: %w", err)
		}
		prog, err := ebpf.NewProgram(spec.Programs[p.name].Copy())
		if err != nil {
			return fmt.Errorf("%w: load %s: %v", ErrNotSupported, p.name, err)
		}
		err = link.RawAttachProgram(link.RawAttachProgramOptions{Target: fd, Program: prog, Attach: p.attach, Flags: unix.BPF_F_ALLOW_MULTI})
		// The attachment holds the program; our descriptor is not needed.
		prog.Close()
		if err != nil {
			return fmt.Errorf("%w: attach %s to %s: %v", ErrNotSupported, p.name, cgroupDir, err)
		}
	}
	return nil
}

// attached reports whether a program named name is attached to the cgroup
// for the attach type. Copies beyond the first (attached by earlier,
// buggy versions) are detached: they are identical and each one costs
// every socket call of every run.
//
// Every run of the CLI asks this for every program of its mode, so the
// names are read with one BPF_OBJ_GET_INFO_BY_FD each (the kernel's
// 15-byte name) instead of through ebpf.Program.Info, which also fetches
// the program's BTF and /proc fdinfo.
func attached(cgroupFD int, at ebpf.AttachType, name string) (bool, error) {
	res, err := link.QueryPrograms(link.QueryOptions{Target: cgroupFD, Attach: at})
	if err != nil {
		return false, err
	}
	found := false
	for _, ap := range res.Programs {
		fd, err := progFDByID(uint32(ap.ID))
		if errors.Is(err, unix.ENOENT) {
			continue // detached meanwhile
		} else if err != nil {
			return false, fmt.Errorf("open program %d: %w", ap.ID, err)
		}
		reported, err := progName(fd)
		if err != nil {
			unix.Close(fd)
			return false, fmt.Errorf("read name of program %d: %w", ap.ID, err)
		}
		if !sameName(reported, name) {
			unix.Close(fd)
			continue
		}
		if found {
			err = detachDuplicate(cgroupFD, at, fd)
		} else {
			unix.Close(fd)
		}
		found = true
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return false, fmt.Errorf("detach duplicate %s: %w", name, err)
		}
	}
	return found, nil
}

// detachDuplicate detaches the program behind fd, which it takes over.
func detachDuplicate(cgroupFD int, at ebpf.AttachType, fd int) error {
	prog, err := ebpf.NewProgramFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return err
	}
	defer prog.Close()
	return link.RawDetachProgram(link.RawDetachProgramOptions{Target: cgroupFD, Program: prog, Attach: at})
}

// progFDByID opens the program with the given id (BPF_PROG_GET_FD_BY_ID).
func progFDByID(id uint32) (int, error) {
	attr := struct{ id, nextID, openFlags uint32 }{id: id}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_GET_FD_BY_ID, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno != 0 {
		return -1, errno
	}
	unix.CloseOnExec(int(fd))
	return int(fd), nil
}

// progInfo is the start of struct bpf_prog_info, up to the name.
type progInfo struct {
	typ, id                           uint32
	tag                               [8]byte
	jitedLen, xlatedLen               uint32
	jitedInsns, xlatedInsns, loadTime uint64
	createdByUID, nrMapIDs            uint32
	mapIDs                            uint64
	name                              [unix.BPF_OBJ_NAME_LEN]byte
}

// progName returns the kernel's name of the program behind fd
// (BPF_OBJ_GET_INFO_BY_FD): at most BPF_OBJ_NAME_LEN-1 bytes.
func progName(fd int) (string, error) {
	var info progInfo
	// The pointer is typed, so that the runtime keeps it valid if the
	// stack moves before the call.
	attr := struct {
		fd, infoLen uint32
		info        unsafe.Pointer
	}{fd: uint32(fd), infoLen: uint32(unsafe.Sizeof(info)), info: unsafe.Pointer(&info)}
	_, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_OBJ_GET_INFO_BY_FD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno != 0 {
		return "", errno
	}
	return unix.ByteSliceToString(info.name[:]), nil
}

// sameName compares a program's reported name with its name in the object.
// The kernel keeps BPF_OBJ_NAME_LEN-1 bytes of a name; cilium/ebpf reports
// the full name from BTF when the program has it, the kernel's otherwise.
func sameName(reported, name string) bool {
	if reported == name {
		return true
	}
	return len(name) > unix.BPF_OBJ_NAME_LEN-1 && reported == name[:unix.BPF_OBJ_NAME_LEN-1]
}
