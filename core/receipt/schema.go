package receipt

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/google/jsonschema-go/jsonschema"
)

// SchemaJSON is the JSON Schema (draft 2020-12) of receipt v1.
//
//go:embed receipt-v1.schema.json
var SchemaJSON []byte

// ErrSchema means a document does not conform to the receipt schema.
var ErrSchema = errors.New("receipt does not match schema")

// resolved is compiled on first use: programs that never validate (the run
// path of the CLI) pay nothing for it.
var resolved = sync.OnceValues(func() (*jsonschema.Resolved, error) {
	var s jsonschema.Schema
	if err := json.Unmarshal(SchemaJSON, &s); err != nil {
		return nil, fmt.Errorf("parse receipt schema: %w", err)
	}
	rs, err := s.Resolve(nil)
	if err != nil {
		return nil, fmt.Errorf("resolve receipt schema: %w", err)
	}
	return rs, nil
})

// ValidateSchema checks doc against the receipt v1 JSON Schema. The error
// wraps ErrSchema and says where the document fails.
func ValidateSchema(doc []byte) error {
	rs, err := resolved()
	if err != nil {
		return err
	}
	if len(doc) > MaxSize {
		return fmt.Errorf("%w: %d bytes exceeds the %d byte limit", ErrMalformed, len(doc), MaxSize)
	}
	v, err := decodeGeneric(doc)
	if err != nil {
		return err
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
