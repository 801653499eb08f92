package ingest_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"evident.dev/evident/api"
)

// FuzzPostRecord feeds arbitrary bodies and content types through the
// handler: never a panic, never a 5xx (the log is healthy), every refusal a
// JSON error, and the log grows only on a 201.
func FuzzPostRecord(f *testing.F) {
	s := newTestServer(f)
	good := s.signedPlan("CHG-FUZZ")
	f.Add("application/json", good)
	f.Add("", good)
	f.Add("application/json", s.signedPlan("CHG-FUZZ-2"))
	for _, c := range badInputs(f, s) {
		if len(c.body) < 64<<10 {
			f.Add(c.contentType, c.body)
		}
	}

	mux := http.NewServeMux()
	s.h.Register(mux)

	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		before := s.log.Size()
		req := httptest.NewRequest(http.MethodPost, "/v1/records", bytes.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		after := s.log.Size()

		switch {
		case w.Code >= 500:
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body)
		case w.Code == http.StatusCreated || w.Code == http.StatusOK:
			var rc api.Receipt
			if err := json.Unmarshal(w.Body.Bytes(), &rc); err != nil || len(rc.EntryHash) != 64 {
				t.Fatalf("receipt %s: %v", w.Body, err)
			}
			if (w.Code == http.StatusCreated) != (after == before+1) || rc.Index >= after {
				t.Fatalf("status %d, receipt index %d, log %d -> %d", w.Code, rc.Index, before, after)
			}
		default:
			var e api.ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Code == "" || e.Error == "" {
				t.Fatalf("status %d with body %q: %v", w.Code, w.Body, err)
			}
			if w.Code < 400 {
				t.Fatalf("status %d", w.Code)
			}
			if after != before {
				t.Fatalf("refused with %d but the log grew", w.Code)
			}
		}
	})
}

// FuzzGateApply feeds arbitrary bodies to the apply gate: never a panic or a
// 5xx, a 400 JSON error for what is not a valid request, and a 200 decision
// recorded as exactly one new entry otherwise.
func FuzzGateApply(f *testing.F) {
	s := newApprovalServer(f, defaultApprovalConfig())
	c := s.newChange("CHG-FUZZ", "high")
	c.plan(planA, s.at(time.Minute))
	good, err := json.Marshal(map[string]any{"changeId": c.id, "commitSha": commitA, "planSha256": planA,
		"target": map[string]string{"environment": "prod", "stack": "prod/rds-orders"}, "actor": "ci"})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"changeId":"x","commitSha":"` + commitA + `","planSha256":"` + planA + `","target":{"environment":"prod","stack":"` + strings.Repeat("s", 600) + `"},"actor":"ci"}`))
	f.Add([]byte(`{"changeId":"","target":{}}`))
	f.Add([]byte(`[`))
	f.Add([]byte(`{"changeId":"CHG-FUZZ","commitSha":"` + commitA + `","planSha256":"` + planA + `","target":{"environment":"prod"},"actor":"\u0000"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		before := s.log.Size()
		req := httptest.NewRequest(http.MethodPost, "/v1/gate/apply", bytes.NewReader(body))
		w := httptest.NewRecorder()
		s.mux.ServeHTTP(w, req)
		after := s.log.Size()
		switch w.Code {
		case http.StatusOK:
			var a api.GateAnswer
			if err := json.Unmarshal(w.Body.Bytes(), &a); err != nil || (a.Decision != "allow" && a.Decision != "deny") {
				t.Fatalf("answer %s: %v", w.Body, err)
			}
			if after != before+1 || a.Entry.Index != before {
				t.Fatalf("decision entry %d, log %d -> %d", a.Entry.Index, before, after)
			}
		case http.StatusBadRequest:
			var e api.ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Code == "" {
				t.Fatalf("refusal %s: %v", w.Body, err)
			}
			if after != before {
				t.Fatal("refused, but the log grew")
			}
		default:
			t.Fatalf("status %d for %q: %s", w.Code, body, w.Body)
		}
	})
}
