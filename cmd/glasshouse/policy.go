package main

import (
	"errors"

	"glasshouse.dev/glasshouse/core/execution"
)

// loadEvaluator loads a policy file or built-in pack.
func loadEvaluator(string) (execution.Evaluator, error) {
	return nil, errors.New("this build has no policy engine")
}
