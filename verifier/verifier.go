// Package verifier decides whether a posted record is authentic: a DSSE
// envelope (https://github.com/secure-systems-lab/dsse/blob/master/protocol.md)
// signed by a key the trust configuration lists, or a Sigstore bundle
// (https://github.com/sigstore/protobuf-specs) whose certificate identity it
// lists, carrying a valid transition statement about a target inside the
// signer's scope. It also admits artifacts (artifacts.go: signed, built from
// a protected branch, with provenance), because that too is a question of
// signatures against the trust configuration it holds. Checking a whole log,
// an export or an evidence pack is the audit package's; whether approvals
// count is the approvals package's.
//
// It is pure code with no I/O, so an auditor's tool can import it to re-check
// a record with the trust configuration recorded in the log.
package verifier

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/go-json-experiment/json"

	voied25519 "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore-go/pkg/verify"

	"evident.dev/evident/evidence"
)

// Sentinel errors callers branch on; every error returned wraps one of them,
// or is an *evidence.ValidationError.
var (
	// ErrMalformed: the envelope is not a well-formed DSSE envelope.
	ErrMalformed = errors.New("malformed envelope")
	// ErrUntrusted: no signature verifies with a trusted key.
	ErrUntrusted = errors.New("untrusted signer")
	// ErrOutOfScope: the signer may not report on this target or kind.
	ErrOutOfScope = errors.New("signer out of scope")
)

// LogSigner is the signer name of records the log writes itself (bootstrap,
// trust.updated): they are signed with the log key.
const LogSigner = "log"

// maxSignatures bounds the work one envelope can ask for.
const maxSignatures = 8

// Signer is the verified identity behind a record.
type Signer = evidence.Signer

// Verified is an authentic record.
type Verified struct {
	Envelope  dsse.Envelope
	Payload   []byte
	Statement *evidence.Statement
	Signer    Signer
	// Digest is SHA-256 over the DSSE pre-authentication encoding of the
	// payload: the record's identity, whatever signatures or whitespace
	// surround it. Posting the same statement twice yields the same digest.
	Digest [sha256.Size]byte
	// Approver is the person the signer speaks for: a keyless identity's
	// subject alternative name, or a registered key's configured approver.
	// Approvals count only when signed by their approver, or relayed.
	Approver string
	// RelaysApprovals: the signer's scope lets it post others' approvals.
	RelaysApprovals bool
	// Keyless: the record came as a Sigstore bundle.
	Keyless bool
	// RevokedAt is when the signing key's trust ends (nil: never). Verify
	// has no clock: the caller compares it with the time the log receives
	// the record (CheckRevocation).
	RevokedAt *time.Time
	// JudgedAt is the instant every judge uses to decide whether the
	// approvals and exceptions the record relies on were valid (JudgedAt,
	// the function). Set by ingest; zero means the record's occurredAt.
	JudgedAt time.Time
}

// MaxBackfill is how far before the log received it a record's occurredAt
// is believed when judging it, unless configured otherwise.
const MaxBackfill = 7 * 24 * time.Hour

// JudgedAt is the one clock rule of the ledger: a record is judged at the
// time it says it happened (its occurredAt), so a spooled or backfilled
// apply is judged against the approvals and exceptions valid when it ran.
// A record that claims to be older than maxBackfill before the log
// received it is not believed: it is judged at its receipt, so an old
// claimed time cannot revive an approval or exception long expired. The
// other bound, occurredAt no later than the receipt plus the allowed clock
// skew, is enforced at ingest, which refuses records from further ahead.
// The apply gate decides at the time it is asked.
func JudgedAt(occurredAt, receivedAt time.Time, maxBackfill time.Duration) time.Time {
	if occurredAt.Before(receivedAt.Add(-maxBackfill)) {
		return receivedAt
	}
	return occurredAt
}

// JudgedTime is the time v is judged at: JudgedAt as ingest set it, else
// occurredAt.
func (v *Verified) JudgedTime() time.Time {
	if !v.JudgedAt.IsZero() {
		return v.JudgedAt
	}
	return v.Statement.Predicate.OccurredAt
}

// CheckRevocation refuses a record whose key was revoked at or before
// receivedAt, the instant the log received (or receives) it.
func CheckRevocation(v *Verified, receivedAt time.Time) error {
	if v.RevokedAt == nil || receivedAt.Before(*v.RevokedAt) {
		return nil
	}
	return fmt.Errorf("%w: the key %s of %q was revoked at %s", ErrUntrusted, shortID(v.Signer.KeyID), v.Signer.Name, v.RevokedAt.UTC().Format(time.RFC3339))
}

func shortID(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}

// Revocation is a revoked key of the trust configuration.
type Revocation struct {
	Name      string
	KeyID     string
	RevokedAt time.Time
}

