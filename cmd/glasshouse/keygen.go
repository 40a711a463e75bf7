//go:build !lean

package main

import (
	"fmt"
	"io"

	"glasshouse.dev/glasshouse/core/attest"
)

func init() {
	register(command{name: "keygen", summary: fullOnly["keygen"], run: keygenCmd})
}

func keygenCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("keygen")
	prefix := fs.String("out", "glasshouse", "write the keys to PREFIX.key (private, mode 0600) and PREFIX.pub")
	if help, err := parseFlags(fs, args, stdout); help || err != nil {
		if err != nil {
			return fail(stderr, "keygen", err)
		}
		return exitOK
	}
	if fs.NArg() != 0 || *prefix == "" {
		return fail(stderr, "keygen", usageErrorf("usage: glasshouse keygen [--out PREFIX]"))
	}
	pub, priv, err := attest.GenerateKey()
	if err != nil {
		return fail(stderr, "keygen", err)
	}
	if err := attest.WriteKeys(*prefix, pub, priv); err != nil {
		return fail(stderr, "keygen", err)
	}
	id, _ := attest.KeyID(pub)
	fmt.Fprintf(stdout, "private key %s%s\npublic key  %s%s\nkey id      %s\n",
		*prefix, attest.PrivateKeySuffix, *prefix, attest.PublicKeySuffix, id)
	return exitOK
}
