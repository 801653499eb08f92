package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// jwtAlgorithms are the JWT algorithms an issuer's tokens may use.
var jwtAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA, jose.PS256, jose.ES384, jose.RS384}

// signingAlgorithms is jwtAlgorithms as go-oidc names them.
func signingAlgorithms() []string {
	out := make([]string, len(jwtAlgorithms))
	for i, a := range jwtAlgorithms {
		out[i] = string(a)
	}
	return out
}

// oidcIssuer verifies one issuer's tokens with coreos/go-oidc: signature,
// issuer, audience, expiry and algorithm. Its keys come from the issuer's
// JWKS, found by OIDC discovery unless the configuration names it.
type oidcIssuer struct {
	cfg    OIDCProvider
	client *http.Client
	clock  func() time.Time

	mu       sync.Mutex // guards verifier
	verifier *oidc.IDTokenVerifier
}

// verify returns the verified token's subject and claims.
func (p *oidcIssuer) verify(ctx context.Context, raw string) (string, map[string]any, error) {
	v, err := p.idVerifier(ctx)
	if err != nil {
		return "", nil, err
	}
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		return "", nil, err
	}
	if tok.Expiry.IsZero() {
		return "", nil, errors.New("a token that never expires is refused")
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return "", nil, err
	}
	return tok.Subject, claims, nil
}

// idVerifier builds the verifier once the JWKS URL is known: configured,
// or discovered from the issuer (retried at the next token if the issuer
// cannot be reached).
func (p *oidcIssuer) idVerifier(ctx context.Context) (*oidc.IDTokenVerifier, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.verifier != nil {
		return p.verifier, nil
	}
	jwksURL := p.cfg.JWKSURL
	if jwksURL == "" {
		provider, err := oidc.NewProvider(oidc.ClientContext(ctx, p.client), p.cfg.Issuer)
		if err != nil {
			return nil, fmt.Errorf("OIDC discovery of %s: %w", p.cfg.Issuer, err)
		}
		var meta struct {
			JWKSURI string `json:"jwks_uri"`
		}
		if err := provider.Claims(&meta); err != nil || meta.JWKSURI == "" {
			return nil, fmt.Errorf("OIDC discovery of %s: no jwks_uri (%v)", p.cfg.Issuer, err)
		}
		jwksURL = meta.JWKSURI
	}
	keys := &jwksCache{url: jwksURL, client: p.client, minRefresh: p.cfg.MinRefresh}
	p.verifier = oidc.NewVerifier(p.cfg.Issuer, keys, &oidc.Config{
		ClientID: p.cfg.Audience, SupportedSigningAlgs: signingAlgorithms(), Now: p.clock,
	})
	return p.verifier, nil
}

// jwksCache is the issuer's key set for go-oidc (oidc.KeySet). Unlike
// go-oidc's RemoteKeySet it fetches the JWKS again for a token naming an
// unknown key at most every minRefresh: issuers rotate keys, but a stream
// of tokens with made-up key ids must not become a stream of fetches.
type jwksCache struct {
	url        string
	client     *http.Client
	minRefresh time.Duration

	mu      sync.Mutex // guards keys and fetched
	keys    *jose.JSONWebKeySet
	fetched time.Time
}

// VerifySignature implements oidc.KeySet.
func (c *jwksCache) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	sig, err := jose.ParseSignedCompact(raw, jwtAlgorithms)
	if err != nil {
		return nil, err
	}
	if len(sig.Signatures) != 1 {
		return nil, errors.New("want one signature")
	}
	kid := sig.Signatures[0].Header.KeyID
	for attempt := range 2 {
		keys, err := c.keySet(ctx, attempt > 0)
		if err != nil {
			return nil, err
		}
		for _, k := range keys.Keys {
			if kid != "" && k.KeyID != kid {
				continue
			}
			if payload, err := sig.Verify(k.Key); err == nil {
				return payload, nil
			}
		}
	}
	return nil, errors.New("no key of the issuer verifies the token")
}

func (c *jwksCache) keySet(ctx context.Context, refresh bool) (*jose.JSONWebKeySet, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.keys != nil && (!refresh || time.Since(c.fetched) < c.minRefresh) {
		return c.keys, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS %s: %w", c.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch JWKS %s: %s", c.url, resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("decode JWKS %s: %w", c.url, err)
	}
	c.keys, c.fetched = &set, time.Now()
	return c.keys, nil
}
