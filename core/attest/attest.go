package attest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/core/version"
)

// Identifiers of the signed form.
const (
	// PayloadType is the DSSE payload type of an in-toto statement.
	PayloadType = "application/vnd.in-toto+json"
	// StatementType is the in-toto Statement v1 type.
	StatementType = "https://in-toto.io/Statement/v1"
	// PredicateType is the predicate type of a receipt.
	PredicateType = version.ReceiptPredicateType
)

// Subject names for the code and the command line; input files are named
// "files/" + their workspace path.
const (
	SubjectCode = "code"
	SubjectArgv = "argv"
	filePrefix  = "files/"
)

// MaxEnvelopeBytes bounds the envelope Verify reads: a receipt of the
// largest size receipt accepts, base64-encoded inside a statement.
const MaxEnvelopeBytes = receipt.MaxSize/3*4 + 1<<20

// Errors Verify and Sign return. Test for them with errors.Is.
var (
	// ErrMalformed means the bytes are not a DSSE envelope in the form
	// Sign writes: not JSON, not canonical, unknown or missing members, or
	// bad base64.
	ErrMalformed = errors.New("malformed envelope")
	// ErrPayloadType means the envelope does not carry an in-toto
	// statement.
	ErrPayloadType = errors.New("wrong payload type")
	// ErrSignature means no signature in the envelope verifies with the
	// given key over the payload.
	ErrSignature = errors.New("signature does not verify")
	// ErrStatement means the payload is not an in-toto Statement v1 with a
	// receipt predicate.
	ErrStatement = errors.New("not a receipt statement")
	// ErrReceipt means the predicate is not a sealed receipt whose content
	// matches its digest (or, for Sign, the receipt was changed after it
	// was sealed).
	ErrReceipt = errors.New("invalid receipt")
	// ErrSubjectMismatch means the statement's subjects are not the hashes
	// of the code and inputs the receipt records.
	ErrSubjectMismatch = errors.New("statement subject does not match the receipt")
	// ErrKey means a key is missing, of the wrong type or size, or
	// unreadable.
	ErrKey = errors.New("bad key")
)

// Statement is an in-toto Statement v1 carrying a receipt.
type Statement struct {
	Type          string          `json:"_type"`
	Subject       []Subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// Subject is an in-toto resource descriptor: a name and its digests.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Subjects returns the statement subjects of r: its code (when it was
// submitted as code), its command line (sha256 of the JSON array of argv)
// and each input file, in that order.
func Subjects(r *receipt.Receipt) ([]Subject, error) {
	var out []Subject
	if r.Subject.CodeSHA256 != "" {
		if !isSHA256(r.Subject.CodeSHA256) {
			return nil, fmt.Errorf("%w: subject.code_sha256 %q is not a sha256", ErrReceipt, r.Subject.CodeSHA256)
		}
		out = append(out, Subject{Name: SubjectCode, Digest: map[string]string{"sha256": r.Subject.CodeSHA256}})
	}
	argv := r.Subject.Argv
	if argv == nil {
		argv = []string{}
	}
	raw, err := json.Marshal(argv)
	if err != nil {
		return nil, fmt.Errorf("%w: encode argv: %v", ErrReceipt, err)
	}
	sum := sha256.Sum256(raw)
	out = append(out, Subject{Name: SubjectArgv, Digest: map[string]string{"sha256": hex.EncodeToString(sum[:])}})
	files := slices.Clone(r.Subject.Files)
	slices.SortFunc(files, func(a, b receipt.Artifact) int {
		if a.Path != b.Path {
			if a.Path < b.Path {
				return -1
			}
			return 1
		}
		return 0
	})
	for _, f := range files {
		if !isSHA256(f.SHA256) {
			return nil, fmt.Errorf("%w: subject file %q has no sha256", ErrReceipt, f.Path)
		}
		out = append(out, Subject{Name: filePrefix + f.Path, Digest: map[string]string{"sha256": f.SHA256}})
	}
	return out, nil
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Sign returns the DSSE envelope of r signed with priv, in canonical JSON
// ending in a newline. r must be sealed and unchanged since: Sign checks
// its digest (ErrReceipt otherwise).
func Sign(r *receipt.Receipt, priv ed25519.PrivateKey) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: ed25519 private key must be %d bytes, got %d", ErrKey, ed25519.PrivateKeySize, len(priv))
	}
	if r == nil {
		return nil, fmt.Errorf("%w: no receipt", ErrReceipt)
	}
	pred, err := receipt.MarshalCompact(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrReceipt, err)
	}
	pred = bytes.TrimSuffix(pred, []byte("\n"))
	if err := receipt.Verify(pred); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrReceipt, err)
	}
	subjects, err := Subjects(r)
	if err != nil {
		return nil, err
	}
	stmt, err := json.Marshal(Statement{Type: StatementType, Subject: subjects, PredicateType: PredicateType, Predicate: pred})
	if err != nil {
		return nil, fmt.Errorf("encode statement: %w", err)
	}
	if stmt, err = receipt.Canonical(stmt); err != nil {
		return nil, fmt.Errorf("encode statement: %w", err)
	}
	signer, err := dsse.NewEnvelopeSigner(&signerVerifier{priv: priv, pub: priv.Public().(ed25519.PublicKey)})
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	env, err := signer.SignPayload(context.Background(), PayloadType, stmt)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	raw, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("encode envelope: %w", err)
	}
	out, err := receipt.Canonical(raw)
	if err != nil {
		return nil, fmt.Errorf("encode envelope: %w", err)
	}
	return append(out, '\n'), nil
}

