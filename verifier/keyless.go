package verifier

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"google.golang.org/protobuf/encoding/protojson"

	"evident.dev/evident/evidence"
)

// BundleMediaType is the Content-Type of a Sigstore bundle v0.3 posted as a
// record: a keyless record whose content is the DSSE envelope.
const BundleMediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"

// A keyless record is stored in the log as the Sigstore bundle itself
// (compact JSON on the leaf's envelope line): the bundle holds the DSSE
// envelope and everything needed to re-verify it offline (certificate, Rekor
// inclusion proof, timestamps), and the trusted root is part of the trust
// configuration the log records. evidence.Entry.Statement reads the
// statement out of either form.

// trustedIdentity is a keyless signer the trust configuration lists.
type trustedIdentity struct {
	name   string
	san    string
	sanRE  *regexp.Regexp
	issuer string
	scope  Scope
}

func (id *trustedIdentity) matches(san, issuer string) bool {
	if issuer != id.issuer {
		return false
	}
	if id.sanRE != nil {
		return id.sanRE.MatchString(san)
	}
	return san == id.san
}

// newKeyless compiles the keyless part of a trust configuration.
// The Sigstore verifier also checks artifact signatures, so it exists
// whenever a trusted root is configured.
func newKeyless(cfg TrustConfig) ([]trustedIdentity, *verify.Verifier, error) {
	if cfg.Sigstore == nil {
		if len(cfg.Identities) > 0 {
			return nil, nil, errors.New("trust.identities: keyless identities need trust.sigstore.trustedRoot")
		}
		return nil, nil, nil
	}
	if len(cfg.Sigstore.TrustedRoot) == 0 {
		return nil, nil, errors.New("trust.sigstore.trustedRoot is required")
	}
	tr, err := root.NewTrustedRootFromJSON(cfg.Sigstore.TrustedRoot)
	if err != nil {
		return nil, nil, fmt.Errorf("trust.sigstore.trustedRoot: %w", err)
	}
	opts := []verify.VerifierOption{verify.WithObserverTimestamps(1), verify.WithoutStatementPredicate()}
	if !cfg.Sigstore.AllowTimestampOnly {
		opts = append(opts, verify.WithTransparencyLog(1))
	}
	sv, err := verify.NewVerifier(tr, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("trust.sigstore: %w", err)
	}
	ids := make([]trustedIdentity, 0, len(cfg.Identities))
	for i, id := range cfg.Identities {
		where := fmt.Sprintf("trust.identities[%d] (%s)", i, id.Name)
		switch {
		case id.Name == "":
			return nil, nil, fmt.Errorf("trust.identities[%d]: name is required", i)
		case id.Name == LogSigner:
			return nil, nil, fmt.Errorf("%s: the name %q is reserved for the log", where, LogSigner)
		case id.Issuer == "":
			return nil, nil, fmt.Errorf("%s: issuer is required", where)
		case (id.SAN == "") == (id.SANRegexp == ""):
			return nil, nil, fmt.Errorf("%s: give exactly one of san and sanRegexp", where)
		case len(id.Scope.Environments) == 0:
			return nil, nil, fmt.Errorf("%s: scope.environments is required (use \"*\" for all)", where)
		}
		t := trustedIdentity{name: id.Name, san: id.SAN, issuer: id.Issuer, scope: id.Scope}
		if id.SANRegexp != "" {
			// Anchored: "ci@example.com" must not match "evil-ci@example.com.attacker".
			if t.sanRE, err = regexp.Compile(`^(?:` + id.SANRegexp + `)$`); err != nil {
				return nil, nil, fmt.Errorf("%s: sanRegexp: %w", where, err)
			}
		}
		ids = append(ids, t)
	}
	return ids, sv, nil
}

// isBundle tells a Sigstore bundle from a DSSE envelope: a bundle has a
// top-level mediaType, which an envelope never has (and DecodeEnvelope would
// refuse as an unknown member anyway).
func isBundle(raw []byte) bool {
	return bytes.Contains(raw, []byte(`"mediaType"`))
}

