//go:build linux

package qemu

import (
	"context"
	"strings"
	"testing"

	"glasshouse.dev/glasshouse/core/profiling"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/guest/transport"
)

func TestParseCPUMHz(t *testing.T) {
	info := "processor\t: 0\nmodel name\t: X\ncpu MHz\t\t: 2445.406\ncache size\t: 1 KB\n"
	if got := parseCPUMHz(info); got != 2445406 {
		t.Fatalf("got %d", got)
	}
	for _, bad := range []string{"", "cpu MHz : fast", "cpu MHz : 1", "cpu MHz : 1e9"} {
		if got := parseCPUMHz(bad); got != 0 {
			t.Errorf("%q: got %d", bad, got)
		}
	}
}

func TestKernelCmdline(t *testing.T) {
	c := kernelCmdline("tsc_early_khz=1", "  ", "rdinit=/x")
	for _, want := range []string{"console=ttyS0", "panic=-1", "glasshouse.port=" + portName, "tsc_early_khz=1", "rdinit=/x"} {
		if !strings.Contains(c, want) {
			t.Errorf("%q lacks %s", c, want)
		}
	}
	if strings.Index(c, "rdinit=/x") < strings.Index(c, "panic=-1") {
		t.Error("extra arguments must come last so that they win")
	}
}

func TestEnvIsBaseAndSpecOnly(t *testing.T) {
	i := &instance{}
	i.spec.Env = map[string]string{"A": "1", "HOME": "/elsewhere"}
	got := strings.Join(i.env(), " ")
	if got != "A=1 HOME=/elsewhere LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin" {
		t.Fatalf("env %q", got)
	}
}

func TestGuestControllerNeedsACollector(t *testing.T) {
	i := &instance{m: &machine{hello: transport.Hello{CollectorError: "guest kernel has no BTF"}}}
	err := i.Profiler().Available()
	if err == nil || !strings.Contains(err.Error(), "guest kernel has no BTF") {
		t.Fatalf("Available = %v, want the guest's reason", err)
	}
	if _, err := i.Profiler().Start(context.Background(), profiling.Target{}, nil); err == nil {
		t.Fatal("Start without a collector succeeded")
	}
	i.m.hello = transport.Hello{Collector: "ebpf-guest"}
	if err := i.Profiler().Available(); err != nil {
		t.Fatal(err)
	}
	if got := i.Profiler().Collector(); got != receipt.CollectorEBPFGuest {
		t.Fatalf("collector %q", got)
	}
}
