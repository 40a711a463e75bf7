package receipt

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Errors returned by Verify and Decode. Test for them with errors.Is.
var (
	// ErrMalformed means the bytes are not a JSON object.
	ErrMalformed = errors.New("receipt is not a JSON object")
	// ErrNoDigest means the receipt carries no digest.
	ErrNoDigest = errors.New("receipt has no digest")
	// ErrDigestMismatch means the content does not hash to the digest it
	// carries: some byte was changed after sealing.
	ErrDigestMismatch = errors.New("receipt digest does not match its content")
	// ErrNotCanonical means the bytes are not in either encoding Marshal
	// produces, so they were edited even if the content still hashes.
	ErrNotCanonical = errors.New("receipt is not in canonical form")
)

// MaxSize bounds the encoded size of a receipt that Decode and Verify accept.
// The aggregator caps sections well below it.
const MaxSize = 64 << 20

// Canonical returns the canonical JSON of any JSON document: object keys
// sorted bytewise, no insignificant whitespace, numbers kept exactly as
// written and no HTML escaping. It is the byte string digests are taken
// over, so it must never change within v1.
func Canonical(doc []byte) ([]byte, error) {
	v, err := decodeGeneric(doc)
	if err != nil {
		return nil, err
	}
	return encodeGeneric(v)
}

// Marshal returns the stored form of r: its canonical JSON indented by two
// spaces and ending in a newline. r must have been sealed.
func Marshal(r *Receipt) ([]byte, error) {
	c := appendReceipt(make([]byte, 0, encodedSizeHint(r)), r, true)
	out := appendIndented(make([]byte, 0, len(c)*3/2), c)
	return append(out, '\n'), nil
}

// MarshalCompact returns the canonical JSON of r without indentation,
// followed by a newline: one receipt per line, as in NDJSON streams.
func MarshalCompact(r *Receipt) ([]byte, error) {
	c := appendReceipt(make([]byte, 0, encodedSizeHint(r)), r, true)
	return append(c, '\n'), nil
}

// ComputeDigest returns "sha256:<hex>" over the canonical JSON of the
// receipt document without its "digest" member.
func ComputeDigest(doc []byte) (string, error) {
	v, err := decodeGeneric(doc)
	if err != nil {
		return "", err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return "", ErrMalformed
	}
	return digestOf(obj)
}

// Verify checks that doc is a sealed receipt nobody has edited: it must be in
// one of the forms Marshal or MarshalCompact produce, and its content must
// hash to the digest it carries. It does not check the JSON Schema; see
// schema.Validate.
func Verify(doc []byte) error {
	if len(doc) > MaxSize {
		return fmt.Errorf("%w: %d bytes exceeds the %d byte limit", ErrMalformed, len(doc), MaxSize)
	}
	if _, ok := verifyTyped(doc); ok {
		return nil
	}
	return verifyGeneric(doc)
}

// verifyTyped is Verify's fast path for receipts this build can represent:
// it parses doc into a Receipt (parseTyped, which gives up on anything the
// canonical encoder would not write), encodes that canonically, and accepts doc
// only if doc is exactly that encoding (compact or indented) and the
// encoding without the digest hashes to the digest. Such a doc is in the
// image of Canonical, so the generic check accepts it too; anything else
// (an edit, a field this build does not know, a tampered digest) goes to
// verifyGeneric, which decides and names the error.
func verifyTyped(doc []byte) (*Receipt, bool) {
	r, ok := parseTyped(doc)
	if !ok || r.Digest == "" {
		return nil, false
	}
	body := bytes.TrimSuffix(doc, []byte("\n"))
	buf := appendReceipt(make([]byte, 0, len(body)), r, true)
	if !bytes.Equal(body, buf) && !equalIndented(body, buf) {
		return nil, false
	}
	buf = appendReceipt(buf[:0], r, false)
	if r.Digest != digestString(buf) {
		return nil, false
	}
	return r, true
}

// verifyGeneric checks doc through the generic canonical form; it accepts
// every receipt Verify accepts, including ones with fields unknown to this
// build, and says why it rejects one.
func verifyGeneric(doc []byte) error {
	v, err := decodeGeneric(doc)
	if err != nil {
		return err
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return ErrMalformed
	}
	stored, ok := obj["digest"].(string)
	if !ok || stored == "" {
		return ErrNoDigest
	}
	want, err := digestOf(obj)
	if err != nil {
		return err
	}
	if stored != want {
		return fmt.Errorf("%w: carries %s, content hashes to %s", ErrDigestMismatch, stored, want)
	}
	canon, err := encodeGeneric(obj)
	if err != nil {
		return err
	}
	body := bytes.TrimSuffix(doc, []byte("\n"))
	if bytes.Equal(body, canon) || equalIndented(body, canon) {
		return nil
	}
	return ErrNotCanonical
}

// Decode verifies doc (see Verify) and parses it into a Receipt.
func Decode(doc []byte) (*Receipt, error) {
	if len(doc) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d byte limit", ErrMalformed, len(doc), MaxSize)
	}
	if r, ok := verifyTyped(doc); ok {
		return r, nil
	}
	if err := verifyGeneric(doc); err != nil {
		return nil, err
	}
	return Parse(doc)
}

// Parse parses doc into a Receipt without verifying it. Use it for receipts
// that are known to be unsealed or whose integrity is checked elsewhere.
func Parse(doc []byte) (*Receipt, error) {
	if len(doc) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d byte limit", ErrMalformed, len(doc), MaxSize)
	}
	// The typed parser reads what the canonical encoder writes, several
	// times faster; anything else goes to encoding/json, whose result it
	// equals whenever it accepts (FuzzVerify).
	if r, ok := parseTyped(doc); ok {
		return r, nil
	}
	var r Receipt
	if err := json.Unmarshal(doc, &r); err != nil {
		return nil, fmt.Errorf("parse receipt: %w", err)
	}
	return &r, nil
}

// SHA256Hex returns the lowercase hex SHA-256 of b, the form receipts use
// for content hashes.
func SHA256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func marshalPlain(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode receipt: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

func digestOf(obj map[string]any) (string, error) {
	without := make(map[string]any, len(obj))
	for k, v := range obj {
		if k != "digest" {
			without[k] = v
		}
	}
	c, err := encodeGeneric(without)
	if err != nil {
		return "", err
	}
	return digestString(c), nil
}

// digestString returns "sha256:<hex>" of canonical bytes.
func digestString(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	var out [7 + 2*sha256.Size]byte
	copy(out[:], "sha256:")
	hex.Encode(out[7:], sum[:])
	return string(out[:])
}

func decodeGeneric(doc []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after the object", ErrMalformed)
	}
	return v, nil
}

// encodeGeneric encodes a value produced by decodeGeneric. encoding/json
// sorts map keys and writes json.Number verbatim, which is exactly the
// canonical form.
func encodeGeneric(v any) ([]byte, error) {
	return marshalPlain(v)
}
