//go:build !lean

package main

import (
	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/receipt/schema"
)

func init() {
	validateSchema = schema.Validate
	loadExtras = func(policyRef, keyPath string) (execution.Evaluator, receiptSigner, error) {
		var ev execution.Evaluator
		if policyRef != "" {
			var err error
			if ev, err = loadEvaluator(policyRef); err != nil {
				return nil, nil, usageErrorf("--policy: %v", err)
			}
		}
		var signer receiptSigner
		if keyPath != "" {
			var err error
			if signer, err = loadSigner(keyPath); err != nil {
				return nil, nil, usageErrorf("--sign: %v", err)
			}
		}
		return ev, signer, nil
	}
}
