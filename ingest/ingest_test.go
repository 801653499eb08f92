package ingest_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"evident.dev/evident/api"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ingest"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

func editEnv(t testing.TB, raw []byte, fn func(*dsse.Envelope)) []byte {
	t.Helper()
	var env dsse.Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	fn(&env)
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// badInput is one refused post.
type badInput struct {
	name        string
	body        []byte
	contentType string
	status      int
	code        string
	msg         string // the message must hold this
	field       string // fields must name this
}

func badInputs(t testing.TB, s *testServer) []badInput {
	good := s.signedPlan("CHG-GOOD")
	goodEnv := func(fn func(*dsse.Envelope)) []byte { return editEnv(t, good, fn) }
	ci, apply, stranger := s.keys["ci"], s.keys["apply"], s.keys["stranger"]
	signed := func(p evidence.Transition) []byte { return sign(t, ci, payloadOf(t, p)) }

	noChange := transition(evidence.KindPlanCreated, "", evidence.Target{Environment: "prod"})
	unknownKind := transition(evidence.KindPlanCreated, "CHG-1", evidence.Target{Environment: "prod"})
	unknownKind.Kind = "plan.exploded"
	future := transition(evidence.KindPlanCreated, "CHG-1", evidence.Target{Environment: "prod"})
	future.OccurredAt = serverNow.Add(24 * time.Hour)
	huge := transition(evidence.KindPlanCreated, "CHG-1", evidence.Target{Environment: "prod"})
	huge.Actor = strings.Repeat("a", 600<<10)
	noPlan := transition(evidence.KindPlanCreated, "CHG-1", evidence.Target{Environment: "prod"})
	noPlan.Plan = nil

	return []badInput{
		{name: "malformed JSON", body: []byte(`{"payloadType":"application/vnd.in-toto+json",`), status: 400, code: "malformed", msg: "JSON"},
		{name: "not JSON", body: []byte("hello"), status: 400, code: "malformed", msg: "JSON"},
		{name: "truncated JSON", body: good[:len(good)/2], status: 400, code: "malformed", msg: "truncated"},
		{name: "empty body", body: nil, status: 400, code: "malformed", msg: "JSON"},
		{name: "empty body with JSON type", body: nil, contentType: "application/json", status: 400, code: "malformed", msg: "JSON"},
		{name: "wrong payloadType", body: goodEnv(func(e *dsse.Envelope) { e.PayloadType = "application/json" }), status: 400, code: "malformed", msg: "payloadType"},
		{name: "bad base64 payload", body: goodEnv(func(e *dsse.Envelope) { e.Payload = "!!!" + e.Payload }), status: 400, code: "malformed", msg: "base64"},
		{name: "bad base64 signature", body: goodEnv(func(e *dsse.Envelope) { e.Signatures[0].Sig = "%%%" }), status: 400, code: "malformed", msg: "base64"},
		{name: "missing signatures", body: goodEnv(func(e *dsse.Envelope) { e.Signatures = nil }), status: 400, code: "malformed", msg: "signatures"},
		{name: "too many signatures", body: goodEnv(func(e *dsse.Envelope) {
			e.Signatures = slices.Repeat(e.Signatures, 9)
		}), status: 400, code: "malformed", msg: "signatures"},
		{name: "unknown envelope field", body: bytes.Replace(good, []byte(`{"payloadType"`), []byte(`{"x":1,"payloadType"`), 1), status: 400, code: "malformed", msg: "x"},
		{name: "duplicate envelope field", body: bytes.Replace(good, []byte(`{"payloadType":"application/vnd.in-toto+json"`), []byte(`{"payloadType":"application/vnd.in-toto+json","payloadType":"application/vnd.in-toto+json"`), 1), status: 400, code: "malformed", msg: "payloadType"},
		{name: "invalid UTF-8", body: append(bytes.Clone(good[:len(good)-2]), '\xff', '"', '}'), status: 400, code: "malformed"},
		{name: "wrong signature", body: goodEnv(func(e *dsse.Envelope) {
			sig, _ := base64.StdEncoding.DecodeString(e.Signatures[0].Sig)
			sig[3] ^= 1
			e.Signatures[0].Sig = base64.StdEncoding.EncodeToString(sig)
		}), status: 403, code: "untrusted_signer", msg: "trust"},
		{name: "tampered payload", body: goodEnv(func(e *dsse.Envelope) {
			e.Payload = base64.StdEncoding.EncodeToString(plan(t, "CHG-EVIL", "prod"))
		}), status: 403, code: "untrusted_signer", msg: "trust"},
		{name: "untrusted key", body: sign(t, stranger, plan(t, "CHG-1", "prod")), status: 403, code: "untrusted_signer", msg: "trust"},
		{name: "untrusted key, invalid statement", body: sign(t, stranger, payloadOf(t, noChange)), status: 403, code: "untrusted_signer"},
		{name: "out-of-scope environment", body: sign(t, apply, payloadOf(t, transition(evidence.KindApplyCompleted, "CHG-1", evidence.Target{Environment: "staging", Stack: stackA}))), status: 403, code: "out_of_scope", msg: "environment"},
		{name: "out-of-scope stack", body: sign(t, apply, payloadOf(t, transition(evidence.KindApplyCompleted, "CHG-1", evidence.Target{Environment: "prod", Stack: "prod/other"}))), status: 403, code: "out_of_scope", msg: "stack"},
		{name: "runner signing bootstrap", body: signed(transition(evidence.KindBootstrap, "bootstrap", evidence.Target{})), status: 403, code: "out_of_scope", msg: "log"},
		{name: "log key signing a change record", body: sign(t, s.logKey, plan(t, "CHG-1", "prod")), status: 403, code: "out_of_scope", msg: "log"},
		{name: "unknown kind", body: signed(unknownKind), status: 400, code: "invalid_record", msg: "plan.exploded", field: "predicate.kind"},
		{name: "missing required field", body: signed(noChange), status: 400, code: "invalid_record", msg: "changeId", field: "predicate.changeId"},
		{name: "missing kind block", body: signed(noPlan), status: 400, code: "invalid_record", msg: "plan", field: "predicate.plan"},
		{name: "statement with unknown field", body: sign(t, ci, bytes.Replace(plan(t, "CHG-1", "prod"), []byte(`"changeId"`), []byte(`"mystery":1,"changeId"`), 1)), status: 400, code: "malformed", msg: "mystery"},
		{name: "statement not JSON", body: sign(t, ci, []byte("plan created")), status: 400, code: "malformed"},
		{name: "occurredAt far in the future", body: signed(future), status: 400, code: "clock_skew", msg: "occurredAt"},
		{name: "body over MaxBodyBytes", body: append(bytes.Clone(good), bytes.Repeat([]byte(" "), 1<<20)...), status: 413, code: "too_large", msg: "larger than"},
		{name: "deeply nested JSON", body: bytes.Repeat([]byte("["), 100000), status: 400, code: "malformed"},
		{name: "deeply nested objects", body: bytes.Repeat([]byte(`{"a":`), 50000), status: 400, code: "malformed"},
		{name: "deeply nested payload", body: sign(t, ci, append([]byte(`{"_type":`), bytes.Repeat([]byte("["), 100000)...)), status: 400, code: "malformed", msg: "nested"},
		{name: "huge string field", body: signed(huge), status: 400, code: "invalid_record", msg: "actor", field: "predicate.actor"},
		{name: "huge string in the envelope", body: goodEnv(func(e *dsse.Envelope) { e.PayloadType = strings.Repeat("x", 900<<10) }), status: 400, code: "malformed", msg: "payloadType"},
		{name: "wrong Content-Type", body: good, contentType: "text/plain", status: 415, code: "unsupported_media_type", msg: "Content-Type"},
		{name: "form Content-Type", body: good, contentType: "application/x-www-form-urlencoded", status: 415, code: "unsupported_media_type", msg: "Content-Type"},
		{name: "unparsable Content-Type", body: good, contentType: "application/json; =", status: 415, code: "unsupported_media_type", msg: "Content-Type"},
	}
}

// TestPostRecordRefusals posts each bad input and checks the answer names
// the problem and nothing reached the log.
func TestPostRecordRefusals(t *testing.T) {
	s := newTestServer(t)
	for _, c := range badInputs(t, s) {
		t.Run(c.name, func(t *testing.T) {
			before := s.log.Size()
			ct := c.contentType
			if ct == "" && c.body != nil {
				ct = "application/json"
			}
			r := s.post(c.body, ct)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			e := errorBody(t, r)
			if e.Code != c.code {
				t.Errorf("code %q, want %q (%s)", e.Code, c.code, e.Error)
			}
			if !contains(e.Error, c.msg) {
				t.Errorf("message %q does not name %q", e.Error, c.msg)
			}
			if c.field != "" && !slices.ContainsFunc(e.Fields, func(f evidence.FieldError) bool { return f.Field == c.field && f.Reason != "" }) {
				t.Errorf("fields %+v do not name %s", e.Fields, c.field)
			}
			if c.field == "" && len(e.Fields) != 0 {
				t.Errorf("unexpected fields %+v", e.Fields)
			}
			if r.header.Get("Retry-After") != "" {
				t.Error("a refusal of bad input says to retry")
			}
			if len(r.body) > 8<<10 {
				t.Errorf("refusal of %d bytes echoes the input", len(r.body))
			}
			if after := s.log.Size(); after != before {
				t.Fatalf("log grew from %d to %d", before, after)
			}
		})
	}
	// The refusals left a log that verifies, holding only its genesis.
	if rep := s.checkLog(nil); rep.Size != 1 {
		t.Fatalf("log of %d entries after refusals only", rep.Size)
	}
}

// TestPostRecordTruncatedBody sends fewer bytes than Content-Length over a
// raw connection.
func TestPostRecordTruncatedBody(t *testing.T) {
	s := newTestServer(t)
	good := s.signedPlan("CHG-1")
	for name, send := range map[string]func(c net.Conn){
		"content-length": func(c net.Conn) {
			fmt.Fprintf(c, "POST /v1/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(good))
			c.Write(good[:len(good)/2])
		},
		"chunked": func(c net.Conn) {
			fmt.Fprintf(c, "POST /v1/records HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n", len(good)/2, good[:len(good)/2])
		},
	} {
		t.Run(name, func(t *testing.T) {
			before := s.log.Size()
			c, err := net.Dial("tcp", s.srv.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			send(c)
			c.(*net.TCPConn).CloseWrite()
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			defer resp.Body.Close()
			var e api.ErrorBody
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != 400 || e.Code != "truncated_body" {
				t.Errorf("status %d code %q (%s), want 400 truncated_body", resp.StatusCode, e.Code, e.Error)
			}
			if s.log.Size() != before {
				t.Fatal("a truncated body reached the log")
			}
		})
	}
}

func TestPostRecordAccepted(t *testing.T) {
	s := newTestServer(t)
	body := s.signedPlan("CHG-1")
	before := s.log.Size()

	r := s.post(body, "application/json")
	if r.status != http.StatusCreated {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if r.header.Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type %q", r.header.Get("Content-Type"))
	}
	first := receipt(t, r)
	if first.Index != before || first.Duplicate || first.Kind != evidence.KindPlanCreated || first.ChangeID != "CHG-1" ||
		first.Signer != (evidence.Signer{Name: "ci", KeyID: s.keys["ci"].id}) {
		t.Errorf("receipt %+v", first)
	}
	if s.log.Size() != before+1 {
		t.Fatalf("size %d, want %d", s.log.Size(), before+1)
	}
	// The receipt's hashes are the entry's.
	e, leaf := s.entry(first.Index)
	if sum := sha256.Sum256(leaf); first.EntryHash != hex.EncodeToString(sum[:]) {
		t.Errorf("entryHash %s is not SHA-256 of the leaf", first.EntryHash)
	}
	if sum := sha256.Sum256(append([]byte{0}, leaf...)); first.LeafHash != hex.EncodeToString(sum[:]) {
		t.Errorf("leafHash %s is not the RFC 6962 leaf hash", first.LeafHash)
	}
	if !bytes.Equal(e.Envelope, body) || e.Meta.Signer.Name != "ci" || !e.ReceivedAt.Equal(first.ReceivedAt) {
		t.Errorf("entry %+v does not hold the posted record", e)
	}

	// Posting it again, in any form, answers 200 with the same receipt.
	var env any
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatal(err)
	}
	pretty, _ := json.MarshalIndent(env, "", "  ")
	for name, again := range map[string]struct {
		body []byte
		ct   string
	}{
		"same bytes":          {body, "application/json"},
		"no content type":     {body, ""},
		"DSSE content type":   {body, "application/vnd.dsse.envelope.v1+json; charset=utf-8"},
		"pretty-printed":      {pretty, "application/json"},
		"signature, no keyid": {editEnv(t, body, func(e *dsse.Envelope) { e.Signatures[0].KeyID = "" }), "application/json"},
		"with a second sig":   {editEnv(t, body, func(e *dsse.Envelope) { e.Signatures = append(e.Signatures, dsse.Signature{Sig: "AAAA"}) }), "application/json"},
		"URL-safe base64 too": {editEnv(t, body, func(e *dsse.Envelope) { e.Payload = strings.NewReplacer("+", "-", "/", "_").Replace(e.Payload) }), "application/json"},
	} {
		t.Run(name, func(t *testing.T) {
			r := s.post(again.body, again.ct)
			if r.status != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", r.status, r.body)
			}
			dup := receipt(t, r)
			if dup.Index != first.Index || dup.EntryHash != first.EntryHash || dup.LeafHash != first.LeafHash ||
				!dup.ReceivedAt.Equal(first.ReceivedAt) || !dup.Duplicate {
				t.Errorf("duplicate receipt %+v, first %+v", dup, first)
			}
			if s.log.Size() != before+1 {
				t.Fatalf("a duplicate was appended: size %d", s.log.Size())
			}
		})
	}

	// A pretty-printed new record is stored compact and verifies.
	var env2 any
	json.Unmarshal(s.signedPlan("CHG-2"), &env2)
	pretty2, _ := json.MarshalIndent(env2, "", "\t")
	r = s.post(append(append([]byte("\r\n "), pretty2...), "\n\n"...), "application/json")
	if r.status != http.StatusCreated {
		t.Fatalf("pretty-printed record: status %d: %s", r.status, r.body)
	}
	e2, _ := s.entry(receipt(t, r).Index)
	if bytes.ContainsAny(e2.Envelope, " \t\r\n") {
		t.Errorf("stored envelope is not compact: %s", e2.Envelope)
	}
	// ECDSA-signed, in scope.
	r = s.post(sign(t, s.keys["apply"], payloadOf(t, transition(evidence.KindApplyCompleted, "CHG-1", evidence.Target{Environment: "prod", Stack: stackA}))), "application/json")
	if r.status != http.StatusCreated || receipt(t, r).Signer.Name != "apply" {
		t.Fatalf("ECDSA record: status %d: %s", r.status, r.body)
	}
	// A record at the edge of the clock skew is fine.
	edge := transition(evidence.KindPlanCreated, "CHG-EDGE", evidence.Target{Environment: "prod"})
	edge.OccurredAt = serverNow.Add(9 * time.Minute)
	if r := s.post(sign(t, s.keys["ci"], payloadOf(t, edge)), "application/json"); r.status != http.StatusCreated {
		t.Fatalf("record 9 minutes ahead: status %d: %s", r.status, r.body)
	}

	if rep := s.checkLog(nil); rep.Size != s.log.Size() || rep.Size != 5 {
		t.Fatalf("CheckLog size %d, log %d, want 5", rep.Size, s.log.Size())
	}
}

func TestPostRecordMethodAndPath(t *testing.T) {
	s := newTestServer(t)
	resp, err := s.client.Get(s.srv.URL + "/v1/records")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d", resp.StatusCode)
	}
}

