package main

import (
	"fmt"
	"io"
	"log/slog"

	"glasshouse.dev/glasshouse/core/execution"
)

func init() {
	register(command{name: "backends", summary: "list the backends and whether each can run here", run: backendsCmd})
}

func backendsCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		return fail(stderr, "backends", usageErrorf("takes no arguments"))
	}
	log := slog.New(slog.DiscardHandler)
	for _, name := range execution.Registered() {
		b, err := execution.NewBackend(name, execution.Options{Logger: log})
		if err != nil {
			fmt.Fprintf(stdout, "%-10s %-10s unavailable: %s\n", name, "?", oneLine(err.Error()))
			continue
		}
		status := "available"
		if err := b.Available(); err != nil {
			status = "unavailable: " + oneLine(err.Error())
		}
		fmt.Fprintf(stdout, "%-10s %-10s %s\n", name, b.Capabilities().Isolation, status)
	}
	return exitOK
}

// selectBackend builds the named backend, or for "auto" the most isolating
// one available here. auto never picks a backend without isolation: running
// untrusted code on the host must be asked for by name.
func selectBackend(name string, log *slog.Logger) (execution.Backend, error) {
	opts := execution.Options{Logger: log}
	if name != "auto" {
		b, err := execution.NewBackend(name, opts)
		if err != nil {
			return nil, err
		}
		if err := b.Available(); err != nil {
			return nil, fmt.Errorf("backend %s: %w", name, err)
		}
		return b, nil
	}
	var all []execution.Backend
	for _, n := range execution.Registered() {
		if n == "fake" {
			continue
		}
		b, err := execution.NewBackend(n, opts)
		if err != nil {
			log.Warn("backend not built", "backend", n, "err", err)
			continue
		}
		all = append(all, b)
	}
	b, err := execution.Strongest(all, execution.IsolationContainer)
	if err != nil {
		return nil, fmt.Errorf("--backend auto: %w; build the microVM guest with scripts/build-guest.sh, or pass --backend process to run on this host without isolation", err)
	}
	return b, nil
}
