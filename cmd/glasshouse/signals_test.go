//go:build !lean

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/core/training"
)

func decodeRecords(t *testing.T, out string) []training.Record {
	t.Helper()
	var recs []training.Record
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var r training.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

func TestSignals(t *testing.T) {
	dir := t.TempDir()
	clean := writeTestReceipt(t, dir, "clean.json", nil)
	netty := writeTestReceipt(t, dir, "net.json", withNetwork)
	expect := filepath.Join(dir, "expect.txt")
	os.WriteFile(expect, []byte("4\n"), 0o644)

	code, out, errOut := runCLI(t, "signals", "--expect-stdout", expect, clean, netty)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	recs := decodeRecords(t, out)
	if len(recs) != 2 || recs[0].ReceiptID != "run-clean.json" || !recs[0].Correctness.Passed || recs[0].Reward.Total != 1 {
		t.Fatalf("%+v", recs)
	}
	if recs[1].Behaviour.NetworkAttempts != 1 || recs[1].Reward.Total != 0.5 {
		t.Fatalf("%+v", recs[1])
	}

	// A JSONL file of compact receipts is read line by line.
	var stream bytes.Buffer
	for _, p := range []string{clean, netty, clean} {
		r, _ := receipt.Decode(mustRead(t, p))
		b, _ := receipt.MarshalCompact(r)
		stream.Write(b)
	}
	jsonl := filepath.Join(dir, "many.jsonl")
	os.WriteFile(jsonl, stream.Bytes(), 0o644)
	code, out, _ = runCLI(t, "signals", jsonl)
	if code != exitOK || len(decodeRecords(t, out)) != 3 {
		t.Fatalf("jsonl: %d %s", code, out)
	}

	// A bad line is reported with its number; the lines before it count.
	os.WriteFile(jsonl, append(stream.Bytes(), []byte("{\"x\":1}\n")...), 0o644)
	code, out, errOut = runCLI(t, "signals", jsonl)
	if code != exitFailure || len(decodeRecords(t, out)) != 3 || !strings.Contains(errOut, "many.jsonl:4:") {
		t.Fatalf("bad line: %d %s", code, errOut)
	}

	// --no-verify reads an edited receipt that verification rejects.
	edited := filepath.Join(dir, "edited.json")
	os.WriteFile(edited, bytes.Replace(mustRead(t, clean), []byte(`"duration_ms": 20`), []byte(`"duration_ms": 21`), 1), 0o644)
	if code, _, errOut := runCLI(t, "signals", edited); code != exitFailure || !strings.Contains(errOut, "digest") {
		t.Fatalf("edited receipt: %d %s", code, errOut)
	}
	if code, out, _ := runCLI(t, "signals", "--no-verify", edited); code != exitOK || decodeRecords(t, out)[0].Resources.DurationMS != 21 {
		t.Fatalf("--no-verify: %d %s", code, out)
	}

	reward := filepath.Join(dir, "reward.yaml")
	os.WriteFile(reward, []byte("version: 1\nweights:\n  network_attempts: -2\nclip: [-5, 5]\n"), 0o644)
	code, out, _ = runCLI(t, "signals", "--reward", reward, netty)
	if code != exitOK || decodeRecords(t, out)[0].Reward.Total != -2 {
		t.Fatalf("reward: %s", out)
	}
	code, out, _ = runCLI(t, "signals", "--test-exit", "1", clean)
	if r := decodeRecords(t, out)[0]; code != exitOK || r.Correctness.Source != "test" || r.Correctness.Passed {
		t.Fatalf("test exit: %+v", r.Correctness)
	}
	stdout := filepath.Join(dir, "stdout.txt")
	os.WriteFile(stdout, []byte("4\n"), 0o644)
	os.WriteFile(expect, []byte("4   \n\n"), 0o644)
	code, out, _ = runCLI(t, "signals", "--stdout", stdout, "--expect-stdout", expect, "--match", "trim", clean)
	if r := decodeRecords(t, out)[0]; code != exitOK || !r.Correctness.Passed {
		t.Fatalf("trim: %+v", r.Correctness)
	}
	code, out, _ = runCLI(t, "signals", "--test-receipt", netty, clean)
	if r := decodeRecords(t, out)[0]; code != exitOK || !r.Correctness.Passed {
		t.Fatalf("test receipt: %+v", r.Correctness)
	}
	code, out, _ = runCLI(t, "signals", "--grader", "out", clean)
	if r := decodeRecords(t, out)[0]; code != exitOK || r.Behaviour.GraderWrites != 1 {
		t.Fatalf("grader: %+v", r.Behaviour)
	}

	badReward := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badReward, []byte("version: 1\nweights:\n  network: -2\n"), 0o644)
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{}, "no receipt given"},
		{[]string{"--reward", badReward, clean}, badReward + ":3:3: unknown term"},
		{[]string{"--stdout", stdout, clean, netty}, "give exactly one receipt"},
		{[]string{"--test-exit", "0", "--test-receipt", clean, clean}, "not both"},
		{[]string{"--match", "fuzzy", clean}, `--match "fuzzy"`},
		{[]string{"--grader", "/x/[", clean}, "--grader"},
		{[]string{"--expect-stdout", filepath.Join(dir, "none"), clean}, "--expect-stdout"},
	} {
		code, _, errOut := runCLI(t, append([]string{"signals"}, tc.args...)...)
		if code != exitUsage || !strings.Contains(errOut, tc.err) {
			t.Errorf("%v: exit %d %s", tc.args, code, errOut)
		}
	}
}
