// Package schema checks documents against the JSON Schema (draft 2020-12)
// of receipt v1.
//
// It lives apart from package receipt so that programs which only write
// receipts (the CLI's run path) do not link the validator, whose package
// initialisation every start of such a program would pay.
package schema

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/google/jsonschema-go/jsonschema"

	"glasshouse.dev/glasshouse/core/receipt"
)

// JSON is the schema document.
//
//go:embed receipt-v1.schema.json
var JSON []byte

// ErrSchema means a document does not conform to the receipt schema.
var ErrSchema = errors.New("receipt does not match schema")

// resolved is compiled on first use.
var resolved = sync.OnceValues(func() (*jsonschema.Resolved, error) {
	var s jsonschema.Schema
	if err := json.Unmarshal(JSON, &s); err != nil {
		return nil, fmt.Errorf("parse receipt schema: %w", err)
	}
	rs, err := s.Resolve(nil)
	if err != nil {
		return nil, fmt.Errorf("resolve receipt schema: %w", err)
	}
	return rs, nil
})

// Validate checks doc against the receipt v1 schema. The error wraps
// ErrSchema and says where the document fails, or wraps
// receipt.ErrMalformed when doc is not one JSON value within
// receipt.MaxSize.
func Validate(doc []byte) error {
	rs, err := resolved()
	if err != nil {
		return err
	}
	if len(doc) > receipt.MaxSize {
		return fmt.Errorf("%w: %d bytes exceeds the %d byte limit", receipt.ErrMalformed, len(doc), receipt.MaxSize)
	}
	// Plain decoding: numbers become float64, the validator's kind, and
	// anything after the value is an error.
	var v any
	if err := json.Unmarshal(doc, &v); err != nil {
		return fmt.Errorf("%w: %v", receipt.ErrMalformed, err)
	}
	if err := rs.Validate(v); err != nil {
		return fmt.Errorf("%w: %v", ErrSchema, err)
	}
	return nil
}
