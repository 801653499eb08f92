package verifier

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"evident.dev/evident/evidence"
)

// GenerateKey makes a signing key: "ed25519" (the default) or "ecdsa-p256".
// It returns the PKCS#8 PEM private key and the PKIX PEM public key.
func GenerateKey(alg string) (private, public []byte, err error) {
	var key crypto.Signer
	switch alg {
	case "", "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	case "ecdsa-p256":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return nil, nil, fmt.Errorf("unknown key algorithm %q (want ed25519 or ecdsa-p256)", alg)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode private key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), nil
}

// ParsePrivateKey reads a PKCS#8 PEM private key: ed25519 or ECDSA P-256.
func ParsePrivateKey(pemBytes []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("private key: not a PEM \"PRIVATE KEY\" (PKCS#8) block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("private key: only ECDSA P-256 is supported")
		}
		return k, nil
	}
	return nil, fmt.Errorf("private key: unsupported type %T (want ed25519 or ECDSA P-256)", key)
}

// SignEnvelope signs a statement payload into a DSSE envelope (JSON) with
// Evident's keyid convention.
func SignEnvelope(key crypto.Signer, payload []byte) ([]byte, error) {
	id, err := KeyID(key.Public())
	if err != nil {
		return nil, err
	}
	pae := dsse.PAE(evidence.PayloadType, payload)
	var sig []byte
	switch k := key.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(k, pae)
	case *ecdsa.PrivateKey:
		digest := sha256.Sum256(pae)
		if sig, err = ecdsa.SignASN1(rand.Reader, k, digest[:]); err != nil {
			return nil, fmt.Errorf("sign: %w", err)
		}
	default:
		return nil, fmt.Errorf("sign: unsupported key type %T", key)
	}
	env := dsse.Envelope{
		PayloadType: evidence.PayloadType,
		Payload:     base64.StdEncoding.EncodeToString(payload),
		Signatures:  []dsse.Signature{{KeyID: id, Sig: base64.StdEncoding.EncodeToString(sig)}},
	}
	b, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("encode envelope: %w", err)
	}
	return b, nil
}
