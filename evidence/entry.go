package evidence

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// LeafHeader is the first line of every leaf: the entry encoding's version.
const LeafHeader = "evident.dev/entry/v1"

// Entry is one record as the log holds it. Its leaf encoding is what the log's
// RFC 6962 Merkle tree commits to and what the hash chain links:
//
//	evident.dev/entry/v1\n
//	<log origin>\n
//	<index, decimal>\n
//	<previous entry hash, 64 lowercase hex; 64 zeros for index 0>\n
//	<receivedAt, RFC 3339 UTC with nanoseconds>\n
//	<metadata: compact JSON {"signer":…,"recordDigest":…,"findings":[…]}>\n
//	<envelope: the DSSE envelope as compact JSON>\n
//
// The entry hash is SHA-256(leaf); the Merkle leaf hash is SHA-256(0x00 || leaf).
// Compact JSON holds no raw newline, so the seven lines split unambiguously.
type Entry struct {
	Origin     string
	Index      uint64
	PrevHash   [sha256.Size]byte
	ReceivedAt time.Time
	Meta       EntryMeta
	Envelope   json.RawMessage // compact JSON

	// statement, if set, is the statement Envelope carries, decoded when the
	// record was verified (SetStatement).
	statement *Statement
}

// SetStatement gives e the statement its envelope carries, decoded by the
// verifier as the record was posted, so that Statement need not decode it
// again. Call it before e is shared; st is then shared too: read-only.
func (e *Entry) SetStatement(st *Statement) { e.statement = st }

// EntryMeta is what the log adds to a record: who verifiably signed it, the
// record's identity, the verifier's and policies' findings, and the policy
// decision when the active policy set judged the record.
type EntryMeta struct {
	Signer       Signer    `json:"signer"`
	RecordDigest string    `json:"recordDigest"` // hex SHA-256 of the DSSE PAE
	Findings     []Finding `json:"findings"`
	Decision     *Policy   `json:"decision,omitempty"`
}

// Signer is a verified identity: a registered key (Name is the runner, KeyID
// the key's hex SHA-256 of its PKIX DER) or a keyless certificate identity
// (Name is the subject alternative name, Issuer the OIDC issuer, KeyID the
// hex SHA-256 of the leaf certificate's DER).
type Signer struct {
	Name   string `json:"name"`
	KeyID  string `json:"keyId"`
	Issuer string `json:"issuer,omitempty"`
}

// Finding is one observation about a record by the verifier or a policy,
// stored with the entry: a record reporting something bad is still appended.
type Finding struct {
	Code     string `json:"code"`
	Severity string `json:"severity,omitempty"`
	Message  string `json:"message,omitempty"`
	// Evidence names what the finding was computed from, e.g. the digest of
	// the group-membership snapshot or the approval entry's index.
	Evidence map[string]string `json:"evidence,omitempty"`
}

// Leaf encodes the entry. The envelope must already be compact JSON.
func (e *Entry) Leaf() ([]byte, error) {
	return e.AppendLeaf(make([]byte, 0, len(LeafHeader)+len(e.Origin)+256+len(e.Envelope)))
}

// AppendLeaf appends the entry's leaf encoding to dst.
func (e *Entry) AppendLeaf(dst []byte) ([]byte, error) {
	if strings.ContainsAny(e.Origin, "\n") || e.Origin == "" {
		return nil, errors.New("entry: origin must be one non-empty line")
	}
	if bytes.IndexByte(e.Envelope, '\n') >= 0 || len(e.Envelope) == 0 {
		return nil, errors.New("entry: envelope must be compact JSON")
	}
	meta := e.Meta
	if meta.Findings == nil {
		meta.Findings = []Finding{}
	}
	metaJSON, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("entry: encode metadata: %w", err)
	}
	dst = slices.Grow(dst, len(LeafHeader)+len(e.Origin)+128+len(metaJSON)+len(e.Envelope))
	dst = append(dst, LeafHeader...)
	dst = append(dst, '\n')
	dst = append(dst, e.Origin...)
	dst = append(dst, '\n')
	dst = strconv.AppendUint(dst, e.Index, 10)
	dst = append(dst, '\n')
	dst = hex.AppendEncode(dst, e.PrevHash[:])
	dst = append(dst, '\n')
	dst = e.ReceivedAt.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '\n')
	dst = append(dst, metaJSON...)
	dst = append(dst, '\n')
	dst = append(dst, e.Envelope...)
	return append(dst, '\n'), nil
}

// LeafPrefix is the cheap part of a leaf: enough to check the hash chain
// without decoding JSON.
type LeafPrefix struct {
	Origin   string
	Index    uint64
	PrevHash [sha256.Size]byte
}

