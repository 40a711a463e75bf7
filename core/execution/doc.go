// Package execution is Glasshouse's engine: it runs a Spec on a Backend and
// turns what happened into a sealed receipt.
//
// A Backend prepares an Instance from a Spec; the instance has Start, Wait
// and Cleanup. Optional abilities are small interfaces checked at run time:
// Targeted (a host cgroup a collector can observe), SelfProfiled (a guest
// collector), Versioned. Backends register themselves by name (Register) and
// are built with NewBackend; Strongest picks the most isolating one that
// works on this host.
//
// The Engine is safe for concurrent use. Each Run owns its instance and
// always cleans it up before returning.
package execution
