package execution

import (
	"os"
	"strconv"
	"testing"
)

func TestOwnerDead(t *testing.T) {
	const prefix = "gh-vm-"
	self := os.Getpid()
	for name, want := range map[string]bool{
		prefix + "1-x":                       false, // init lives
		prefix + strconv.Itoa(self) + "-abc": false,
		prefix + "999999999-abc":             true,
		prefix + "123456789":                 false, // no owner separator
		prefix + "x-1":                       false,
		"other-999999999-abc":                false,
		"gh-build-999999999-1":               false, // another prefix
		prefix + "-5-x":                      false,
		prefix + "0-x":                       false,
		prefix + "99999999999999999999-":     false,
	} {
		if got := OwnerDead(name, prefix); got != want {
			t.Errorf("OwnerDead(%q) = %v, want %v", name, got, want)
		}
	}
}
