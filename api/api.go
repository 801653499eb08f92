// Package api holds the JSON types of Evident's HTTP API that a server and
// its clients share: what a posted record, the apply gate and the proof
// endpoints answer. It is the wire, nothing else, so that a program that
// only talks to a server (the client SDK, a runner, an auditor's tool)
// does not link the server.
package api

import (
	"encoding/json"
	"time"

	"evident.dev/evident/approvals"
	"evident.dev/evident/evidence"
)

// Receipt is the answer to a posted record (POST /v1/records).
type Receipt struct {
	Index      uint64          `json:"index"`
	EntryHash  string          `json:"entryHash"`
	LeafHash   string          `json:"leafHash"`
	ReceivedAt time.Time       `json:"receivedAt"`
	Duplicate  bool            `json:"duplicate"`
	Signer     evidence.Signer `json:"signer"`
	Kind       evidence.Kind   `json:"kind"`
	ChangeID   string          `json:"changeId"`
	// Findings and Decision are the new entry's; a duplicate's receipt
	// leaves them out (GET /v1/entries/{index} has the original's).
	Findings []evidence.Finding `json:"findings,omitempty"`
	Decision *evidence.Policy   `json:"decision,omitempty"`
	// PolicyDecisionSHA256 is what an approval of this change binds to.
	PolicyDecisionSHA256 string `json:"policyDecisionSha256,omitempty"`
}

// ErrorBody is every refusal's body.
type ErrorBody struct {
	Error  string                `json:"error"`
	Code   string                `json:"code"`
	Fields []evidence.FieldError `json:"fields,omitempty"`
}

// GateAnswer is the answer of POST /v1/gate/apply.
type GateAnswer struct {
	approvals.GateDecision
	// Entry is the receipt of the gate.decided entry recording the decision.
	Entry Receipt `json:"entry"`
}

// LogKeys is GET /v1/log-keys: the log's chain of keys, so that an auditor
// who pinned the genesis key can follow it to the key signing checkpoints
// now (audit.FollowLogKeys) without trusting the server.
type LogKeys struct {
	Genesis   string       `json:"genesis"`
	Current   string       `json:"current"`
	Rotations []LogKeyStep `json:"rotations"`
}

// Entry is GET /v1/entries/{index}.
type Entry struct {
	Index        uint64             `json:"index"`
	EntryHash    string             `json:"entryHash"`
	LeafHash     string             `json:"leafHash"`
	PrevHash     string             `json:"prevHash"`
	Leaf         []byte             `json:"leaf"` // the exact bytes the tree commits to
	Envelope     json.RawMessage    `json:"envelope"`
	Signer       evidence.Signer    `json:"signer"`
	RecordDigest string             `json:"recordDigest"`
	Findings     []evidence.Finding `json:"findings"`
	ReceivedAt   time.Time          `json:"receivedAt"`
}

// Proof is both proof endpoints' answer: base64 SHA-256 hashes, in RFC
// 6962 order.
type Proof struct {
	Hashes [][]byte `json:"hashes"`
}

// LogKeyStep proves one log key rotation to whoever trusts the key before
// it (docs/keys.md): the trust.updated entry at Index, signed by that key
// and naming the new one, the first checkpoint covering it, signed by both
// keys, and the entry's RFC 6962 inclusion proof in that checkpoint.
type LogKeyStep struct {
	Index      uint64   `json:"index"`
	Leaf       []byte   `json:"leaf"`
	Checkpoint string   `json:"checkpoint"`
	Proof      [][]byte `json:"proof"`
}
