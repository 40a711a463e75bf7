package receipt

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

var english = message.NewPrinter(language.English)

// SchemaJSON is the JSON Schema (draft 2020-12) of receipt v1.
//
//go:embed receipt-v1.schema.json
var SchemaJSON []byte

// ErrSchema means a document does not conform to the receipt schema.
var ErrSchema = errors.New("receipt does not match schema")

var compiled = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(SchemaJSON))
	if err != nil {
		return nil, fmt.Errorf("parse receipt schema: %w", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("receipt-v1.schema.json", doc); err != nil {
		return nil, fmt.Errorf("load receipt schema: %w", err)
	}
	return c.Compile("receipt-v1.schema.json")
})

// ValidateSchema checks doc against the receipt v1 JSON Schema. The error
// wraps ErrSchema and says where the document fails.
func ValidateSchema(doc []byte) error {
	s, err := compiled()
	if err != nil {
		return err
	}
	if len(doc) > MaxSize {
		return fmt.Errorf("%w: %d bytes exceeds the %d byte limit", ErrMalformed, len(doc), MaxSize)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := s.Validate(v); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return fmt.Errorf("%w: %s", ErrSchema, describe(ve))
		}
		return fmt.Errorf("%w: %v", ErrSchema, err)
	}
	return nil
}

// describe flattens a validation error into "at /path: message" lines, the
// most specific causes first.
func describe(ve *jsonschema.ValidationError) string {
	var out []string
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			loc := "/" + joinPointer(e.InstanceLocation)
			out = append(out, fmt.Sprintf("at %s: %s", loc, e.ErrorKind.LocalizedString(english)))
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	b, _ := json.Marshal(out)
	if len(out) == 1 {
		return out[0]
	}
	return string(b)
}

func joinPointer(parts []string) string {
	var b bytes.Buffer
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(p)
	}
	return b.String()
}
