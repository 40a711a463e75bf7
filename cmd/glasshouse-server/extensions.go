package main

import (
	"fmt"
	"log/slog"

	"glasshouse.dev/glasshouse/server"
)

// wireExtensions connects the optional parts: policies (core/policy),
// training signals (core/training) and DSSE signing (core/attest).
func wireExtensions(cfg *server.Config, o options, log *slog.Logger) error {
	if o.signingKey != "" {
		return fmt.Errorf("--signing-key: this build has no signer (package core/attest is not wired in yet)")
	}
	log.Debug("policies, training signals and signing are not wired in this build")
	return nil
}