// Verify checks a signed receipt and returns the receipt. In order it
// checks that the envelope is in the form Sign writes (ErrMalformed), that
// it carries an in-toto statement (ErrPayloadType), that a signature by
// pub verifies over the payload (ErrSignature), that the payload is a
// receipt statement (ErrStatement), that the receipt's content matches its
// digest (ErrReceipt) and that the subjects are the receipt's
// (ErrSubjectMismatch).
func Verify(envelope []byte, pub ed25519.PublicKey) (*receipt.Receipt, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: ed25519 public key must be %d bytes, got %d", ErrKey, ed25519.PublicKeySize, len(pub))
	}
	env, payload, err := parseEnvelope(envelope)
	if err != nil {
		return nil, err
	}
	if env.PayloadType != PayloadType {
		return nil, fmt.Errorf("%w: %q, want %q", ErrPayloadType, env.PayloadType, PayloadType)
	}
	ev, err := dsse.NewEnvelopeVerifier(&signerVerifier{pub: pub})
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	if _, err := ev.Verify(context.Background(), env); err != nil {
		id, _ := KeyID(pub)
		return nil, fmt.Errorf("%w: no valid signature by key %s", ErrSignature, id)
	}
	var st Statement
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStatement, err)
	}
	switch {
	case st.Type != StatementType:
		return nil, fmt.Errorf("%w: _type %q, want %q", ErrStatement, st.Type, StatementType)
	case st.PredicateType != PredicateType:
		return nil, fmt.Errorf("%w: predicateType %q, want %q", ErrStatement, st.PredicateType, PredicateType)
	case len(st.Predicate) == 0:
		return nil, fmt.Errorf("%w: no predicate", ErrStatement)
	}
	r, err := receipt.Decode(st.Predicate)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrReceipt, err)
	}
	want, err := Subjects(r)
	if err != nil {
		return nil, err
	}
	if !equalSubjects(st.Subject, want) {
		return nil, fmt.Errorf("%w: the statement names %d subjects, the receipt %d, or their names or digests differ", ErrSubjectMismatch, len(st.Subject), len(want))
	}
	return r, nil
}