// Revocations lists the revoked keys of the verifier's trust configuration.
func (v *Verifier) Revocations() []Revocation {
	var out []Revocation
	for _, k := range v.keys {
		if k.revokedAt != nil {
			out = append(out, Revocation{Name: k.name, KeyID: k.id, RevokedAt: *k.revokedAt})
		}
	}
	return out
}

type trustedKey struct {
	name     string
	id       string
	key      crypto.PublicKey
	scope    Scope
	log      bool
	approver string
	// revokedAt ends the key's trust (nil: never).
	revokedAt *time.Time
	// expanded is an ed25519 key decompressed once: checking a whole log
	// verifies millions of signatures by a handful of keys.
	expanded *voied25519.ExpandedPublicKey
}

func newTrustedKey(name, id string, key crypto.PublicKey, scope Scope, log bool) (trustedKey, error) {
	k := trustedKey{name: name, id: id, key: key, scope: scope, log: log}
	if pub, ok := key.(ed25519.PublicKey); ok {
		var err error
		if k.expanded, err = voied25519.NewExpandedPublicKey(voied25519.PublicKey(pub)); err != nil {
			return trustedKey{}, fmt.Errorf("ed25519 key %s: %w", id, err)
		}
	}
	return k, nil
}

// Verifier checks envelopes and keyless bundles against one trust
// configuration. It is immutable and safe for concurrent use.
type Verifier struct {
	keys       []trustedKey
	identities []trustedIdentity
	sigstore   *verify.Verifier // nil without a trusted root
	artifacts  *artifactTrust
}

// New builds a verifier for a trust configuration. logKey, if not nil, is the
// log's own public key, the only one allowed to sign log-wide kinds.
func New(cfg TrustConfig, logKey crypto.PublicKey) (*Verifier, error) {
	v := &Verifier{}
	seen := map[string]string{}
	for i, r := range cfg.Runners {
		if r.Name == "" {
			return nil, fmt.Errorf("trust.runners[%d]: name is required", i)
		}
		if r.Name == LogSigner {
			return nil, fmt.Errorf("trust.runners[%d]: the name %q is reserved for the log", i, LogSigner)
		}
		if len(r.Scope.Environments) == 0 {
			return nil, fmt.Errorf("trust.runners[%d] (%s): scope.environments is required (use \"*\" for all)", i, r.Name)
		}
		pub, err := ParsePublicKey([]byte(r.PublicKey))
		if err != nil {
			return nil, fmt.Errorf("trust.runners[%d] (%s): %w", i, r.Name, err)
		}
		id, err := KeyID(pub)
		if err != nil {
			return nil, err
		}
		if other, dup := seen[id]; dup {
			return nil, fmt.Errorf("trust.runners[%d] (%s): same public key as %s", i, r.Name, other)
		}
		seen[id] = r.Name
		k, err := newTrustedKey(r.Name, id, pub, r.Scope, false)
		if err != nil {
			return nil, fmt.Errorf("trust.runners[%d] (%s): %w", i, r.Name, err)
		}
		k.approver = r.Approver
		if r.RevokedAt != nil {
			at := r.RevokedAt.UTC()
			k.revokedAt = &at
		}
		v.keys = append(v.keys, k)
	}
	var err error
	if v.identities, v.sigstore, err = newKeyless(cfg); err != nil {
		return nil, err
	}
	if v.artifacts, err = newArtifactTrust(cfg.Artifacts); err != nil {
		return nil, err
	}
	if logKey != nil {
		id, err := KeyID(logKey)
		if err != nil {
			return nil, err
		}
		if other, dup := seen[id]; dup {
			// The log key signs only log-wide records; as a runner's key
			// it could sign anything.
			return nil, fmt.Errorf("trust.runners (%s): the log's own key cannot be a runner's key", other)
		}
		k, err := newTrustedKey(LogSigner, id, logKey, Scope{Environments: []string{"*"}}, true)
		if err != nil {
			return nil, fmt.Errorf("log key: %w", err)
		}
		v.keys = append(v.keys, k)
	}
	return v, nil
}

// ParsePublicKey reads a PKIX PEM public key: ed25519 or ECDSA P-256.
func ParsePublicKey(pemBytes []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, errors.New("public key: not a PEM \"PUBLIC KEY\" block")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return k, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("public key: only ECDSA P-256 is supported")
		}
		return k, nil
	}
	return nil, fmt.Errorf("public key: unsupported type %T (want ed25519 or ECDSA P-256)", pub)
}

