package main

import (
	"fmt"
	"io"
	"runtime"

	"glasshouse.dev/glasshouse/core/version"
)

func init() {
	register(command{name: "version", summary: "print the version", run: func(_ []string, stdout, _ io.Writer) int {
		fmt.Fprintf(stdout, "glasshouse %s (%s, %s/%s, receipt schema %s)\n",
			version.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH, version.ReceiptSchema)
		return exitOK
	}})
}
