//go:build linux

package qemu

import (
	"context"
	"fmt"
	"strconv"
	"os"
	"strings"
	"testing"
	"time"

	"glasshouse.dev/glasshouse/core/execution"
)

func TestZZExperiment(t *testing.T) {
	if os.Getenv("ZZ") == "" {
		t.Skip()
	}
	settings := map[string]string{"qemu.pool_collector": "false"}
	for _, kv := range strings.Split(os.Getenv("ZZ_SETTINGS"), ";") {
		k, v, _ := strings.Cut(kv, "=")
		settings[k] = v
	}
	b, _ := newTestBackend(t, settings)
	b.Warm()
	if b.cfg.PoolSize > 0 {
		waitPool(t, b, b.cfg.PoolSize)
	}
	script := os.Getenv("ZZ")
	for i := 0; i < 2; i++ {
		spec := execution.Spec{Command: []string{"sh", "-c", script}, Timeout: time.Minute}.WithDefaults()
		inst, err := b.Prepare(context.Background(), spec)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		pid := inst.(*instance).m.cmd.Process.Pid
		cpu0 := cpuTime(pid)
		if err := inst.Start(context.Background()); err != nil {
			t.Logf("start: %v", err)
		}
		var cpu1 time.Duration
		for {
			select {
			case <-inst.(*instance).done:
			default:
				cpu1 = cpuTime(pid)
				time.Sleep(5 * time.Millisecond)
				continue
			}
			break
		}
		res, _ := inst.Wait(context.Background())
		ph := inst.(*instance).Phases()
		t.Logf("run %d: total %s restored %v warm %v run %s qemu-cpu %s\nstdout:\n%s\nstderr:\n%s", i, time.Since(start), ph.Restored, ph.Warm, ph.Run, cpu1-cpu0, res.Stdout, res.Stderr)
		fmt.Printf("ZZCPU %d\n", (cpu1-cpu0).Milliseconds())
		inst.Cleanup(context.Background())
	}
}

func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond
}
