package main

// The backends this server can run on; each registers itself by name.
import (
	_ "glasshouse.dev/glasshouse/backend/process"
	_ "glasshouse.dev/glasshouse/backend/qemu"
)
