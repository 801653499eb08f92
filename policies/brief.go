package policies

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"evident.dev/evident/evidence"
)

// briefStatement is the part of a record the tracker folds in. Unknown
// members are skipped, so it decodes far less than evidence.Decode.
type briefStatement struct {
	Subject []struct {
		Name string `json:"name"`
	} `json:"subject"`
	Predicate struct {
		Kind       evidence.Kind   `json:"kind"`
		ChangeID   string          `json:"changeId"`
		OccurredAt time.Time       `json:"occurredAt"`
		Emergency  bool            `json:"emergency"`
		Target     evidence.Target `json:"target"`
		Artifacts  []struct {
			Name string `json:"name"`
		} `json:"artifacts"`
		Exception *evidence.Exception `json:"exception"`
	} `json:"predicate"`
}

// readBrief reads what the tracker needs of a leaf: the record's kind,
// change, target, artifact names and exception, and whether the entry
// carries a policy decision. It skips the checks evidence.ParseLeaf and
// evidence.Decode make, which the log made when it appended the entry and
// `evident verify` makes again: the tracker reads every entry once, beside
// ingest, and must cost ingest little.
func readBrief(leaf []byte) (*evidence.Statement, bool, error) {
	var lines [7][]byte
	rest := leaf
	for i := range lines {
		n := bytes.IndexByte(rest, '\n')
		if n < 0 {
			return nil, false, errors.New("leaf: truncated")
		}
		lines[i], rest = rest[:n], rest[n+1:]
	}
	var meta struct {
		Decision jsontext.Value `json:"decision"`
	}
	if err := json.Unmarshal(lines[5], &meta); err != nil {
		return nil, false, fmt.Errorf("leaf metadata: %w", err)
	}
	var env struct {
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(lines[6], &env); err != nil {
		return nil, false, fmt.Errorf("leaf envelope: %w", err)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		if payload, err = base64.URLEncoding.DecodeString(env.Payload); err != nil {
			return nil, false, errors.New("leaf envelope: payload is not base64")
		}
	}
	var b briefStatement
	if err := json.Unmarshal(payload, &b); err != nil {
		return nil, false, fmt.Errorf("leaf statement: %w", err)
	}
	p := b.Predicate
	st := &evidence.Statement{Predicate: evidence.Transition{
		Kind: p.Kind, ChangeID: p.ChangeID, OccurredAt: p.OccurredAt, Emergency: p.Emergency,
		Target: p.Target, Exception: p.Exception,
	}}
	for _, s := range b.Subject {
		st.Subject = append(st.Subject, evidence.Subject{Name: s.Name})
	}
	for _, a := range p.Artifacts {
		st.Predicate.Artifacts = append(st.Predicate.Artifacts, evidence.Artifact{Name: a.Name})
	}
	decided := len(meta.Decision) > 0 && string(meta.Decision) != "null"
	return st, decided, nil
}
