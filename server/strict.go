package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"unicode/utf8"
)

// shape describes the JSON a request may hold, for the strict checks that
// encoding/json does not make: duplicate keys, keys that match a field only
// case-insensitively, and counts bounded before anything is allocated.
type shape struct {
	// kind, when set, is the JSON type the value must have: "string",
	// "integer", "boolean", "object" or "array".
	kind string
	// fields are the allowed keys of an object; nil with anyKeys false
	// means any value is accepted unchecked (a leaf).
	fields map[string]*shape
	// anyKeys accepts any key, each value checked against values.
	anyKeys bool
	values  *shape
	// elem checks array elements.
	elem *shape
	// max bounds the number of keys or elements (0: unbounded); maxStatus
	// and maxLimit describe the error.
	max int
}

func str() *shape     { return &shape{kind: "string"} }
func integer() *shape { return &shape{kind: "integer"} }
func boolean() *shape { return &shape{kind: "boolean"} }

// maxDepth bounds nesting anywhere in a request; the deepest valid request
// nests 3 levels.
const maxDepth = 16

// checkText checks that body is UTF-8 and has no lone UTF-16 surrogate
// escapes, which encoding/json would silently turn into U+FFFD.
func checkText(body []byte) *Error {
	if !utf8.Valid(body) {
		off := 0
		for off < len(body) {
			r, n := utf8.DecodeRune(body[off:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			off += n
		}
		return fieldErr(http.StatusBadRequest, "body", nil, "is not valid UTF-8 (first bad byte at offset %d)", off)
	}
	inString := false
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !inString {
			if c == '"' {
				inString = true
			}
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			if i+1 >= len(body) {
				return nil // the JSON parser reports the truncation
			}
			if body[i+1] != 'u' {
				i++
				continue
			}
			r, ok := hex4(body, i+2)
			if !ok {
				return nil // the JSON parser reports the bad escape
			}
			switch {
			case r >= 0xD800 && r <= 0xDBFF:
				lo, ok := rune(0), false
				if i+7 < len(body) && body[i+6] == '\\' && body[i+7] == 'u' {
					lo, ok = hex4(body, i+8)
				}
				if !ok || lo < 0xDC00 || lo > 0xDFFF {
					return fieldErr(http.StatusBadRequest, "body", nil, "has a lone UTF-16 surrogate escape at offset %d", i)
				}
				i += 11
			case r >= 0xDC00 && r <= 0xDFFF:
				return fieldErr(http.StatusBadRequest, "body", nil, "has a lone UTF-16 surrogate escape at offset %d", i)
			default:
				i += 5
			}
		}
	}
	return nil
}

func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[at:at+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	return rune(v), true
}

// checkStrict walks body's tokens against root. It rejects anything but a
// single JSON object, duplicate keys, unknown keys, too many elements and
// too deep nesting. Types are left to json.Unmarshal.
func checkStrict(body []byte, root *shape) *Error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return syntaxErr(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fieldErr(http.StatusBadRequest, "body", nil, "must be a JSON object")
	}
	if e := walkObject(dec, root, "", 1); e != nil {
		return e
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return syntaxErr(err)
		}
		return fieldErr(http.StatusBadRequest, "body", nil, "has data after the JSON object")
	}
	return nil
}

func syntaxErr(err error) *Error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fieldErr(http.StatusBadRequest, "body", nil, "is not valid JSON: %v (at offset %d)", se, se.Offset)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fieldErr(http.StatusBadRequest, "body", nil, "is not valid JSON: unexpected end of input")
	}
	return fieldErr(http.StatusBadRequest, "body", nil, "is not valid JSON: %v", err)
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// kindOf names the JSON type of a token.
func kindOf(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '{' {
			return "object"
		}
		return "array"
	case string:
		return "string"
	case json.Number:
		return "number"
	case bool:
		return "boolean"
	}
	return "null"
}