// TestPostRecordOverload: with a queue of one, concurrent posts are turned
// away with 503 and Retry-After, never another 5xx, and every 201 is true.
func TestPostRecordOverload(t *testing.T) {
	s := newTestServer(t, func(lc *ledger.Config, _ *ingest.Config) {
		lc.QueueSize = 1
		lc.MaxBatch = 1
	})
	s.client.Transport.(*http.Transport).MaxIdleConnsPerHost = 100

	type result struct {
		body   []byte
		status int
		rc     api.Receipt
	}
	var accepted, refused []result
	n := 0
	for round := 0; round < 20 && (len(refused) == 0 || round < 2); round++ {
		const posters, each = 48, 4
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for p := range posters {
			bodies := make([][]byte, each)
			for i := range bodies {
				n++
				bodies[i] = s.signedPlan(fmt.Sprintf("CHG-%d-%d-%d", round, p, i))
			}
			wg.Go(func() {
				<-start
				for _, b := range bodies {
					req, _ := http.NewRequest(http.MethodPost, s.srv.URL+"/v1/records", bytes.NewReader(b))
					req.Header.Set("Content-Type", "application/json")
					resp, err := s.client.Do(req)
					if err != nil {
						t.Errorf("POST: %v", err)
						return
					}
					r := response{status: resp.StatusCode, header: resp.Header}
					var buf bytes.Buffer
					buf.ReadFrom(resp.Body)
					resp.Body.Close()
					r.body = buf.Bytes()
					res := result{body: b, status: r.status}
					switch r.status {
					case http.StatusCreated:
						res.rc = receipt(t, r)
					case http.StatusServiceUnavailable:
						if r.header.Get("Retry-After") == "" {
							t.Errorf("503 without Retry-After")
						}
						if e := errorBody(t, r); e.Code != "overloaded" {
							t.Errorf("503 code %q", e.Code)
						}
					default:
						t.Errorf("status %d under load: %s", r.status, r.body)
					}
					mu.Lock()
					if r.status == http.StatusCreated {
						accepted = append(accepted, res)
					} else {
						refused = append(refused, res)
					}
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
	}
	t.Logf("%d posts: %d accepted, %d refused as overloaded", n, len(accepted), len(refused))
	if len(refused) == 0 {
		t.Fatal("a queue of one never overflowed")
	}
	if uint64(len(accepted))+1 != s.log.Size() {
		t.Fatalf("%d accepted but the log holds %d entries after its genesis", len(accepted), s.log.Size()-1)
	}
	seen := map[uint64]bool{}
	for _, a := range accepted {
		if seen[a.rc.Index] {
			t.Fatalf("index %d given twice", a.rc.Index)
		}
		seen[a.rc.Index] = true
		e, _ := s.entry(a.rc.Index)
		if !bytes.Equal(e.Envelope, a.body) {
			t.Fatalf("entry %d does not hold the record its 201 was for", a.rc.Index)
		}
	}
	// What was turned away is accepted when posted again in quiet.
	for _, r := range refused {
		if got := s.post(r.body, "application/json"); got.status != http.StatusCreated {
			t.Fatalf("retry: status %d: %s", got.status, got.body)
		}
	}
	if rep := s.checkLog(nil); rep.Size != uint64(n)+1 {
		t.Fatalf("log of %d entries, want %d", rep.Size, n+1)
	}
}

// appenderFunc adapts a function to ingest.Appender.
type appenderFunc func(context.Context, ledger.Record) (ledger.Receipt, error)

func (f appenderFunc) Append(ctx context.Context, r ledger.Record) (ledger.Receipt, error) {
	return f(ctx, r)
}

// TestPostRecordAppendFailures: a failing log is a 503 with Retry-After;
// nothing about storage leaks into the answer.
func TestPostRecordAppendFailures(t *testing.T) {
	s := newTestServer(t)
	for name, err := range map[string]error{
		"overloaded": ledger.ErrOverloaded,
		"closed":     ledger.ErrClosed,
		"storage":    fmt.Errorf("%w: disk on fire at /var/lib/evident", ledger.ErrStorage),
		"other":      fmt.Errorf("something unexpected"),
	} {
		t.Run(name, func(t *testing.T) {
			v, _ := verifier.New(s.trust, s.logKey.priv.Public())
			h := ingest.New(ingest.Config{Log: appenderFunc(func(context.Context, ledger.Record) (ledger.Receipt, error) {
				return ledger.Receipt{}, err
			}), Verifier: v, Clock: func() time.Time { return serverNow }})
			mux := http.NewServeMux()
			h.Register(mux)
			srv := newHTTPServer(t, mux)
			resp, perr := http.Post(srv+"/v1/records", "application/json", bytes.NewReader(s.signedPlan("CHG-1")))
			if perr != nil {
				t.Fatal(perr)
			}
			defer resp.Body.Close()
			var e api.ErrorBody
			json.NewDecoder(resp.Body).Decode(&e)
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || e.Code == "" {
				t.Errorf("status %d, Retry-After %q, code %q", resp.StatusCode, resp.Header.Get("Retry-After"), e.Code)
			}
			if strings.Contains(e.Error, "/var/lib") {
				t.Errorf("storage detail leaked: %s", e.Error)
			}
		})
	}
}
