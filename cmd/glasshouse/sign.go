//go:build !lean

package main

import (
	"crypto/ed25519"
	"fmt"
	"io"
	"os"

	"glasshouse.dev/glasshouse/core/attest"
	"glasshouse.dev/glasshouse/core/receipt"
)

func init() {
	register(command{name: "sign", summary: fullOnly["sign"], run: signCmd})
}

const signUsage = "usage: glasshouse sign --key KEY RECEIPT..."

// loadSigner reads a private key and returns a signer.
func loadSigner(path string) (receiptSigner, error) {
	priv, err := attest.LoadPrivateKey(path)
	if err != nil {
		return nil, err
	}
	return func(r *receipt.Receipt) ([]byte, error) { return attest.Sign(r, priv) }, nil
}

func signCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("sign")
	key := fs.String("key", "", "ed25519 private key (PEM), as written by glasshouse keygen")
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		if err != nil {
			fmt.Fprintln(stderr, signUsage)
			return fail(stderr, "sign", err)
		}
		return exitOK
	}
	if *key == "" || fs.NArg() == 0 {
		return fail(stderr, "sign", usageErrorf("want --key KEY and at least one receipt (%s)", signUsage))
	}
	priv, err := attest.LoadPrivateKey(*key)
	if err != nil {
		return fail(stderr, "sign", usageErrorf("--key: %v", err))
	}
	code := exitOK
	for _, name := range fs.Args() {
		if err := signFile(name, priv, stdout); err != nil {
			fmt.Fprintf(stderr, "glasshouse sign: %s\n", oneLine(err.Error()))
			code = exitFailure
		}
	}
	return code
}

func signFile(name string, priv ed25519.PrivateKey, stdout io.Writer) error {
	r, err := readVerifiedReceipt(name)
	if err != nil {
		return err
	}
	env, err := attest.Sign(r, priv)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	out := name + ".dsse.json"
	if err := os.WriteFile(out, env, 0o644); err != nil {
		return fmt.Errorf("write signed receipt: %w", err)
	}
	fmt.Fprintf(stdout, "%s: signed %s\n", name, out)
	return nil
}
