package receipt

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"
)

// generic is the reference path the direct encoder replaced: encoding/json
// over the struct, then the generic canonicaliser.
func generic(t testing.TB, r *Receipt) []byte {
	t.Helper()
	raw, err := marshalPlain(r)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Canonical(raw)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// genericDigest is the digest the generic path gives r (its digest member
// is ignored).
func genericDigest(t testing.TB, r *Receipt) string {
	t.Helper()
	raw, err := marshalPlain(r)
	if err != nil {
		t.Fatal(err)
	}
	d, err := ComputeDigest(raw)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// trickyStrings exercise every escaping rule of encoding/json.
var trickyStrings = []string{
	"", "a", "python3", "/usr/lib/python3.11/os.py", `"quoted"`, `back\slash`, "<html>&amp;",
	"\x00\x01\x07\b\t\n\v\f\r\x1b\x1f\x7f", "\u2028 line \u2029 para", "é ü 漢字 🐍", "\uFFFD",
	"\xff", "a\xffb", "\xc3", "\xe2\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xc0\xaf", "ok\xe2\x82\xacok",
	"tab\tand\u00a0nbsp", "/", "@abstract\x00name",
}

// fill sets every field reachable from v to a random value: strings from
// trickyStrings or random bytes, integers across their range, slices nil,
// empty or populated, pointers nil or set. Reflection finds the fields, so
// a field added to a receipt type is exercised without editing this test.
func fill(rng *rand.Rand, v reflect.Value, depth int) {
	if v.Type() == reflect.TypeFor[Timestamp]() {
		var t time.Time
		switch rng.IntN(4) {
		case 0: // zero time
		case 1:
			t = time.Unix(rng.Int64N(1<<40)-1<<39, rng.Int64N(1e9))
		default:
			t = time.Date(2026, 11, 28, 8, 0, 0, int(rng.Int64N(1e9)), time.FixedZone("x", 3600*(rng.IntN(24)-12)))
		}
		v.Set(reflect.ValueOf(Timestamp{t}))
		return
	}
	switch v.Kind() {
	case reflect.String:
		if rng.IntN(3) == 0 {
			b := make([]byte, rng.IntN(12))
			for i := range b {
				b[i] = byte(rng.IntN(256))
			}
			v.SetString(string(b))
		} else {
			v.SetString(trickyStrings[rng.IntN(len(trickyStrings))])
		}
	case reflect.Int, reflect.Int64:
		switch rng.IntN(5) {
		case 0:
			v.SetInt(0)
		case 1:
			v.SetInt(math.MinInt64)
		case 2:
			v.SetInt(math.MaxInt64)
		default:
			v.SetInt(rng.Int64N(1<<20) - 1<<19)
		}
	case reflect.Bool:
		v.SetBool(rng.IntN(2) == 0)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(rng, v.Field(i), depth+1)
			}
		}
	case reflect.Slice:
		switch n := rng.IntN(5); {
		case n == 0:
			v.SetZero()
		case n == 1:
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		default:
			s := reflect.MakeSlice(v.Type(), n-1, n-1)
			for i := range n - 1 {
				fill(rng, s.Index(i), depth+1)
			}
			v.Set(s)
		}
	case reflect.Pointer:
		if rng.IntN(3) == 0 {
			v.SetZero()
			return
		}
		p := reflect.New(v.Type().Elem())
		fill(rng, p.Elem(), depth+1)
		v.Set(p)
	default:
		panic("fill: unhandled kind " + v.Kind().String() + " of " + v.Type().String() + ": teach fill and appendReceipt about it")
	}
}

// TestCanonicalEncoderMatchesGeneric checks the direct encoder against the
// generic path on thousands of random receipts with every field set, and
// the digest Seal computes against ComputeDigest. If it fails after a field
// was added to a receipt type, add the field to encode.go.
func TestCanonicalEncoderMatchesGeneric(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		var r Receipt
		fill(rng, reflect.ValueOf(&r).Elem(), 0)
		want := generic(t, &r)
		got := appendReceipt(nil, &r, true)
		if !bytes.Equal(got, want) {
			t.Fatalf("receipt %d: direct encoding differs from the generic one:\n got %s\nwant %s", i, got, want)
		}
		if d, want := digestString(appendReceipt(nil, &r, false)), genericDigest(t, &r); d != want {
			t.Fatalf("receipt %d: digest %s, generic %s", i, d, want)
		}
		var ind bytes.Buffer
		if err := json.Indent(&ind, want, "", "  "); err != nil {
			t.Fatal(err)
		}
		if got := appendIndented(nil, want); !bytes.Equal(got, ind.Bytes()) {
			t.Fatalf("receipt %d: indentation differs from json.Indent:\n got %s\nwant %s", i, got, ind.Bytes())
		}
	}
}

// TestSealedFormsVerifyOnBothPaths seals random receipts and checks that
// both stored forms pass the fast and the generic verification, and that
// Decode returns what Parse does.
func TestSealedFormsVerifyOnBothPaths(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 500 {
		var r Receipt
		fill(rng, reflect.ValueOf(&r).Elem(), 0)
		if err := Seal(&r); err != nil {
			t.Fatal(err)
		}
		for _, enc := range []func(*Receipt) ([]byte, error){Marshal, MarshalCompact} {
			doc, err := enc(&r)
			if err != nil {
				t.Fatal(err)
			}
			if err := verifyGeneric(doc); err != nil {
				t.Fatalf("receipt %d: generic verification: %v\n%s", i, err, doc)
			}
			got, ok := verifyTyped(doc)
			if !ok {
				// Only receipts this build cannot round-trip through its
				// own types may take the slow path: strings with invalid
				// UTF-8 (replaced when sealed) or times Parse refuses.
				if roundTrips(reflect.ValueOf(r)) {
					t.Fatalf("receipt %d: a round-trippable receipt missed the fast path\n%s", i, doc)
				}
				continue
			}
			want, err := Parse(doc)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("receipt %d: Decode and Parse differ", i)
			}
		}
	}
}

