package ingest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

// LogState is what EnsureTrust reads of the log.
type LogState interface {
	Size() uint64
	Lookup(ctx context.Context, q ledger.Query) ([]uint64, error)
	Leaf(ctx context.Context, index uint64) ([]byte, error)
}

// Genesis describes the log's first start.
type Genesis struct {
	Operator string // who bootstrapped: from the command line or config
	Origin   string
	LogKey   string // note verifier key
	Versions map[string]string
	Now      time.Time
	// Policies is the active policy set, when the server judges records
	// with policies: recorded in a trust.updated entry whenever its digest
	// differs from the one last recorded, so that every decision's
	// bundleSha256 names a policy set the log holds.
	Policies *evidence.PolicySet
}

// EnsureTrust makes the log record the trust configuration the server runs
// with: the bootstrap entry on an empty log, a trust.updated entry when the
// configuration (or the policy set, g.Policies) differs from the one last
// recorded, nothing otherwise. The log's own records are signed with the
// log key.
func EnsureTrust(ctx context.Context, log interface {
	LogState
	Appender
}, key crypto.Signer, trust verifier.TrustConfig, g Genesis) error {
	canonical, err := trust.Canonical()
	if err != nil {
		return err
	}
	sum := sha256.Sum256(canonical)
	digest := hex.EncodeToString(sum[:])
	t := evidence.Transition{
		Actor:      g.Operator,
		OccurredAt: g.Now.UTC(),
	}
	if log.Size() == 0 {
		t.Kind, t.ChangeID = evidence.KindBootstrap, "bootstrap"
		t.Bootstrap = &evidence.Bootstrap{
			Operator: g.Operator, LogOrigin: g.Origin, LogKey: g.LogKey,
			TrustDigest: digest, Trust: canonical, Versions: g.Versions,
		}
		t.Bootstrap.Policies = g.Policies
		return appendOwn(ctx, log, key, digest, t)
	}
	current, policies, err := recordedTrust(ctx, log)
	if err != nil {
		return err
	}
	sameTrust := bytes.Equal(current, canonical)
	samePolicies := g.Policies == nil || g.Policies.BundleSHA256 == policies
	if sameTrust && samePolicies {
		return nil
	}
	var changed []string
	if !sameTrust {
		changed = append(changed, "trust configuration changed")
	}
	if !samePolicies {
		changed = append(changed, "policy set changed to "+g.Policies.BundleSHA256)
	}
	t.Kind, t.ChangeID = evidence.KindTrustUpdated, "trust-"+digest[:12]
	t.Trust = &evidence.Trust{Digest: digest, Description: strings.Join(changed, "; ") + " at server start", Config: canonical}
	if !samePolicies {
		t.Trust.Policies = g.Policies
		t.ChangeID = "policies-" + g.Policies.BundleSHA256[:12]
	}
	return appendOwn(ctx, log, key, digest, t)
}

// appendOwn signs one of the log's own trust records with the log key and
// appends it.
func appendOwn(ctx context.Context, log Appender, key crypto.Signer, digest string, t evidence.Transition) error {
	st := evidence.Statement{
		Type:          evidence.StatementType,
		Subject:       []evidence.Subject{{Name: "trust-configuration", Digest: map[string]string{"sha256": digest}}},
		PredicateType: evidence.PredicateType,
		Predicate:     t,
	}
	payload, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode %s record: %w", t.Kind, err)
	}
	env, err := verifier.SignEnvelope(key, payload)
	if err != nil {
		return err
	}
	v, err := verifier.New(verifier.TrustConfig{}, key.Public())
	if err != nil {
		return err
	}
	verified, err := v.Verify(env)
	if err != nil {
		return fmt.Errorf("the log's own %s record does not verify: %w", t.Kind, err)
	}
	_, err = log.Append(ctx, ledger.Record{
		Envelope: env,
		Digest:   verified.Digest,
		Signer:   verified.Signer,
		Terms:    ledger.TermsFor(verified.Statement, evidence.EntryMeta{}),
	})
	if err != nil {
		return fmt.Errorf("append %s record: %w", t.Kind, err)
	}
	return nil
}

// recordedTrust returns the trust configuration of the latest bootstrap or
// trust.updated entry, and the digest of the latest policy set recorded
// ("" if none).
func recordedTrust(ctx context.Context, log LogState) ([]byte, string, error) {
	idx, err := log.Lookup(ctx, ledger.Query{Name: ledger.TermKind, Value: string(evidence.KindBootstrap), Limit: 1})
	if err != nil {
		return nil, "", fmt.Errorf("find the bootstrap record: %w", err)
	}
	updates, err := log.Lookup(ctx, ledger.Query{Name: ledger.TermKind, Value: string(evidence.KindTrustUpdated), Limit: 1 << 20})
	if err != nil {
		return nil, "", fmt.Errorf("find trust records: %w", err)
	}
	idx = append(idx, updates...)
	var config []byte
	policies := ""
	for i := len(idx) - 1; i >= 0 && (config == nil || policies == ""); i-- {
		st, err := statementAt(ctx, log, idx[i])
		if err != nil {
			return nil, "", err
		}
		p := st.Predicate
		switch {
		case policies != "":
		case p.Trust != nil && p.Trust.Policies != nil:
			policies = p.Trust.Policies.BundleSHA256
		case p.Bootstrap != nil && p.Bootstrap.Policies != nil:
			policies = p.Bootstrap.Policies.BundleSHA256
		}
		if config != nil {
			continue
		}
		switch {
		case p.Trust != nil && len(p.Trust.Config) > 0:
			config = p.Trust.Config
		case p.Bootstrap != nil:
			config = p.Bootstrap.Trust
		}
	}
	if config == nil {
		return nil, "", errors.New("the log has entries but no bootstrap record")
	}
	return config, policies, nil
}

func statementAt(ctx context.Context, log LogState, index uint64) (*evidence.Statement, error) {
	leaf, err := log.Leaf(ctx, index)
	if err != nil {
		return nil, err
	}
	e, err := evidence.ParseLeaf(leaf)
	if err != nil {
		return nil, fmt.Errorf("entry %d: %w", index, err)
	}
	_, payload, err := verifier.DecodeEnvelope(e.Envelope)
	if err != nil {
		return nil, fmt.Errorf("entry %d: %w", index, err)
	}
	st, err := evidence.Decode(payload)
	if err != nil {
		return nil, fmt.Errorf("entry %d: %w", index, err)
	}
	return st, nil
}

// RotateLogKey appends the trust.updated entry that hands the log over to a
// new log key: signed by the key in force (current), it names next, the new
// key's note verifier key, and names the trust configuration last recorded
// by its digest only (it changes no trust, and rotation proofs are public). The ledger then signs the first checkpoint
// after it with both keys and later ones with next alone; every later record
// of the log's own must be signed with next (docs/keys.md).
func RotateLogKey(ctx context.Context, log interface {
	LogState
	Appender
}, current crypto.Signer, next, operator string, now time.Time) error {
	config, _, err := recordedTrust(ctx, log)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(config)
	digest := hex.EncodeToString(sum[:])
	t := evidence.Transition{
		Kind:       evidence.KindTrustUpdated,
		ChangeID:   "log-key-rotation",
		Actor:      operator,
		OccurredAt: now.UTC(),
		Trust: &evidence.Trust{
			Digest:      digest,
			Description: "log key rotated to " + next,
			LogKey:      next,
		},
	}
	return appendOwn(ctx, log, current, digest, t)
}
