// Package version holds the version constants that Glasshouse stamps into
// every receipt, health report and CLI banner.
//
// Version is set at link time for releases
// (-ldflags "-X glasshouse.dev/glasshouse/core/version.Version=v1.2.3");
// development builds report "dev".
package version

// Version is the Glasshouse release, "dev" for development builds.
var Version = "dev"

// ReceiptSchema identifies the receipt grammar this build writes.
const ReceiptSchema = "glasshouse.dev/receipt/v1"

// ReceiptPredicateType is the in-toto predicate type of a signed receipt.
const ReceiptPredicateType = "https://glasshouse.dev/receipt/v1"
