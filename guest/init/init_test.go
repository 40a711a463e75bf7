package main

import (
	"testing"
	"time"
)

func TestParseCmdline(t *testing.T) {
	c := parseCmdline("console=ttyS0 quiet glasshouse.port=glasshouse.0 glasshouse.vsock=1024 glasshouse.debug glasshouse.devwait=250 glasshouse.prewarm=1 glasshouse.maxframe=x glasshouse.hellowait=-5")
	if c.port != "glasshouse.0" || c.vsockPort != 1024 || !c.debug || !c.prewarm || c.deviceWait != 250*time.Millisecond {
		t.Fatalf("got %+v", c)
	}
	if c.maxFrame != 0 || c.helloWait != 30*time.Second {
		t.Fatalf("malformed values changed defaults: %+v", c)
	}
	if c := parseCmdline("glasshouse.rootdev=/dev/vda glasshouse.workdev=/etc/passwd glasshouse.collector=eager"); c.rootDev != "/dev/vda" || c.workDev != "" || !c.eagerCollector {
		t.Fatalf("disk options: %+v", c)
	}
	if c := parseCmdline("glasshouse.snapshot=1 glasshouse.net glasshouse.zygote=1"); !c.snapshot || !c.net || !c.zygote {
		t.Fatalf("snapshot options: %+v", c)
	}
	if c := parseCmdline("glasshouse.snapshot=0 glasshouse.net=yes glasshouse.zygote=0"); c.snapshot || c.net || c.zygote {
		t.Fatalf("snapshot options: %+v", c)
	}
	if c := parseCmdline("glasshouse.vsock=99999999999 glasshouse.port=" + string(make([]byte, 300))); c.vsockPort != 0 || c.port != "" {
		t.Fatalf("out-of-range values accepted: %+v", c)
	}
}

// FuzzParseCmdline checks that no kernel command line makes init panic or
// accept out-of-range values.
func FuzzParseCmdline(f *testing.F) {
	f.Add("console=ttyS0 glasshouse.port=glasshouse.0 glasshouse.debug=1")
	f.Add("glasshouse.vsock=4294967295 glasshouse.devwait=1 glasshouse.maxframe=1048576")
	f.Fuzz(func(t *testing.T, s string) {
		c := parseCmdline(s)
		if c.deviceWait <= 0 || c.helloWait <= 0 || c.maxFrame < 0 || len(c.port) > 255 {
			t.Fatalf("bad options %+v", c)
		}
	})
}
