package server

import (
	"fmt"
	"strings"

	"glasshouse.dev/glasshouse/core/execution"
	"glasshouse.dev/glasshouse/core/policy"
	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/core/training"
)

// BuiltinPolicies is the PolicyLoader of a production server: requests may
// name built-in packs (core/policy) or send inline YAML, never a file path,
// so a client cannot make the server read its disk.
type BuiltinPolicies struct{}

var _ PolicyLoader = BuiltinPolicies{}

// Load implements PolicyLoader: ref is one or more comma-separated pack
// names.
func (BuiltinPolicies) Load(ref string) (execution.Evaluator, error) {
	for _, item := range strings.Split(ref, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if _, err := policy.PackSource(item); err != nil {
			return nil, fmt.Errorf("%q is not a built-in pack (packs: %s); send a policy's YAML inline instead", truncate(item), packNames())
		}
	}
	p, err := policy.Load(ref)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Parse implements PolicyLoader.
func (BuiltinPolicies) Parse(name string, src []byte) (execution.Evaluator, error) {
	p, err := policy.Parse(name, src)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func packNames() string {
	var names []string
	for _, p := range policy.Packs() {
		names = append(names, p.Name)
	}
	return strings.Join(names, ", ")
}

// TrainingSignals is the SignalsFunc of a production server: the run's
// core/training record (mask, correctness against expect.stdout,
// behaviour, resources, reward under the default reward spec).
func TrainingSignals(r *receipt.Receipt, stdout []byte, expectStdout *string) (any, error) {
	return training.Derive(r, training.Input{Stdout: stdout, Expect: training.Expect{Stdout: expectStdout}}), nil
}
