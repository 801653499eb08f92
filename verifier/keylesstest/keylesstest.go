// Package keylesstest makes real Sigstore bundles for tests: sigstore-go's
// virtual Sigstore (pkg/testing/ca) stands in for Fulcio, Rekor and a
// timestamp authority, which cannot run here. The bundles and the trusted
// root are the same JSON documents the public-good instance produces, so the
// verifier under test runs unchanged.
package keylesstest

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"google.golang.org/protobuf/encoding/protojson"
)

// Sigstore is one virtual Sigstore instance.
type Sigstore struct {
	vs *ca.VirtualSigstore
}

// New starts a virtual Sigstore. Its CAs are valid from five hours ago to one
// hour from now, and its leaf certificates for ten minutes after issuance.
func New() (*Sigstore, error) {
	vs, err := ca.NewVirtualSigstore()
	if err != nil {
		return nil, fmt.Errorf("virtual sigstore: %w", err)
	}
	return &Sigstore{vs: vs}, nil
}

// TrustedRoot is the instance's trusted_root.json.
func (s *Sigstore) TrustedRoot() ([]byte, error) {
	rekor, err := rawIDs(s.vs.RekorLogs())
	if err != nil {
		return nil, err
	}
	ct, err := rawIDs(s.vs.CTLogs())
	if err != nil {
		return nil, err
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01,
		s.vs.FulcioCertificateAuthorities(), ct, s.vs.TimestampingAuthorities(), rekor)
	if err != nil {
		return nil, err
	}
	return tr.MarshalJSON()
}

// rawIDs gives the virtual logs the log IDs a real trusted root has: the
// virtual Sigstore names them by the hex string's bytes, while a trusted
// root (and every tlog entry) carries the raw key ID.
func rawIDs(logs map[string]*root.TransparencyLog) (map[string]*root.TransparencyLog, error) {
	out := make(map[string]*root.TransparencyLog, len(logs))
	for id, l := range logs {
		raw, err := hex.DecodeString(id)
		if err != nil {
			return nil, fmt.Errorf("virtual log id %q: %w", id, err)
		}
		c := *l
		c.ID = raw
		out[id] = &c
	}
	return out, nil
}

// Options shape a bundle.
type Options struct {
	// NoTlog leaves out the Rekor entry; NoTimestamp the RFC 3161 timestamp.
	NoTlog, NoTimestamp bool
	// LoggedAt is the Rekor entry's integrated time; zero means one minute
	// after the certificate was issued (now).
	LoggedAt time.Time
}

// Bundle signs an in-toto statement (the DSSE payload) as identity (the
// certificate's subject alternative name) with a token from issuer, and
// returns the v0.3 bundle JSON.
func (s *Sigstore) Bundle(identity, issuer string, statement []byte, o Options) ([]byte, error) {
	at := o.LoggedAt
	if at.IsZero() {
		at = time.Now().Add(time.Minute)
	}
	ent, err := s.vs.AttestAtTime(identity, issuer, statement, at, true)
	if err != nil {
		return nil, fmt.Errorf("attest: %w", err)
	}
	vc, err := ent.VerificationContent()
	if err != nil {
		return nil, err
	}
	cert := vc.Certificate()
	sc, err := ent.SignatureContent()
	if err != nil {
		return nil, err
	}
	env, ok := sc.(*bundle.Envelope)
	if !ok {
		return nil, errors.New("attest: no DSSE envelope")
	}
	pe := &protodsse.Envelope{PayloadType: env.PayloadType}
	if pe.Payload, err = base64.StdEncoding.DecodeString(env.Payload); err != nil {
		return nil, err
	}
	for _, sig := range env.Signatures {
		raw, err := base64.StdEncoding.DecodeString(sig.Sig)
		if err != nil {
			return nil, err
		}
		pe.Signatures = append(pe.Signatures, &protodsse.Signature{Sig: raw, Keyid: sig.KeyID})
	}
	vm := &protobundle.VerificationMaterial{
		Content: &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: cert.Raw}},
	}
	if !o.NoTlog {
		entries, err := ent.TlogEntries()
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			// tlog.NewEntry leaves out what a bundle carries besides the
			// body and the proof: the entry's kind and its signed entry
			// timestamp, which re-signs the same payload as the test CA.
			tle := e.TransparencyLogEntry()
			tle.KindVersion = &protorekor.KindVersion{Kind: "dsse", Version: "0.0.1"}
			set, err := s.vs.RekorSignPayload(tlog.RekorPayload{
				Body:           base64.StdEncoding.EncodeToString(tle.CanonicalizedBody),
				IntegratedTime: tle.IntegratedTime,
				LogIndex:       tle.LogIndex,
				LogID:          hex.EncodeToString(tle.LogId.KeyId),
			})
			if err != nil {
				return nil, err
			}
			tle.InclusionPromise = &protorekor.InclusionPromise{SignedEntryTimestamp: set}
			vm.TlogEntries = append(vm.TlogEntries, tle)
		}
	} else {
		vm.TlogEntries = []*protorekor.TransparencyLogEntry{}
	}
	if !o.NoTimestamp {
		tss, err := ent.Timestamps()
		if err != nil {
			return nil, err
		}
		vm.TimestampVerificationData = &protobundle.TimestampVerificationData{}
		for _, ts := range tss {
			vm.TimestampVerificationData.Rfc3161Timestamps = append(vm.TimestampVerificationData.Rfc3161Timestamps,
				&protocommon.RFC3161SignedTimestamp{SignedTimestamp: ts})
		}
	}
	pb := &protobundle.Bundle{
		MediaType:            "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: vm,
		Content:              &protobundle.Bundle_DsseEnvelope{DsseEnvelope: pe},
	}
	return protojson.Marshal(pb)
}
