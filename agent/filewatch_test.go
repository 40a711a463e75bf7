package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPolicyFiles(t *testing.T) {
	got := PolicyFiles("no-network, /etc/p/site.yaml,local.yml,./x")
	if strings.Join(got, " ") != "/etc/p/site.yaml local.yml ./x" {
		t.Fatalf("%q", got)
	}
}

func TestWatchFilesFollowsSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	// A ConfigMap volume: name -> ..data/name, ..data -> a timestamped dir.
	for _, d := range []string{"v1", "v2"} {
		os.Mkdir(filepath.Join(dir, d), 0o755)
		os.WriteFile(filepath.Join(dir, d, "agent.yaml"), []byte("select: [all]\n"), 0o644)
	}
	os.Symlink("v1", filepath.Join(dir, "..data"))
	os.Symlink("..data/agent.yaml", filepath.Join(dir, "agent.yaml"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed := make(chan struct{}, 10)
	go WatchFiles(ctx, 10*time.Millisecond, func() []string { return []string{filepath.Join(dir, "agent.yaml")} }, func() { changed <- struct{}{} })
	time.Sleep(50 * time.Millisecond)
	select {
	case <-changed:
		t.Fatal("change reported without a change")
	default:
	}
	tmp := filepath.Join(dir, "..data_tmp")
	os.Symlink("v2", tmp)
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("symlink swap not noticed")
	}
}