// roundTrips reports whether every string under v is valid UTF-8 and every
// timestamp is one Parse accepts back (years 0 to 9999).
func roundTrips(v reflect.Value) bool {
	if v.Type() == reflect.TypeFor[Timestamp]() {
		y := v.Interface().(Timestamp).UTC().Year()
		return y >= 0 && y <= 9999
	}
	switch v.Kind() {
	case reflect.String:
		return utf8.ValidString(v.String())
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() && !roundTrips(v.Field(i)) {
				return false
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			if !roundTrips(v.Index(i)) {
				return false
			}
		}
	case reflect.Pointer:
		return v.IsNil() || roundTrips(v.Elem())
	}
	return true
}

// FuzzCanonicalEncoder parses arbitrary documents into a Receipt and checks
// the direct encoder, its digest and its indentation against the generic
// path.
func FuzzCanonicalEncoder(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 8 {
		var r Receipt
		fill(rng, reflect.ValueOf(&r).Elem(), 0)
		raw, err := marshalPlain(&r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	f.Add([]byte(`{"files":[{"path":"/a\u2028\ud800b","op":"read","ok":true,"errno":"","count":-0}],"policy":null,"processes":null}`))
	f.Add([]byte(`{"subject":{"argv":["\u0000<>&\"\\"],"files":[]},"backend":{"notes":[]},"output":{"files":[]}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		var r Receipt
		if err := json.Unmarshal(doc, &r); err != nil {
			return
		}
		want := generic(t, &r)
		got := appendReceipt(nil, &r, true)
		if !bytes.Equal(got, want) {
			t.Fatalf("direct encoding differs from the generic one:\n got %s\nwant %s", got, want)
		}
		if d, want := digestString(appendReceipt(nil, &r, false)), genericDigest(t, &r); d != want {
			t.Fatalf("digest %s, generic %s", d, want)
		}
		var ind bytes.Buffer
		if err := json.Indent(&ind, want, "", "  "); err != nil {
			t.Fatal(err)
		}
		if got := appendIndented(nil, want); !bytes.Equal(got, ind.Bytes()) {
			t.Fatalf("indentation differs from json.Indent:\n got %s\nwant %s", got, ind.Bytes())
		}
	})
}

// FuzzVerify checks that the fast verification never accepts a document
// the generic one rejects, and that Verify agrees with the generic path on
// every input.
func FuzzVerify(f *testing.F) {
	rng := rand.New(rand.NewPCG(7, 8))
	for range 4 {
		var r Receipt
		fill(rng, reflect.ValueOf(&r).Elem(), 0)
		if err := Seal(&r); err != nil {
			f.Fatal(err)
		}
		doc, _ := Marshal(&r)
		f.Add(doc)
		doc, _ = MarshalCompact(&r)
		f.Add(doc)
	}
	f.Add([]byte(`{"digest":"sha256:00"}`))
	f.Add([]byte(`{"id":"a\u00e9\n","files":[{"path":"/x","ok":true,"count":-0}],"subject":{"argv":null},"policy":null,"digest":"x"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		_, fast := verifyTyped(doc)
		gerr := verifyGeneric(doc)
		if fast && gerr != nil {
			t.Fatalf("fast path accepted a document the generic check rejects (%v):\n%s", gerr, doc)
		}
		if err := Verify(doc); (err == nil) != (gerr == nil) {
			t.Fatalf("Verify = %v, generic = %v", err, gerr)
		}
		// Parse returns what encoding/json gives.
		var plain Receipt
		jerr := json.Unmarshal(doc, &plain)
		want, perr := Parse(doc)
		if (jerr == nil) != (perr == nil) || (perr == nil && !reflect.DeepEqual(want, &plain)) {
			t.Fatalf("Parse = %+v, %v; encoding/json = %+v, %v", want, perr, &plain, jerr)
		}
		// Decode behaves as it did before the fast path: verify, then
		// Parse, and returns what Parse returns.
		got, err := Decode(doc)
		if (err == nil) != (gerr == nil && perr == nil) {
			t.Fatalf("Decode = %v, generic = %v, Parse = %v", err, gerr, perr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("Decode and Parse differ:\n%+v\n%+v", got, want)
		}
		// The typed parser, on any input it accepts, must agree with
		// encoding/json.
		if r, ok := parseTyped(doc); ok {
			var want Receipt
			if err := json.Unmarshal(doc, &want); err != nil {
				t.Fatalf("parseTyped accepted what encoding/json rejects (%v):\n%s", err, doc)
			}
			if !reflect.DeepEqual(r, &want) {
				t.Fatalf("parseTyped and encoding/json differ:\n%+v\n%+v", r, &want)
			}
		}
	})
}

// FuzzIndent checks the indenter against json.Indent on the canonical form
// of arbitrary JSON.
func FuzzIndent(f *testing.F) {
	f.Add([]byte(`{"a":[],"b":{},"c":[1,{"d":"x\"y\\","e":[[]]}],"f":"{[,:]}"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`"s"`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		c, err := Canonical(doc)
		if err != nil {
			return
		}
		var want bytes.Buffer
		if err := json.Indent(&want, c, "", "  "); err != nil {
			t.Fatal(err)
		}
		if got := appendIndented(nil, c); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("indentation differs from json.Indent:\n got %s\nwant %s", got, want.Bytes())
		}
		if !equalIndented(want.Bytes(), c) {
			t.Fatal("equalIndented rejects the indented form")
		}
	})
}
