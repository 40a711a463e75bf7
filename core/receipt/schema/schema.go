// Package schema checks documents against the JSON Schema (draft 2020-12)
// of receipt v1.
//
// It lives apart from package receipt so that programs which only write
// receipts (the CLI's run path) do not link the validator, whose package
// initialisation every start of such a program would pay.
package schema

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("%w: %v", receipt.ErrMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: trailing data after the object", receipt.ErrMalformed)
	}
	if err := rs.Validate(plain(v)); err != nil {
		return fmt.Errorf("%w: %v", ErrSchema, err)
	}
	return nil
}

// plain converts json.Number values, which the validator does not know,
// into float64, as encoding/json would have decoded them.
func plain(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = plain(e)
		}
	case []any:
		for i, e := range x {
			x[i] = plain(e)
		}
	case json.Number:
		f, _ := x.Float64()
		return f
	}
	return v
}
