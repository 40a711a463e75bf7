//go:build linux

package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// writeFile writes v to dir/name, the way cgroup files want it.
func writeFile(dir, name, v string) error {
	if err := writeRaw(filepath.Join(dir, name), v); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// writeRaw writes v to a cgroup interface file with plain system calls:
// os.File would also try to register the descriptor with the poller, which
// doubles the calls a run makes into cgroupfs.
func writeRaw(path, v string) error {
	fd, err := openRaw(path, unix.O_WRONLY)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := writeFD(fd, v); err != nil {
		return &os.PathError{Op: "write", Path: path, Err: err}
	}
	return nil
}

func writeFD(fd int, v string) error {
	for {
		_, err := unix.Write(fd, []byte(v))
		if err != unix.EINTR {
			return err
		}
	}
}

func openRaw(path string, mode int) (int, error) {
	for {
		fd, err := unix.Open(path, mode|unix.O_CLOEXEC, 0)
		switch {
		case err == nil:
			return fd, nil
		case err != unix.EINTR:
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
	}
}

// readInt reads a file holding one integer ("max" reads as -1).
func readInt(path string) (int64, error) {
	b, err := readSmall(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return -1, nil
	}
	return strconv.ParseInt(s, 10, 64)
}

// readKeyed reads a "key value" file (cpu.stat, memory.events) into a map.
func readKeyed(path string) (map[string]int64, error) {
	b, err := readSmall(path)
	if err != nil {
		return nil, err
	}
	m := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
			m[k] = n
		}
	}
	return m, nil
}

// readSmall reads a cgroup interface file with plain system calls (see
// writeRaw). These files are generated on read and report no useful size,
// so there is no stat either.
func readSmall(path string) ([]byte, error) {
	fd, err := openRaw(path, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, 1024)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := unix.Read(fd, buf[len(buf):cap(buf)])
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		case n == 0:
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}
