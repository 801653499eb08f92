package query

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"evident.dev/evident/evidence"
)

// Role is what a caller may do on the read side.
type Role string

// Roles: one immutable central store, with tenant-specific views.
const (
	RoleAuditor Role = "auditor" // reads everything
	RoleTenant  Role = "tenant"  // reads only entries inside its Scope
	RoleRunner  Role = "runner"  // writes records; reads nothing here
)

// Scope is a tenant's view: an entry is visible when, for every non-empty
// list, the entry's target value is in it. Entries without a target (the
// genesis, trust updates) are never visible to a tenant.
type Scope struct {
	Environments []string `yaml:"environments" json:"environments,omitempty"`
	Accounts     []string `yaml:"accounts" json:"accounts,omitempty"`
	Stacks       []string `yaml:"stacks" json:"stacks,omitempty"`
	Namespaces   []string `yaml:"namespaces" json:"namespaces,omitempty"`
}

func (s Scope) empty() bool {
	return len(s.Environments)+len(s.Accounts)+len(s.Stacks)+len(s.Namespaces) == 0
}

// Identity is an authenticated caller.
type Identity struct {
	Subject string // token name, or the JWT's issuer and subject
	Role    Role
	Scope   Scope // for RoleTenant
}

// sees reports whether the caller may see an entry with this predicate.
func (id *Identity) sees(p *evidence.Transition) bool {
	switch id.Role {
	case RoleAuditor:
		return true
	case RoleTenant:
		if p.Kind.LogWide() || id.Scope.empty() {
			return false
		}
		t := p.Target
		in := func(allowed []string, v string) bool { return len(allowed) == 0 || slices.Contains(allowed, v) }
		return in(id.Scope.Environments, t.Environment) && in(id.Scope.Accounts, t.Account) &&
			in(id.Scope.Stacks, t.Stack) && in(id.Scope.Namespaces, t.Namespace)
	}
	return false
}

// TokenGrant maps a bearer token, stored as the hex SHA-256 of the token, to
// a role. The token itself is never stored or logged.
type TokenGrant struct {
	Name   string `yaml:"name"`
	SHA256 string `yaml:"sha256"`
	Role   Role   `yaml:"role"`
	Scope  Scope  `yaml:"scope"`
}

// OIDCProvider accepts JWTs from one issuer: signed by a key of its JWKS,
// for the audience, unexpired. Grants map claims to roles; the first grant
// whose claim holds the value wins, and a token no grant matches is refused.
type OIDCProvider struct {
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	// JWKSURL is the issuer's key set; empty, it is discovered from
	// <issuer>/.well-known/openid-configuration at the first token.
	JWKSURL string      `yaml:"jwksURL"`
	Grants  []OIDCGrant `yaml:"grants"`
	// MinRefresh is the least time between two JWKS fetches caused by a
	// token naming an unknown key (rotation). Default 30s.
	MinRefresh time.Duration `yaml:"minRefresh"`
}

// OIDCGrant gives Role (and Scope) to tokens whose Claim equals or, for a
// list claim such as groups, contains Value.
type OIDCGrant struct {
	Claim string `yaml:"claim"`
	Value string `yaml:"value"`
	Role  Role   `yaml:"role"`
	Scope Scope  `yaml:"scope"`
}

// AccessConfig is who may read. With no tokens and no providers the read
// side is open and every caller is an anonymous auditor (a development
// server); configure access before exposing a server.
type AccessConfig struct {
	Tokens []TokenGrant     `yaml:"tokens"`
	OIDC   []OIDCProvider   `yaml:"oidc"`
	Client *http.Client     `yaml:"-"` // fetches JWKS; nil: a client with a 10s timeout
	Clock  func() time.Time `yaml:"-"`
}

// Errors the authenticator returns; the edge maps both to 401 with a
// message that says which, never why a token was close to valid.
var (
	ErrUnauthenticated = errors.New("missing or invalid credentials")
	ErrForbidden       = errors.New("this role may not read evidence")
)

// Authenticator maps requests to identities.
type Authenticator struct {
	open      bool
	tokens    map[[sha256.Size]byte]TokenGrant
	providers []*oidcIssuer
	clock     func() time.Time
}

