// Package attest signs and verifies receipts.
//
// A signed receipt is an in-toto Statement v1 whose predicate is the
// receipt (predicateType https://glasshouse.dev/receipt/v1) and whose
// subjects are the content hashes of what ran: the submitted code, the
// command line and the input files. The statement is the payload of a DSSE
// envelope (payloadType application/vnd.in-toto+json) signed with ed25519.
//
// Sign writes the envelope in canonical JSON (keys sorted, no whitespace,
// one trailing newline) and Verify accepts only that form, so changing any
// byte of a signed file — the signature, the key id, the payload or the
// envelope around them — makes Verify fail with a sentinel error that says
// which check failed.
//
// Keys are PEM files: PKCS #8 "PRIVATE KEY" and PKIX "PUBLIC KEY". The
// functions are safe for concurrent use and hold no state.
package attest
