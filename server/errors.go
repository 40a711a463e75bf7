package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// Error is an API error. It is written as the JSON body
// {"error": "...", "field": "...", "limit": N} with Status.
type Error struct {
	Status  int    `json:"-"`
	Message string `json:"error"`
	// Field names the request field at fault ("files[2].path"), if any.
	Field string `json:"field,omitempty"`
	// Limit is the bound the field broke, if any.
	Limit any `json:"limit,omitempty"`
	// RetryAfter, in seconds, is sent as the Retry-After header when > 0.
	RetryAfter int `json:"-"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Message
	}
	return e.Message
}

func errorf(status int, format string, args ...any) *Error {
	return &Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

// fieldErr returns a 400 (or 413 for a size) error about field.
func fieldErr(status int, field string, limit any, format string, args ...any) *Error {
	return &Error{Status: status, Field: field, Limit: limit, Message: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":"encode response"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, e *Error) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="glasshouse"`)
	}
	writeJSON(w, e.Status, e)
}
