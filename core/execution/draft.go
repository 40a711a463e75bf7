package execution

import "glasshouse.dev/glasshouse/core/receipt"

// Draft returns the receipt Run would begin for spec under id: subject,
// backend, host, limits and profiling mode filled in, no outcome, unsealed.
// A server stores it before the run starts so that a run lost to a crash
// can still be recorded, with its inputs, as an infrastructure failure.
// spec gets its defaults applied as in Run; it is not validated.
func (e *Engine) Draft(id string, spec Spec) *receipt.Receipt {
	spec = spec.WithDefaults()
	r := e.newReceipt(id, &spec, e.cfg.Backend.Capabilities())
	r.Profiling = receipt.Profiling{Mode: string(spec.Profile), Status: receipt.StatusOff, Collector: receipt.CollectorNone}
	return r
}
