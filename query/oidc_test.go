package query_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"evident.dev/evident/query"
)

// issuer is a local OIDC issuer: a JWKS endpoint on 127.0.0.1 and keys made
// for the test.
type issuer struct {
	url     string
	key     *ecdsa.PrivateKey
	kid     string
	fetches atomic.Int32
	// discoveries counts reads of the discovery document.
	discoveries atomic.Int32
	served      atomic.Pointer[jose.JSONWebKeySet] // what the JWKS endpoint serves
}

func newIssuer(t *testing.T) *issuer {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer{key: key, kid: "k1"}
	is.publish()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/.well-known/openid-configuration" { // OIDC discovery
			is.discoveries.Add(1)
			_ = json.NewEncoder(w).Encode(map[string]any{"issuer": is.url, "jwks_uri": is.url + "/jwks",
				"id_token_signing_alg_values_supported": []string{"ES256"}})
			return
		}
		is.fetches.Add(1)
		_ = json.NewEncoder(w).Encode(is.served.Load())
	}))
	t.Cleanup(srv.Close)
	is.url = srv.URL
	return is
}

func (is *issuer) publish() {
	is.served.Store(&jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &is.key.PublicKey, KeyID: is.kid, Algorithm: "ES256", Use: "sig"}}})
}

func (is *issuer) token(t *testing.T, key *ecdsa.PrivateKey, kid string, claims jwt.Claims, extra map[string]any) string {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(sig).Claims(claims).Claims(extra).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestOIDCTokens(t *testing.T) {
	is := newIssuer(t)
	const iss, aud = "https://issuer.test", "evident"
	h := newHarness(t, query.AccessConfig{OIDC: []query.OIDCProvider{{
		Issuer: iss, Audience: aud, JWKSURL: is.url + "/jwks", MinRefresh: time.Millisecond,
		Grants: []query.OIDCGrant{
			{Claim: "groups", Value: "auditors", Role: query.RoleAuditor},
			{Claim: "groups", Value: "team-staging", Role: query.RoleTenant, Scope: query.Scope{Environments: []string{"staging"}}},
		},
	}}})
	h.loadDemo()
	now := time.Now()
	good := jwt.Claims{Issuer: iss, Subject: "alice", Audience: jwt.Audience{aud}, Expiry: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now)}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	with := func(f func(c *jwt.Claims)) jwt.Claims { c := good; f(&c); return c }
	cases := []struct {
		name   string
		token  string
		status int
		role   string
	}{
		{"auditor", is.token(t, is.key, is.kid, good, map[string]any{"groups": []string{"x", "auditors"}}), 200, "auditor"},
		{"tenant", is.token(t, is.key, is.kid, good, map[string]any{"groups": []string{"team-staging"}}), 200, "tenant"},
		{"no grant", is.token(t, is.key, is.kid, good, map[string]any{"groups": []string{"other"}}), 403, ""}, // authentic, but no role
		{"wrong audience", is.token(t, is.key, is.kid, with(func(c *jwt.Claims) { c.Audience = jwt.Audience{"other"} }), map[string]any{"groups": []string{"auditors"}}), 401, ""},
		{"expired", is.token(t, is.key, is.kid, with(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(-time.Hour)) }), map[string]any{"groups": []string{"auditors"}}), 401, ""},
		{"no expiry", is.token(t, is.key, is.kid, with(func(c *jwt.Claims) { c.Expiry = nil }), map[string]any{"groups": []string{"auditors"}}), 401, ""},
		{"other issuer", is.token(t, is.key, is.kid, with(func(c *jwt.Claims) { c.Issuer = "https://evil.test" }), map[string]any{"groups": []string{"auditors"}}), 401, ""},
		{"foreign key", is.token(t, other, is.kid, good, map[string]any{"groups": []string{"auditors"}}), 401, ""},
		{"unknown kid", is.token(t, other, "k2", good, map[string]any{"groups": []string{"auditors"}}), 401, ""},
	}
	for _, c := range cases {
		r := h.query(c.token, `{ whoami { subject role } }`, nil)
		if r.Status != c.status {
			t.Errorf("%s: status %d, want %d (%v)", c.name, r.Status, c.status, r.Errors)
			continue
		}
		if c.role != "" && !strings.Contains(string(r.Data), `"role":"`+c.role+`"`) {
			t.Errorf("%s: %s, want role %s", c.name, r.Data, c.role)
		}
	}
	// The tenant's JWT sees only staging.
	tenant := cases[1].token
	r := h.query(tenant, `{ transitions(first: 100) { nodes { target { environment } } } }`, nil)
	if strings.Contains(string(r.Data), `"prod"`) || !strings.Contains(string(r.Data), `"staging"`) {
		t.Errorf("OIDC tenant sees %s", r.Data)
	}
	// Key rotation: a token under a new key is accepted after a refetch.
	rotated, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	before := is.fetches.Load()
	is.key, is.kid = rotated, "k3"
	is.publish()
	// Real time: the key cache refetches only once MinRefresh (1ms) has passed since its last fetch.
	time.Sleep(2 * time.Millisecond)
	tok := is.token(t, rotated, "k3", good, map[string]any{"groups": []string{"auditors"}})
	if r := h.query(tok, `{ whoami { role } }`, nil); r.Status != 200 || is.fetches.Load() == before {
		t.Errorf("rotated key: %d %v (fetches %d)", r.Status, r.Errors, is.fetches.Load())
	}
}

// An issuer configured without jwksURL is found by OIDC discovery (once),
// and a flood of tokens naming unknown keys costs at most one JWKS fetch
// per minRefresh.
func TestOIDCDiscovery(t *testing.T) {
	is := newIssuer(t)
	h := newHarness(t, query.AccessConfig{OIDC: []query.OIDCProvider{{
		Issuer: is.url, Audience: "evident", MinRefresh: time.Hour,
		Grants: []query.OIDCGrant{{Claim: "groups", Value: "auditors", Role: query.RoleAuditor}},
	}}})
	now := time.Now()
	good := jwt.Claims{Issuer: is.url, Subject: "alice", Audience: jwt.Audience{"evident"}, Expiry: jwt.NewNumericDate(now.Add(time.Hour))}
	for range 3 {
		if r := h.query(is.token(t, is.key, is.kid, good, map[string]any{"groups": []string{"auditors"}}), `{ whoami { role } }`, nil); r.Status != 200 {
			t.Fatalf("a token of the discovered issuer: %d %v", r.Status, r.Errors)
		}
	}
	if n := is.discoveries.Load(); n != 1 {
		t.Errorf("%d discovery requests, want 1", n)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	before := is.fetches.Load()
	for i := range 20 {
		tok := is.token(t, other, fmt.Sprintf("made-up-%d", i), good, map[string]any{"groups": []string{"auditors"}})
		if r := h.query(tok, `{ whoami { role } }`, nil); r.Status != 401 {
			t.Fatalf("a token under an unknown key: %d", r.Status)
		}
	}
	if n := is.fetches.Load() - before; n > 1 {
		t.Errorf("20 tokens naming unknown keys caused %d JWKS fetches, want at most 1", n)
	}
}
