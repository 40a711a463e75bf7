//go:build !lean

package main

import (
	"fmt"
	"io"
	"os"

	"glasshouse.dev/glasshouse/core/attest"
)

func init() {
	register(command{name: "verify", summary: fullOnly["verify"], run: verifyCmd})
}

const verifyUsage = "usage: glasshouse verify --key PUB FILE..."

// verifyCmd checks each signed receipt: envelope, signature, statement,
// receipt digest and subjects. Exit 0 when all verify, 1 when one does not,
// 2 for usage errors.
func verifyCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("verify")
	key := fs.String("key", "", "ed25519 public key (PEM) of the signer")
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		if err != nil {
			fmt.Fprintln(stderr, verifyUsage)
			return fail(stderr, "verify", err)
		}
		return exitOK
	}
	if *key == "" {
		return fail(stderr, "verify", usageErrorf("--key is required; for an unsigned receipt use 'glasshouse receipt verify FILE' (%s)", verifyUsage))
	}
	if fs.NArg() == 0 {
		return fail(stderr, "verify", usageErrorf("no file to verify (%s)", verifyUsage))
	}
	pub, err := attest.LoadPublicKey(*key)
	if err != nil {
		return fail(stderr, "verify", usageErrorf("--key: %v", err))
	}
	id, _ := attest.KeyID(pub)
	code := exitOK
	for _, name := range fs.Args() {
		env, err := readReceiptEnvelope(name)
		if err != nil {
			fmt.Fprintf(stderr, "glasshouse verify: %s\n", oneLine(err.Error()))
			code = exitFailure
			continue
		}
		r, err := attest.Verify(env, pub)
		if err != nil {
			fmt.Fprintf(stderr, "glasshouse verify: %s: FAILED: %s\n", name, oneLine(err.Error()))
			code = exitFailure
			continue
		}
		fmt.Fprintf(stdout, "%s: OK: receipt %s (%s), signed by %s\n", name, r.ID, r.Digest, id)
	}
	return code
}

// readReceiptEnvelope reads a signed receipt, refusing files larger than
// any envelope Verify accepts.
func readReceiptEnvelope(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, attest.MaxEnvelopeBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > attest.MaxEnvelopeBytes {
		return nil, fmt.Errorf("%s: larger than the %d byte limit for signed receipts", name, attest.MaxEnvelopeBytes)
	}
	return b, nil
}