// DecodeBundle parses a Sigstore bundle strictly (known fields only, a
// supported version, a DSSE envelope as content).
func DecodeBundle(raw []byte) (*bundle.Bundle, error) {
	pb := new(protobundle.Bundle)
	if err := protojson.Unmarshal(raw, pb); err != nil {
		return nil, fmt.Errorf("%w: sigstore bundle: %v", ErrMalformed, err)
	}
	b, err := bundle.NewBundle(pb)
	if err != nil {
		return nil, fmt.Errorf("%w: sigstore bundle: %v", ErrMalformed, err)
	}
	if pb.GetDsseEnvelope() == nil {
		return nil, fmt.Errorf("%w: sigstore bundle: content must be a DSSE envelope (dsseEnvelope)", ErrMalformed)
	}
	return b, nil
}

// verifyBundle authenticates a keyless record: the bundle verifies against
// the trusted root (certificate chain at the observed time, transparency-log
// inclusion or signed timestamp, signature over the envelope), and the
// certificate identity is one the trust configuration lists.
func (v *Verifier) verifyBundle(raw []byte) (*Verified, error) {
	b, err := DecodeBundle(raw)
	if err != nil {
		return nil, err
	}
	pe := b.GetDsseEnvelope()
	if pe.GetPayloadType() != evidence.PayloadType {
		return nil, fmt.Errorf("%w: payloadType must be %q, got %q", ErrMalformed, evidence.PayloadType, pe.GetPayloadType())
	}
	if len(pe.GetPayload()) == 0 {
		return nil, fmt.Errorf("%w: payload: empty", ErrMalformed)
	}
	if len(pe.GetSignatures()) > maxSignatures {
		return nil, fmt.Errorf("%w: signatures: at most %d allowed", ErrMalformed, maxSignatures)
	}
	if len(v.identities) == 0 {
		return nil, fmt.Errorf("%w: keyless bundle, but the trust configuration lists no keyless identities", ErrUntrusted)
	}
	vc, err := b.VerificationContent()
	if err != nil {
		return nil, fmt.Errorf("%w: sigstore bundle: %v", ErrMalformed, err)
	}
	cert := vc.Certificate()
	if cert == nil {
		return nil, fmt.Errorf("%w: sigstore bundle: signed with a public key, not a certificate; register the key as a runner instead", ErrUntrusted)
	}
	res, err := v.sigstore.Verify(b, verify.NewPolicy(verify.WithoutArtifactUnsafe(), verify.WithoutIdentitiesUnsafe()))
	if err != nil {
		return nil, fmt.Errorf("%w: sigstore bundle: %v", ErrUntrusted, err)
	}
	if res.Signature == nil || res.Signature.Certificate == nil {
		return nil, fmt.Errorf("%w: sigstore bundle: no certificate identity", ErrUntrusted)
	}
	san, issuer := res.Signature.Certificate.SubjectAlternativeName, res.Signature.Certificate.Issuer
	var id *trustedIdentity
	for i := range v.identities {
		if v.identities[i].matches(san, issuer) {
			id = &v.identities[i]
			break
		}
	}
	if id == nil {
		return nil, fmt.Errorf("%w: certificate identity %q (issuer %q) is not in the trust configuration", ErrUntrusted, san, issuer)
	}
	payload := pe.GetPayload()
	st, err := evidence.Decode(payload)
	if err != nil {
		return nil, err
	}
	k := trustedKey{name: id.name, scope: id.scope}
	if err := k.permits(st.Predicate); err != nil {
		return nil, err
	}
	sigs := make([]dsse.Signature, len(pe.GetSignatures()))
	for i, s := range pe.GetSignatures() {
		sigs[i] = dsse.Signature{KeyID: s.GetKeyid(), Sig: base64.StdEncoding.EncodeToString(s.GetSig())}
	}
	certSum := sha256.Sum256(cert.Raw)
	return &Verified{
		Envelope: dsse.Envelope{
			PayloadType: pe.GetPayloadType(),
			Payload:     base64.StdEncoding.EncodeToString(payload),
			Signatures:  sigs,
		},
		Payload:         payload,
		Statement:       st,
		Signer:          Signer{Name: san, Issuer: issuer, KeyID: hex.EncodeToString(certSum[:])},
		Digest:          sha256.Sum256(dsse.PAE(pe.GetPayloadType(), payload)),
		Approver:        san,
		RelaysApprovals: id.scope.RelayApprovals,
		Keyless:         true,
	}, nil
}