// NewAuthenticator checks cfg and returns its authenticator.
func NewAuthenticator(cfg AccessConfig) (*Authenticator, error) {
	a := &Authenticator{tokens: map[[sha256.Size]byte]TokenGrant{}, clock: cfg.Clock}
	if a.clock == nil {
		a.clock = time.Now
	}
	client := cfg.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	for i, t := range cfg.Tokens {
		var h [sha256.Size]byte
		if n, err := hex.Decode(h[:], []byte(t.SHA256)); err != nil || n != sha256.Size {
			return nil, fmt.Errorf("access.tokens[%d] (%s): sha256 must be the 64-hex SHA-256 of the token", i, t.Name)
		}
		if err := checkGrant(t.Role, t.Scope); err != nil {
			return nil, fmt.Errorf("access.tokens[%d] (%s): %w", i, t.Name, err)
		}
		if t.Name == "" {
			return nil, fmt.Errorf("access.tokens[%d]: name is required (it is what the access log records)", i)
		}
		a.tokens[h] = t
	}
	for i, p := range cfg.OIDC {
		if p.Issuer == "" || p.Audience == "" {
			return nil, fmt.Errorf("access.oidc[%d]: issuer and audience are required", i)
		}
		if len(p.Grants) == 0 {
			return nil, fmt.Errorf("access.oidc[%d] (%s): at least one grant is required", i, p.Issuer)
		}
		for j, g := range p.Grants {
			if g.Claim == "" || g.Value == "" {
				return nil, fmt.Errorf("access.oidc[%d].grants[%d]: claim and value are required", i, j)
			}
			if err := checkGrant(g.Role, g.Scope); err != nil {
				return nil, fmt.Errorf("access.oidc[%d].grants[%d]: %w", i, j, err)
			}
		}
		if p.MinRefresh <= 0 {
			p.MinRefresh = 30 * time.Second
		}
		a.providers = append(a.providers, &oidcIssuer{cfg: p, client: client, clock: a.clock})
	}
	a.open = len(a.tokens) == 0 && len(a.providers) == 0
	return a, nil
}

func checkGrant(r Role, s Scope) error {
	switch r {
	case RoleAuditor, RoleRunner:
		return nil
	case RoleTenant:
		if s.empty() {
			return errors.New("a tenant needs a scope (environments, accounts, stacks or namespaces)")
		}
		return nil
	}
	return fmt.Errorf("role %q: want auditor, tenant or runner", r)
}

// Open reports whether no credentials are configured.
func (a *Authenticator) Open() bool { return a.open }

// Authenticate returns the caller of r.
func (a *Authenticator) Authenticate(r *http.Request) (*Identity, error) {
	if a.open {
		return &Identity{Subject: "anonymous", Role: RoleAuditor}, nil
	}
	auth := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || token == "" {
		return nil, ErrUnauthenticated
	}
	if strings.Count(token, ".") == 2 && len(a.providers) > 0 {
		return a.jwt(r.Context(), token)
	}
	sum := sha256.Sum256([]byte(token))
	for h, g := range a.tokens {
		if subtle.ConstantTimeCompare(h[:], sum[:]) == 1 {
			return &Identity{Subject: "token:" + g.Name, Role: g.Role, Scope: g.Scope}, nil
		}
	}
	return nil, ErrUnauthenticated
}

func (a *Authenticator) jwt(ctx context.Context, raw string) (*Identity, error) {
	// The issuer claim picks the provider; its verifier then checks it.
	tok, err := jwt.ParseSigned(raw, jwtAlgorithms)
	if err != nil {
		return nil, ErrUnauthenticated
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return nil, ErrUnauthenticated
	}
	for _, p := range a.providers {
		if p.cfg.Issuer != unverified.Issuer {
			continue
		}
		subject, claims, err := p.verify(ctx, raw)
		if err != nil {
			return nil, ErrUnauthenticated
		}
		for _, g := range p.cfg.Grants {
			if claimHas(claims[g.Claim], g.Value) {
				return &Identity{Subject: "oidc:" + p.cfg.Issuer + "#" + subject, Role: g.Role, Scope: g.Scope}, nil
			}
		}
		return nil, ErrForbidden
	}
	return nil, ErrUnauthenticated
}

func claimHas(v any, want string) bool {
	switch c := v.(type) {
	case string:
		return c == want
	case []any:
		for _, x := range c {
			if s, ok := x.(string); ok && s == want {
				return true
			}
		}
	}
	return false
}

// RequireAuditor wraps a handler that serves the whole log (entries by
// index, term lookups, exports) so that only auditors reach it once access
// is configured: those endpoints cannot filter by tenant.
func (a *Authenticator) RequireAuditor(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := a.Authenticate(r)
		if err != nil {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": err.Error(), "code": "unauthenticated"})
			return
		}
		if id.Role != RoleAuditor {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "only auditors may read the whole log; use POST /graphql", "code": "forbidden"})
			return
		}
		h.ServeHTTP(w, r)
	})
}