// parseEnvelope decodes an envelope strictly: canonical JSON, exactly the
// DSSE members, canonical standard base64.
func parseEnvelope(b []byte) (*dsse.Envelope, []byte, error) {
	if len(b) > MaxEnvelopeBytes {
		return nil, nil, fmt.Errorf("%w: %d bytes exceeds the limit of %d", ErrMalformed, len(b), MaxEnvelopeBytes)
	}
	body := bytes.TrimSuffix(b, []byte("\n"))
	canon, err := receipt.Canonical(body)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if !bytes.Equal(canon, body) {
		return nil, nil, fmt.Errorf("%w: not in canonical form (was it edited?)", ErrMalformed)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(body, &members); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := exactKeys(members, "payload", "payloadType", "signatures"); err != nil {
		return nil, nil, err
	}
	var env dsse.Envelope
	if err := json.Unmarshal(members["payloadType"], &env.PayloadType); err != nil {
		return nil, nil, fmt.Errorf("%w: payloadType: %v", ErrMalformed, err)
	}
	if err := json.Unmarshal(members["payload"], &env.Payload); err != nil {
		return nil, nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	payload, err := strictBase64(env.Payload)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	var sigs []map[string]json.RawMessage
	if err := json.Unmarshal(members["signatures"], &sigs); err != nil {
		return nil, nil, fmt.Errorf("%w: signatures: %v", ErrMalformed, err)
	}
	if len(sigs) == 0 {
		return nil, nil, fmt.Errorf("%w: no signatures", ErrMalformed)
	}
	for i, s := range sigs {
		if err := exactKeys(s, "keyid", "sig"); err != nil {
			return nil, nil, fmt.Errorf("signature %d: %w", i, err)
		}
		var sig dsse.Signature
		if json.Unmarshal(s["keyid"], &sig.KeyID) != nil || json.Unmarshal(s["sig"], &sig.Sig) != nil {
			return nil, nil, fmt.Errorf("%w: signature %d: keyid and sig must be strings", ErrMalformed, i)
		}
		if _, err := strictBase64(sig.Sig); err != nil {
			return nil, nil, fmt.Errorf("%w: signature %d: %v", ErrMalformed, i, err)
		}
		env.Signatures = append(env.Signatures, sig)
	}
	return &env, payload, nil
}

func exactKeys(m map[string]json.RawMessage, keys ...string) error {
	if len(m) != len(keys) {
		return fmt.Errorf("%w: want exactly the members %v", ErrMalformed, keys)
	}
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			return fmt.Errorf("%w: missing member %q", ErrMalformed, k)
		}
	}
	return nil
}

// strictBase64 decodes standard padded base64 and rejects any other
// spelling of the same bytes (non-zero padding bits, line breaks).
func strictBase64(s string) ([]byte, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, err
	}
	if base64.StdEncoding.EncodeToString(b) != s {
		return nil, errors.New("not canonical base64")
	}
	return b, nil
}

func equalSubjects(a, b []Subject) bool {
	return slices.EqualFunc(a, b, func(x, y Subject) bool {
		if x.Name != y.Name || len(x.Digest) != len(y.Digest) {
			return false
		}
		for k, v := range x.Digest {
			if y.Digest[k] != v {
				return false
			}
		}
		return true
	})
}

// signerVerifier adapts an ed25519 key to dsse.Signer and dsse.Verifier.
type signerVerifier struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

func (s *signerVerifier) Sign(_ context.Context, data []byte) ([]byte, error) {
	return ed25519.Sign(s.priv, data), nil
}

func (s *signerVerifier) Verify(_ context.Context, data, sig []byte) error {
	if !ed25519.Verify(s.pub, data, sig) {
		return ErrSignature
	}
	return nil
}

func (s *signerVerifier) KeyID() (string, error) { return KeyID(s.pub) }

func (s *signerVerifier) Public() crypto.PublicKey { return s.pub }
