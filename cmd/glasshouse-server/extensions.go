package main

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"

	"glasshouse.dev/glasshouse/core/attest"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/server"
)

// wireExtensions connects the optional parts: policies (core/policy),
// training signals (core/training) and DSSE signing (core/attest).
func wireExtensions(cfg *server.Config, o options, log *slog.Logger) error {
	cfg.Policies = server.BuiltinPolicies{}
	cfg.Signals = server.TrainingSignals
	if o.signingKey != "" {
		key, err := attest.LoadPrivateKey(o.signingKey)
		if err != nil {
			return fmt.Errorf("--signing-key: %w", err)
		}
		id, _ := attest.KeyID(key.Public().(ed25519.PublicKey))
		cfg.Sign = func(r *receipt.Receipt) ([]byte, error) { return attest.Sign(r, key) }
		log.Info("signing receipts", "key_id", id)
	}
	return nil
}