// ParseLeafPrefix reads the origin, index and previous hash of a leaf.
func ParseLeafPrefix(leaf []byte) (LeafPrefix, error) {
	var p LeafPrefix
	lines, err := splitLeaf(leaf, 4)
	if err != nil {
		return p, err
	}
	if string(lines[0]) != LeafHeader {
		return p, fmt.Errorf("leaf: first line must be %q", LeafHeader)
	}
	p.Origin = string(lines[1])
	if p.Origin == "" {
		return p, errors.New("leaf: empty origin")
	}
	p.Index, err = strconv.ParseUint(string(lines[2]), 10, 64)
	if err != nil || (len(lines[2]) > 1 && lines[2][0] == '0') {
		return p, fmt.Errorf("leaf: index %q is not a canonical decimal number", lines[2])
	}
	if len(lines[3]) != 2*sha256.Size {
		return p, errors.New("leaf: previous hash must be 64 hex characters")
	}
	if _, err := hex.Decode(p.PrevHash[:], lines[3]); err != nil || bytes.ContainsAny(lines[3], "ABCDEF") {
		return p, errors.New("leaf: previous hash must be lowercase hex")
	}
	return p, nil
}

// ParseLeaf decodes a whole leaf. It refuses any leaf that Leaf would not
// have produced byte for byte, so one entry has exactly one encoding.
func ParseLeaf(leaf []byte) (*Entry, error) {
	p, err := ParseLeafPrefix(leaf)
	if err != nil {
		return nil, err
	}
	lines, err := splitLeaf(leaf, 7)
	if err != nil {
		return nil, err
	}
	if len(leaf) == 0 || leaf[len(leaf)-1] != '\n' || bytes.Count(leaf, []byte{'\n'}) != 7 {
		return nil, errors.New("leaf: must be exactly seven newline-terminated lines")
	}
	e := &Entry{Origin: p.Origin, Index: p.Index, PrevHash: p.PrevHash}
	e.ReceivedAt, err = time.Parse(time.RFC3339Nano, string(lines[4]))
	if err != nil {
		return nil, fmt.Errorf("leaf: receivedAt: %w", err)
	}
	if err := jsonv2.Unmarshal(lines[5], &e.Meta, jsonv2.RejectUnknownMembers(true)); err != nil {
		return nil, fmt.Errorf("leaf: metadata: %w", err)
	}
	if !jsontext.Value(lines[6]).IsValid() {
		return nil, errors.New("leaf: envelope is not valid JSON")
	}
	e.Envelope = json.RawMessage(lines[6])
	again, err := e.Leaf()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(again, leaf) {
		return nil, errors.New("leaf: not in canonical form")
	}
	return e, nil
}

// splitLeaf returns the first n lines of a leaf, without their newlines.
func splitLeaf(leaf []byte, n int) ([][]byte, error) {
	lines := make([][]byte, 0, n)
	rest := leaf
	for len(lines) < n {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			return nil, fmt.Errorf("leaf: truncated after %d lines", len(lines))
		}
		lines = append(lines, rest[:i])
		rest = rest[i+1:]
	}
	return lines, nil
}

// EntryHash is the chain hash of a leaf: SHA-256(leaf).
func EntryHash(leaf []byte) [sha256.Size]byte { return sha256.Sum256(leaf) }

// dsseFields are the parts of a DSSE envelope Statement reads.
type dsseFields struct {
	PayloadType string `json:"payloadType"`
	Payload     string `json:"payload"`
}

// Statement decodes the statement an entry's envelope carries: a DSSE
// envelope, or a keyless record's Sigstore bundle (whose dsseEnvelope is the
// envelope). It does not check signatures: the entry is already in the log.
// The result may be shared with other readers (SetStatement): read-only.
func (e *Entry) Statement() (*Statement, error) {
	if e.statement != nil {
		return e.statement, nil
	}
	var env struct {
		PayloadType string      `json:"payloadType"`
		Payload     string      `json:"payload"`
		Bundled     *dsseFields `json:"dsseEnvelope"`
	}
	if err := jsonv2.Unmarshal(e.Envelope, &env); err != nil {
		return nil, fmt.Errorf("entry %d: envelope: %s", e.Index, DescribeJSONError(err))
	}
	if env.Bundled != nil {
		env.PayloadType, env.Payload = env.Bundled.PayloadType, env.Bundled.Payload
	}
	if env.PayloadType != PayloadType {
		return nil, fmt.Errorf("entry %d: envelope payloadType %q", e.Index, env.PayloadType)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		// DSSE allows either base64 alphabet.
		if payload, err = base64.URLEncoding.DecodeString(env.Payload); err != nil {
			return nil, fmt.Errorf("entry %d: envelope payload is not base64", e.Index)
		}
	}
	return Decode(payload)
}

// Severities of findings.
const (
	SeverityError   = "error"
	SeverityWarning = "warning"
)
