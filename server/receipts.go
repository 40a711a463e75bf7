package server

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"glasshouse.dev/glasshouse/core/receipt"
	"glasshouse.dev/glasshouse/store"
)

// maxIDBytes bounds a run id in a URL.
const maxIDBytes = 128

func validID(id string) bool {
	if id == "" || len(id) > maxIDBytes {
		return false
	}
	return !strings.ContainsFunc(id, func(r rune) bool { return r > unicode.MaxASCII || unicode.IsControl(r) || r == '/' })
}

// checkQuery refuses unknown and repeated query parameters.
func checkQuery(q url.Values, allowed ...string) *Error {
	for k, v := range q {
		known := false
		for _, a := range allowed {
			known = known || k == a
		}
		if !known {
			return fieldErr(http.StatusBadRequest, truncate(k), nil, "is not a known query parameter (have: %s)", strings.Join(allowed, ", "))
		}
		if len(v) > 1 {
			return fieldErr(http.StatusBadRequest, k, nil, "is given %d times", len(v))
		}
	}
	return nil
}

func (s *Server) handleReceipt(w http.ResponseWriter, r *http.Request, tenant string) *Error {
	id := r.PathValue("id")
	if !validID(id) {
		return errorf(http.StatusNotFound, "run not found")
	}
	q := r.URL.Query()
	if e := checkQuery(q, "format"); e != nil {
		return e
	}
	format := q.Get("format")
	switch format {
	case "", "json", "dsse":
	default:
		return fieldErr(http.StatusBadRequest, "format", nil, "%q: want json or dsse", truncate(format))
	}
	if format == "dsse" && s.cfg.Sign == nil {
		return fieldErr(http.StatusBadRequest, "format", nil, "this server has no signing key (start it with --signing-key)")
	}
	rec, err := s.cfg.Store.Get(r.Context(), tenant, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errorf(http.StatusNotFound, "run %s not found", id)
	case err != nil:
		s.m.storeErrors.WithLabelValues("get").Inc()
		return errorf(http.StatusInternalServerError, "store: %v", err)
	case rec.State != store.StateDone:
		return errorf(http.StatusConflict, "run %s is still running", id)
	}
	setRunID(r, id)
	if format == "dsse" {
		rc, err := receipt.Decode(rec.Receipt)
		if err != nil {
			s.log.Error("stored receipt fails verification", "run_id", id, "err", err)
			return errorf(http.StatusInternalServerError, "stored receipt of run %s fails verification: %v", id, err)
		}
		env, err := s.cfg.Sign(rc)
		if err != nil {
			return errorf(http.StatusInternalServerError, "sign receipt: %v", err)
		}
		w.Header().Set("Content-Type", "application/vnd.dsse.envelope.v1+json")
		w.Header().Set("Content-Length", strconv.Itoa(len(env)))
		w.Write(env)
		return nil
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(rec.Receipt)))
	w.Header().Set("ETag", strconv.Quote(rec.Digest))
	w.Header().Set("Cache-Control", "private, max-age=31536000, immutable")
	w.Write(rec.Receipt)
	return nil
}

// ListedRun is one entry of GET /receipts.
type ListedRun struct {
	ID         string  `json:"id"`
	StartedAt  string  `json:"started_at"`
	FinishedAt string  `json:"finished_at"`
	Backend    string  `json:"backend"`
	Failure    string  `json:"failure"`
	Verdict    *string `json:"verdict"`
	Digest     string  `json:"digest"`
	ReceiptURL string  `json:"receipt_url"`
}

// ListResponse is the body of GET /receipts.
type ListResponse struct {
	Runs []ListedRun `json:"runs"`
	// NextCursor continues the listing, "" on the last page; Next is the
	// URL of the next page.
	NextCursor string `json:"next_cursor"`
	Next       string `json:"next,omitempty"`
}

var (
	failures = []string{receipt.FailureNone, receipt.FailureCode, receipt.FailureTimeout, receipt.FailureOOM, receipt.FailureOutputLimit, receipt.FailureInfrastructure}
	verdicts = []string{receipt.VerdictAllow, receipt.VerdictWarn, receipt.VerdictDeny}
)

// defaultListLimit is the page size when the request gives none.
const defaultListLimit = 50

// ParseListQuery parses the query of GET /receipts.
func ParseListQuery(q url.Values) (store.Query, *Error) {
	if e := checkQuery(q, "failure", "verdict", "since", "limit", "cursor"); e != nil {
		return store.Query{}, e
	}
	sq := store.Query{Limit: defaultListLimit, Failure: q.Get("failure"), Verdict: q.Get("verdict"), Cursor: q.Get("cursor")}
	oneOf := func(field, v string, set []string) *Error {
		if v == "" {
			return nil
		}
		for _, s := range set {
			if v == s {
				return nil
			}
		}
		return fieldErr(http.StatusBadRequest, field, nil, "%q: want one of %s", truncate(v), strings.Join(set, ", "))
	}
	if e := oneOf("failure", sq.Failure, failures); e != nil {
		return sq, e
	}
	if e := oneOf("verdict", sq.Verdict, verdicts); e != nil {
		return sq, e
	}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return sq, fieldErr(http.StatusBadRequest, "since", nil, "%q is not an RFC 3339 time", truncate(v))
		}
		sq.Since = t
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > store.MaxLimit {
			return sq, fieldErr(http.StatusBadRequest, "limit", store.MaxLimit, "%q is outside [1, %d]", truncate(v), store.MaxLimit)
		}
		sq.Limit = n
	}
	if sq.Cursor != "" {
		if _, _, err := store.DecodeCursor(sq.Cursor); err != nil {
			return sq, fieldErr(http.StatusBadRequest, "cursor", nil, "is not a cursor from a previous page")
		}
	}
	return sq, nil
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request, tenant string) *Error {
	q, e := ParseListQuery(r.URL.Query())
	if e != nil {
		return e
	}
	page, err := s.cfg.Store.List(r.Context(), tenant, q)
	if err != nil {
		if errors.Is(err, store.ErrInvalid) {
			return fieldErr(http.StatusBadRequest, "", nil, "%v", err)
		}
		s.m.storeErrors.WithLabelValues("list").Inc()
		return errorf(http.StatusInternalServerError, "store: %v", err)
	}
	resp := ListResponse{Runs: make([]ListedRun, 0, len(page.Runs)), NextCursor: page.Next}
	for _, sm := range page.Runs {
		lr := ListedRun{
			ID: sm.ID, Backend: sm.Backend, Failure: sm.Failure, Digest: sm.Digest, ReceiptURL: receiptURL(sm.ID),
			StartedAt:  receipt.At(sm.StartedAt).UTC().Format(receipt.TimestampLayout),
			FinishedAt: receipt.At(sm.FinishedAt).UTC().Format(receipt.TimestampLayout),
		}
		if sm.Verdict != "" {
			v := sm.Verdict
			lr.Verdict = &v
		}
		resp.Runs = append(resp.Runs, lr)
	}
	if page.Next != "" {
		nq := r.URL.Query()
		nq.Set("cursor", page.Next)
		resp.Next = "/receipts?" + nq.Encode()
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}
