// Package server is Glasshouse's HTTP API: POST /run and POST /runs execute
// code on a sandbox backend and answer with the result and a receipt URL,
// GET /receipts serves and lists sealed receipts per tenant, GET /health
// and GET /metrics report on the server.
//
// Every request is bounded before anything runs: the body size, strict
// JSON (unknown or duplicate fields, invalid UTF-8, lone surrogates and
// trailing data are refused), then every field against Limits, with errors
// that name the field and the limit. Runs are admitted through a bounded
// queue (429 with Retry-After when it is full), recorded in the store before
// the workload starts and completed after, so a server that dies mid-run
// recovers each lost run as an infrastructure failure when it restarts.
//
// A Server is safe for concurrent use. Serve owns the listener and returns
// after a graceful shutdown; the caller still closes the store and the
// profiler it passed in Config.
package server
