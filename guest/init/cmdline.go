package main

import (
	"strconv"
	"strings"
	"time"
)

// cmdline holds init's options from the kernel command line.
type cmdline struct {
	// port is the virtio-serial port name (glasshouse.port=).
	port string
	// vsockPort is the AF_VSOCK port to listen on (glasshouse.vsock=).
	vsockPort uint32
	// maxFrame bounds transport frames (glasshouse.maxframe=).
	maxFrame int
	// deviceWait bounds the wait for the transport and disks
	// (glasshouse.devwait= in milliseconds).
	deviceWait time.Duration
	// helloWait bounds the wait for the host's Welcome
	// (glasshouse.hellowait= in milliseconds).
	helloWait time.Duration
	// prewarm runs Python once before the guest reports ready, so that a
	// pooled guest's first run finds the interpreter in the page cache
	// (glasshouse.prewarm=1).
	prewarm bool
	// collector loads the eBPF collector before the guest reports ready
	// (glasshouse.collector=eager) instead of on the first profiled run.
	eagerCollector bool
	// rootDev and workDev name the rootfs and workspace disks for VMMs
	// whose virtio-blk devices carry no serial (glasshouse.rootdev=,
	// glasshouse.workdev=); by default disks are found by serial.
	rootDev, workDev string
	// snapshot boots a snapshot template (glasshouse.snapshot=1): once
	// the handshake is done, the guest parks and waits for the Wake of a
	// guest restored from its snapshot.
	snapshot bool
	// zygote has a snapshot template start a Python zygote for the runs
	// of the guests restored from it (glasshouse.zygote=1).
	zygote bool
	// net loads the network modules ("net:" in load.order) and sets up
	// the guest's network device for runs with network "full"
	// (glasshouse.net=1).
	net   bool
	debug bool
}

// maxCmdline bounds what parseCmdline reads; the kernel's own limit is 2048
// on x86 (COMMAND_LINE_SIZE), but init does not rely on it.
const maxCmdline = 64 << 10

// parseCmdline reads init's options from a kernel command line. Unknown
// words and malformed values are ignored, keeping the defaults.
func parseCmdline(s string) cmdline {
	c := cmdline{deviceWait: 15 * time.Second, helloWait: 30 * time.Second}
	if len(s) > maxCmdline {
		s = s[:maxCmdline]
	}
	for _, w := range strings.Fields(s) {
		k, v, _ := strings.Cut(w, "=")
		switch k {
		case "glasshouse.port":
			if len(v) <= 255 {
				c.port = v
			}
		case "glasshouse.vsock":
			if n, err := strconv.ParseUint(v, 10, 32); err == nil {
				c.vsockPort = uint32(n)
			}
		case "glasshouse.maxframe":
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				c.maxFrame = n
			}
		case "glasshouse.devwait":
			if n, err := strconv.Atoi(v); err == nil && n > 0 && n < 3600_000 {
				c.deviceWait = time.Duration(n) * time.Millisecond
			}
		case "glasshouse.hellowait":
			if n, err := strconv.Atoi(v); err == nil && n > 0 && n < 3600_000 {
				c.helloWait = time.Duration(n) * time.Millisecond
			}
		case "glasshouse.prewarm":
			c.prewarm = v == "" || v == "1"
		case "glasshouse.collector":
			c.eagerCollector = v == "eager"
		case "glasshouse.rootdev":
			if devPath(v) {
				c.rootDev = v
			}
		case "glasshouse.workdev":
			if devPath(v) {
				c.workDev = v
			}
		case "glasshouse.snapshot":
			c.snapshot = v == "" || v == "1"
		case "glasshouse.zygote":
			c.zygote = v == "" || v == "1"
		case "glasshouse.net":
			c.net = v == "" || v == "1"
		case "glasshouse.debug":
			c.debug = v == "" || v == "1"
		}
	}
	return c
}

// devPath accepts /dev/NAME with a plain device name.
func devPath(p string) bool {
	name, ok := strings.CutPrefix(p, "/dev/")
	if !ok || name == "" || len(name) > 32 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
