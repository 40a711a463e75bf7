//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// linkUp brings a network interface up.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("link %s up: %w", name, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("link %s up: %w", name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("link %s up: get flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("link %s up: set flags: %w", name, err)
	}
	return nil
}

// The guest's address on QEMU's user-mode network (slirp's defaults): the
// host is reachable as the gateway, slirp's DNS forwarder is 10.0.2.3 (the
// rootfs's resolv.conf).
var (
	guestAddr   = [4]byte{10, 0, 2, 15}
	guestPrefix = 24
	guestGW     = [4]byte{10, 0, 2, 2}
)

// setupNetwork brings up the guest's network device with its static
// address and a default route through the gateway. It is idempotent.
func setupNetwork() error {
	name, err := netDevice()
	if err != nil {
		return err
	}
	if err := linkUp(name); err != nil {
		return err
	}
	ifi, err := ifIndex(name)
	if err != nil {
		return err
	}
	nl, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer unix.Close(nl)
	if err := unix.Bind(nl, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	// RTM_NEWADDR: struct ifaddrmsg, then IFA_LOCAL and IFA_ADDRESS.
	addr := make([]byte, unix.SizeofIfAddrmsg)
	addr[0], addr[1], addr[3] = unix.AF_INET, byte(guestPrefix), unix.RT_SCOPE_UNIVERSE
	binary.NativeEndian.PutUint32(addr[4:], uint32(ifi))
	addr = appendAttr(addr, unix.IFA_LOCAL, guestAddr[:])
	addr = appendAttr(addr, unix.IFA_ADDRESS, guestAddr[:])
	if err := netlinkDo(nl, unix.RTM_NEWADDR, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add address to %s: %w", name, err)
	}
	// RTM_NEWROUTE: struct rtmsg, then RTA_GATEWAY and RTA_OIF.
	rt := make([]byte, unix.SizeofRtMsg)
	rt[0] = unix.AF_INET
	rt[4], rt[5], rt[6], rt[7] = unix.RT_TABLE_MAIN, unix.RTPROT_BOOT, unix.RT_SCOPE_UNIVERSE, unix.RTN_UNICAST
	rt = appendAttr(rt, unix.RTA_GATEWAY, guestGW[:])
	oif := make([]byte, 4)
	binary.NativeEndian.PutUint32(oif, uint32(ifi))
	rt = appendAttr(rt, unix.RTA_OIF, oif)
	if err := netlinkDo(nl, unix.RTM_NEWROUTE, rt); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add default route via %s: %w", name, err)
	}
	return nil
}

// netDevice returns the guest's first network device other than loopback.
func netDevice() (string, error) {
	entries, err := os.ReadDir("/sys/class/net")
	if err != nil {
		return "", fmt.Errorf("list network devices: %w", err)
	}
	for _, e := range entries {
		if e.Name() != "lo" {
			return e.Name(), nil
		}
	}
	return "", errors.New("the guest has no network device")
}

func ifIndex(name string) (int, error) {
	b, err := os.ReadFile("/sys/class/net/" + name + "/ifindex")
	if err != nil {
		return 0, fmt.Errorf("index of %s: %w", name, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("index of %s: %q", name, b)
	}
	return n, nil
}

// appendAttr appends a netlink route attribute.
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	n := unix.SizeofRtAttr + len(data)
	hdr := make([]byte, unix.SizeofRtAttr)
	binary.NativeEndian.PutUint16(hdr[0:], uint16(n))
	binary.NativeEndian.PutUint16(hdr[2:], typ)
	b = append(b, hdr...)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// netlinkDo sends one request with NLM_F_ACK and returns the kernel's
// answer as an error (nil for success).
func netlinkDo(fd int, typ uint16, body []byte) error {
	msg := make([]byte, unix.SizeofNlMsghdr, unix.SizeofNlMsghdr+len(body))
	binary.NativeEndian.PutUint32(msg[0:], uint32(unix.SizeofNlMsghdr+len(body)))
	binary.NativeEndian.PutUint16(msg[4:], typ)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	binary.NativeEndian.PutUint32(msg[8:], 1)
	msg = append(msg, body...)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return err
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if m.Header.Type == unix.NLMSG_ERROR && len(m.Data) >= 4 {
			if errno := int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
				return syscall.Errno(-errno)
			}
			return nil
		}
	}
	return errors.New("netlink: no acknowledgement")
}
