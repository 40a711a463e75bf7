// Package training derives reinforcement-learning signals from receipts.
//
// Derive turns one receipt, plus what the caller knows about the run (its
// stdout, an expected stdout or the result of a test command, grader paths,
// the workspace), into a Record: correctness, the failure class, behaviour
// counts (network attempts, writes outside the workspace, process spawns,
// reads of grader files, sleeping until the timeout), resource use, and a
// scalar reward with its breakdown under a RewardSpec. Records are written
// one JSON object per line (WriteJSONL); their field names are a public
// interface, versioned by Record.Schema.
//
// Runs that failed for infrastructure reasons (outcome.failure
// "infrastructure", or a test run that failed so) are marked mask: true
// with a zero reward, so trainers drop them instead of punishing the model.
//
// Everything here is a pure function of its inputs: no clock, no I/O
// besides LoadReward, no map-order dependence. Functions are safe for
// concurrent use; a RewardSpec is immutable once parsed.
package training
