package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sigstore/sigstore-go/pkg/sign"
	"google.golang.org/protobuf/encoding/protojson"

	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
)

// TokenSource gives an OIDC ID token for Fulcio. A KeylessSigner asks for
// one at every record, so a source that can mint tokens (GitHub Actions)
// gives a fresh one each time: tokens live minutes, an apply can take longer.
// Implementations must be safe for concurrent use and must never put the
// token in an error.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// StaticToken is a token handed to the process once (SIGSTORE_ID_TOKEN, a
// CI secret). When it expires, signing fails with Fulcio's refusal.
type StaticToken string

// Token returns the token.
func (s StaticToken) Token(context.Context) (string, error) {
	if strings.TrimSpace(string(s)) == "" {
		return "", errors.New("oidc token: empty")
	}
	return strings.TrimSpace(string(s)), nil
}

// GitHubActionsToken requests ID tokens from GitHub Actions' OIDC provider,
// as a job with `permissions: id-token: write` may: a GET of RequestURL with
// the audience, authorised by RequestToken (the job's
// ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN).
type GitHubActionsToken struct {
	RequestURL   string
	RequestToken string
	// Audience is the token's aud claim; Fulcio wants "sigstore" (the
	// default).
	Audience string
	HTTP     *http.Client // nil: a client with a 30s timeout
}

// Token requests a fresh token.
func (g GitHubActionsToken) Token(ctx context.Context) (string, error) {
	u, err := url.Parse(g.RequestURL)
	if err != nil {
		return "", errors.New("github actions oidc: ACTIONS_ID_TOKEN_REQUEST_URL is not a URL")
	}
	aud := g.Audience
	if aud == "" {
		aud = "sigstore"
	}
	q := u.Query()
	q.Set("audience", aud)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return "", fmt.Errorf("github actions oidc: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+g.RequestToken)
	req.Header.Set("Accept", "application/json")
	httpc := g.HTTP
	if httpc == nil {
		httpc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return "", fmt.Errorf("github actions oidc: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("github actions oidc: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		// The body of a refusal is an error message, not a token.
		return "", fmt.Errorf("github actions oidc: the token request answered %d: %.200s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return parseGitHubTokenAnswer(body)
}

// parseGitHubTokenAnswer reads the token out of GitHub's answer,
// {"count": N, "value": "<jwt>"}. The error never quotes the answer: it
// may hold a token.
func parseGitHubTokenAnswer(body []byte) (string, error) {
	var tok struct {
		Value string `json:"value"`
	}
	if err := json.Unmarshal(body, &tok); err != nil || strings.TrimSpace(tok.Value) == "" {
		return "", errors.New("github actions oidc: the answer holds no token (want {\"value\": ...})")
	}
	return strings.TrimSpace(tok.Value), nil
}

// KeylessConfig configures a KeylessSigner.
type KeylessConfig struct {
	// FulcioURL and RekorURL are the Sigstore instance, e.g.
	// https://fulcio.sigstore.dev and https://rekor.sigstore.dev.
	FulcioURL, RekorURL string
	Token               TokenSource
	// Origin binds records to a log, as Signer.Origin.
	Origin string
	// Timeout bounds each request to Fulcio and Rekor (default 30s).
	Timeout time.Duration
}

// KeylessSigner signs records the Sigstore way, with no key to keep: for
// each record it makes an ephemeral P-256 key, exchanges an OIDC ID token
// for a short-lived Fulcio certificate naming the token's identity, signs
// the DSSE envelope, logs it in Rekor, and returns the Sigstore bundle v0.3
// the server verifies against its trusted root and keyless identities.
// The ephemeral key never leaves memory and is dropped after one record.
type KeylessSigner struct {
	cfg KeylessConfig
}

// NewKeylessSigner checks cfg.
func NewKeylessSigner(cfg KeylessConfig) (*KeylessSigner, error) {
	for _, c := range []struct{ name, url string }{{"Fulcio", cfg.FulcioURL}, {"Rekor", cfg.RekorURL}} {
		u, err := url.Parse(c.url)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("keyless signer: the %s URL %q is not an http(s) URL", c.name, c.url)
		}
	}
	if cfg.Token == nil {
		return nil, errors.New("keyless signer: no OIDC token source")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	cfg.FulcioURL = strings.TrimRight(cfg.FulcioURL, "/")
	cfg.RekorURL = strings.TrimRight(cfg.RekorURL, "/")
	return &KeylessSigner{cfg: cfg}, nil
}

// Sign wraps a transition in an in-toto statement about subjects (as
// Signer.Sign) and returns the Sigstore bundle JSON.
func (s *KeylessSigner) Sign(ctx context.Context, t evidence.Transition, subjects ...evidence.Subject) ([]byte, error) {
	payload, err := encodeStatement(t, s.cfg.Origin, subjects)
	if err != nil {
		return nil, err
	}
	token, err := s.cfg.Token.Token(ctx)
	if err != nil {
		return nil, fmt.Errorf("keyless: %w", err)
	}
	key, err := sign.NewEphemeralKeypair(nil)
	if err != nil {
		return nil, fmt.Errorf("keyless: ephemeral key: %w", err)
	}
	b, err := sign.Bundle(&sign.DSSEData{Data: payload, PayloadType: evidence.PayloadType}, key, sign.BundleOptions{
		Context:                    ctx,
		CertificateProvider:        sign.NewFulcio(&sign.FulcioOptions{BaseURL: s.cfg.FulcioURL, Timeout: s.cfg.Timeout, Retries: 2}),
		CertificateProviderOptions: &sign.CertificateProviderOptions{IDToken: token},
		// A new Rekor client per record: sign.Rekor keeps its client in
		// its options, which is not safe to share between goroutines.
		TransparencyLogs: []sign.Transparency{sign.NewRekor(&sign.RekorOptions{BaseURL: s.cfg.RekorURL, Timeout: s.cfg.Timeout, Retries: 2})},
	})
	if err != nil {
		return nil, fmt.Errorf("keyless signing through %s and %s: %w", s.cfg.FulcioURL, s.cfg.RekorURL, scrub(err, token))
	}
	out, err := protojson.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("keyless: encode bundle: %w", err)
	}
	return out, nil
}

// SignRecord signs t about its default subjects, as the runners post it.
func (s *KeylessSigner) SignRecord(ctx context.Context, t evidence.Transition) (Signed, error) {
	b, err := s.Sign(ctx, t)
	if err != nil {
		return Signed{}, err
	}
	return Signed{Body: b, ContentType: verifier.BundleMediaType}, nil
}

// scrub makes sure an error from the signing libraries does not carry the
// token (none is known to, but a Fulcio that echoed the request would make
// it print): the token is a bearer credential for its lifetime.
func scrub(err error, token string) error {
	if token == "" || !strings.Contains(err.Error(), token) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), token, "[oidc token]"))
}