// walkValue consumes one value; sh may be nil (unchecked territory). null
// is accepted for any field and means "not given".
func walkValue(dec *json.Decoder, sh *shape, path string, depth int) *Error {
	tok, err := dec.Token()
	if err != nil {
		return syntaxErr(err)
	}
	if sh != nil && sh.kind != "" && tok != nil {
		got := kindOf(tok)
		ok := got == sh.kind
		if sh.kind == "integer" && got == "number" {
			_, perr := strconv.ParseInt(string(tok.(json.Number)), 10, 64)
			ok = perr == nil
			if !ok {
				return fieldErr(http.StatusBadRequest, path, nil, "must be an integer in the int64 range, not %s", truncate(string(tok.(json.Number))))
			}
		}
		if !ok {
			return fieldErr(http.StatusBadRequest, path, nil, "must be %s %s, not %s %s", article(sh.kind), sh.kind, article(got), got)
		}
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if depth >= maxDepth {
		return fieldErr(http.StatusBadRequest, path, maxDepth, "nests deeper than %d levels", maxDepth)
	}
	switch d {
	case '{':
		return walkObject(dec, sh, path, depth+1)
	case '[':
		return walkArray(dec, sh, path, depth+1)
	}
	return fieldErr(http.StatusBadRequest, "body", nil, "is not valid JSON: unexpected %q", d)
}

func article(kind string) string {
	if kind == "integer" || kind == "object" || kind == "array" {
		return "an"
	}
	return "a"
}

func walkObject(dec *json.Decoder, sh *shape, path string, depth int) *Error {
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntaxErr(err)
		}
		key, ok := tok.(string)
		if !ok {
			return fieldErr(http.StatusBadRequest, "body", nil, "is not valid JSON: object key is not a string")
		}
		field := joinKey(path, key)
		if seen[key] {
			return fieldErr(http.StatusBadRequest, field, nil, "is given twice")
		}
		seen[key] = true
		var child *shape
		if sh != nil {
			if sh.max > 0 && len(seen) > sh.max {
				return fieldErr(http.StatusBadRequest, path, sh.max, "has more than %d entries", sh.max)
			}
			switch {
			case sh.anyKeys:
				child = sh.values
			case sh.fields != nil:
				c, ok := sh.fields[key]
				if !ok {
					return fieldErr(http.StatusBadRequest, field, nil, "is not a known field")
				}
				child = c
			}
		}
		if e := walkValue(dec, child, field, depth); e != nil {
			return e
		}
	}
	if _, err := dec.Token(); err != nil {
		return syntaxErr(err)
	}
	return nil
}

func walkArray(dec *json.Decoder, sh *shape, path string, depth int) *Error {
	var elem *shape
	if sh != nil {
		elem = sh.elem
	}
	n := 0
	for dec.More() {
		if sh != nil && sh.max > 0 && n >= sh.max {
			return fieldErr(http.StatusBadRequest, path, sh.max, "has more than %d entries", sh.max)
		}
		if e := walkValue(dec, elem, fmt.Sprintf("%s[%d]", path, n), depth); e != nil {
			return e
		}
		n++
	}
	if _, err := dec.Token(); err != nil {
		return syntaxErr(err)
	}
	return nil
}

// unmarshalStrict decodes body, already checked by checkStrict, into v and
// turns type errors into field errors.
func unmarshalStrict(body []byte, v any) *Error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			if field == "" {
				field = "body"
			}
			return fieldErr(http.StatusBadRequest, arrayIndex.ReplaceAllString(field, "[$1]"), nil, "must be %s, not JSON %s", jsonKind(te.Type), te.Value)
		}
		return fieldErr(http.StatusBadRequest, "body", nil, "is not a valid request: %v", err)
	}
	return nil
}

// arrayIndex finds the ".3" that encoding/json writes for an array index.
var arrayIndex = regexp.MustCompile(`\.([0-9]+)\b`)

func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return t.Kind().String()
}