// KeyID is the DSSE keyid Evident uses: hex SHA-256 of the PKIX DER public key.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("key id: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// DecodeEnvelope parses a DSSE envelope strictly: known fields only, no
// duplicate names, the in-toto payload type, at least one signature, valid
// base64. (The JSON decoder is iterative, so nesting cannot exhaust the stack;
// anything nested in an envelope is a type error.)
func DecodeEnvelope(raw []byte) (dsse.Envelope, []byte, error) {
	var env dsse.Envelope
	if err := json.Unmarshal(raw, &env, json.RejectUnknownMembers(true)); err != nil {
		return env, nil, fmt.Errorf("%w: %s", ErrMalformed, evidence.DescribeJSONError(err))
	}
	if env.PayloadType != evidence.PayloadType {
		return env, nil, fmt.Errorf("%w: payloadType must be %q, got %q", ErrMalformed, evidence.PayloadType, env.PayloadType)
	}
	if len(env.Signatures) == 0 {
		return env, nil, fmt.Errorf("%w: signatures: at least one signature is required", ErrMalformed)
	}
	if len(env.Signatures) > maxSignatures {
		return env, nil, fmt.Errorf("%w: signatures: at most %d allowed", ErrMalformed, maxSignatures)
	}
	payload, err := decodeBase64(env.Payload)
	if err != nil || len(payload) == 0 {
		return env, nil, fmt.Errorf("%w: payload: not valid non-empty base64", ErrMalformed)
	}
	return env, payload, nil
}

// decodeBase64 accepts standard and URL-safe base64, as DSSE allows.
func decodeBase64(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return base64.URLEncoding.DecodeString(s)
	}
	return b, nil
}

// Verify decodes an envelope (or a Sigstore bundle carrying one), checks its
// signature against the trusted keys (or the keyless identities), decodes and
// validates the statement, and checks the signer's scope.
func (v *Verifier) Verify(raw []byte) (*Verified, error) {
	if isBundle(raw) {
		return v.verifyBundle(raw)
	}
	env, payload, err := DecodeEnvelope(raw)
	if err != nil {
		return nil, err
	}
	pae := dsse.PAE(env.PayloadType, payload)
	signer, err := v.authenticate(env.Signatures, pae)
	if err != nil {
		return nil, err
	}
	st, err := evidence.Decode(payload)
	if err != nil {
		return nil, err
	}
	if err := signer.permits(st.Predicate); err != nil {
		return nil, err
	}
	return &Verified{
		Envelope:  env,
		Payload:   payload,
		Statement: st,
		Signer:    Signer{Name: signer.name, KeyID: signer.id},
		Digest:    sha256.Sum256(pae),
		Approver:  signer.approver,
		// The log never relays approvals.
		RelaysApprovals: signer.scope.RelayApprovals && !signer.log,
		RevokedAt:       signer.revokedAt,
	}, nil
}

// authenticate returns the first trusted key with a valid signature. A
// signature naming a keyid is checked only against that key; one without a
// keyid is tried against every trusted key.
func (v *Verifier) authenticate(sigs []dsse.Signature, pae []byte) (*trustedKey, error) {
	var digest [sha256.Size]byte
	hashed := false
	for _, s := range sigs {
		sig, err := decodeBase64(s.Sig)
		if err != nil || len(sig) == 0 {
			return nil, fmt.Errorf("%w: signatures: sig is not valid non-empty base64", ErrMalformed)
		}
		for i := range v.keys {
			k := &v.keys[i]
			if s.KeyID != "" && s.KeyID != k.id {
				continue
			}
			switch pub := k.key.(type) {
			case ed25519.PublicKey:
				// VerifyOptionsStdLib: accept exactly what crypto/ed25519 accepts.
				opts := &voied25519.Options{Verify: voied25519.VerifyOptionsStdLib}
				if voied25519.VerifyExpandedWithOptions(k.expanded, pae, sig, opts) {
					return k, nil
				}
			case *ecdsa.PublicKey:
				if !hashed {
					digest, hashed = sha256.Sum256(pae), true
				}
				if ecdsa.VerifyASN1(pub, digest[:], sig) {
					return k, nil
				}
			}
		}
	}
	return nil, fmt.Errorf("%w: no signature verifies with a key in the trust configuration", ErrUntrusted)
}

// permits checks the signer may report this transition.
func (k *trustedKey) permits(t evidence.Transition) error {
	if t.Kind.LogWritten() != k.log {
		if k.log {
			return fmt.Errorf("%w: the log key signs only the log's own records, not %s", ErrOutOfScope, t.Kind)
		}
		return fmt.Errorf("%w: %s records are written by the log itself, not by runner %q", ErrOutOfScope, t.Kind, k.name)
	}
	if ok, why := k.scope.allows(t.Target); !ok {
		return fmt.Errorf("%w: runner %q: %s", ErrOutOfScope, k.name, why)
	}
	return nil
}
