package client_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"evident.dev/evident/client"
	"evident.dev/evident/evidence"
	"evident.dev/evident/internal/fulciotest"
	"evident.dev/evident/internal/rekortest"
	"evident.dev/evident/verifier"
)

func keylessPlan() evidence.Transition {
	return evidence.Transition{Kind: evidence.KindPlanCreated, ChangeID: "CHG-KL", OccurredAt: time.Now().UTC().Truncate(time.Second),
		Actor:  "ci",
		Source: evidence.Source{Repository: "infra-live", CommitSHA: "8fb2d7e2705ca5b1f48ba233dc28daaccb8f5480"},
		Target: evidence.Target{Environment: "prod"}, RiskClass: "low",
		Plan: &evidence.Plan{PlanSHA256: "9e4ae5643818e741d99a703defa2646920c1a300753ac914e144e98730fb50a1"}}
}

// TestKeylessSigner signs through a real Fulcio (ephemeral CA, trusting an
// OIDC issuer the test serves) and a real Rekor, and checks the bundles
// with the verifier the server uses, against a trusted root naming that CA
// and that Rekor.
func TestKeylessSigner(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Fulcio, Rekor, Trillian and MariaDB")
	}
	f := fulciotest.Start(t)
	rekor := rekortest.Start(t)
	trustedRoot, err := f.TrustedRoot(rekor.URL, rekor.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	const runner = "runner@ci.example"
	v, err := verifier.New(verifier.TrustConfig{
		Identities: []verifier.Identity{{Name: "ci-runner", SAN: runner, Issuer: f.Issuer, Scope: verifier.Scope{Environments: []string{"prod"}}}},
		Sigstore:   &verifier.SigstoreTrust{TrustedRoot: trustedRoot},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	signer := func(tokens client.TokenSource) *client.KeylessSigner {
		s, err := client.NewKeylessSigner(client.KeylessConfig{FulcioURL: f.URL, RekorURL: rekor.URL, Token: tokens})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ctx := t.Context()

	t.Run("static token", func(t *testing.T) {
		s := signer(client.StaticToken(f.Token(t, runner)))
		signed, err := s.SignRecord(ctx, keylessPlan())
		if err != nil {
			t.Fatal(err)
		}
		if signed.ContentType != verifier.BundleMediaType {
			t.Errorf("content type %q, want %q", signed.ContentType, verifier.BundleMediaType)
		}
		got, err := v.Verify(signed.Body)
		if err != nil {
			t.Fatalf("the server's verifier refuses the bundle: %v", err)
		}
		if got.Signer.Name != runner || got.Signer.Issuer != f.Issuer || !got.Keyless {
			t.Errorf("signer %+v, want %s from %s, keyless", got.Signer, runner, f.Issuer)
		}
		if got.Statement.Predicate.ChangeID != "CHG-KL" {
			t.Errorf("statement %+v", got.Statement.Predicate)
		}
		// Each record has its own ephemeral key and certificate.
		again, err := s.SignRecord(ctx, keylessPlan())
		if err != nil {
			t.Fatal(err)
		}
		got2, err := v.Verify(again.Body)
		if err != nil {
			t.Fatal(err)
		}
		if got2.Signer.KeyID == got.Signer.KeyID {
			t.Errorf("two records share certificate %s", got.Signer.KeyID)
		}
	})

	t.Run("github actions token request", func(t *testing.T) {
		url, reqToken := f.GitHubRequest(runner)
		s := signer(client.GitHubActionsToken{RequestURL: url, RequestToken: reqToken})
		b, err := s.Sign(ctx, keylessPlan())
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.Verify(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.Signer.Name != runner {
			t.Errorf("signer %q, want %q", got.Signer.Name, runner)
		}
	})

	t.Run("another identity is refused", func(t *testing.T) {
		b, err := signer(client.StaticToken(f.Token(t, "intruder@ci.example"))).Sign(ctx, keylessPlan())
		if err != nil {
			t.Fatal(err) // Fulcio certifies anyone its issuer vouches for
		}
		if _, err := v.Verify(b); !errors.Is(err, verifier.ErrUntrusted) || !strings.Contains(err.Error(), "intruder@ci.example") {
			t.Errorf("Verify = %v, want ErrUntrusted naming the identity", err)
		}
	})

	t.Run("a token Fulcio does not accept", func(t *testing.T) {
		// The right claims, a broken signature: Fulcio
		// refuses it, and the error does not carry the token.
		tok := f.Token(t, runner)
		forged := tok[:len(tok)-4] + "AAAA"
		_, err := signer(client.StaticToken(forged)).Sign(ctx, keylessPlan())
		if err == nil {
			t.Fatal("a token with a broken signature got a certificate")
		}
		if !strings.Contains(err.Error(), "error processing the identity token") {
			t.Errorf("want Fulcio's refusal, got %v", err)
		}
		if strings.Contains(err.Error(), forged) || strings.Contains(err.Error(), strings.Split(forged, ".")[1]) {
			t.Errorf("the error carries the token: %v", err)
		}
	})
}

func TestNewKeylessSignerRefusesBadConfig(t *testing.T) {
	for name, cfg := range map[string]client.KeylessConfig{
		"no fulcio":  {RekorURL: "https://rekor.example", Token: client.StaticToken("x")},
		"no rekor":   {FulcioURL: "https://fulcio.example", Token: client.StaticToken("x")},
		"not a url":  {FulcioURL: "fulcio.example", RekorURL: "https://rekor.example", Token: client.StaticToken("x")},
		"no token":   {FulcioURL: "https://fulcio.example", RekorURL: "https://rekor.example"},
		"ftp scheme": {FulcioURL: "ftp://fulcio.example", RekorURL: "https://rekor.example", Token: client.StaticToken("x")},
	} {
		if _, err := client.NewKeylessSigner(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := (client.StaticToken("  \n")).Token(context.Background()); err == nil {
		t.Error("an empty static token was accepted")
	}
}

// TestGitHubActionsTokenRefusals runs the token request against a stand-in
// for GitHub's endpoint (the real one is unreachable from here): refusals
// and malformed answers are errors that never quote the request token.
func TestGitHubActionsTokenRefusals(t *testing.T) {
	const reqToken = "ghs_request-token-secret-0123456789"
	var gotAuth, gotAudience, gotVersion string
	answer := func(w http.ResponseWriter) {}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotAudience, gotVersion = r.Header.Get("Authorization"), r.URL.Query().Get("audience"), r.URL.Query().Get("api-version")
		answer(w)
	}))
	defer srv.Close()
	g := client.GitHubActionsToken{RequestURL: srv.URL + "/token?api-version=2.0", RequestToken: reqToken}

	answer = func(w http.ResponseWriter) { _, _ = w.Write([]byte(`{"count":1,"value":"header.claims.sig"}`)) }
	tok, err := g.Token(t.Context())
	if err != nil || tok != "header.claims.sig" {
		t.Fatalf("Token = %q, %v", tok, err)
	}
	if gotAuth != "Bearer "+reqToken || gotAudience != "sigstore" || gotVersion != "2.0" {
		t.Errorf("request: auth %q audience %q api-version %q", gotAuth, gotAudience, gotVersion)
	}
	for name, a := range map[string]func(http.ResponseWriter){
		"refused":  func(w http.ResponseWriter) { http.Error(w, "bad credentials", http.StatusUnauthorized) },
		"no value": func(w http.ResponseWriter) { _, _ = w.Write([]byte(`{"count":0}`)) },
		"not json": func(w http.ResponseWriter) { _, _ = w.Write([]byte(`<html>`)) },
	} {
		answer = a
		_, err := g.Token(t.Context())
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if strings.Contains(err.Error(), reqToken) {
			t.Errorf("%s: the error carries the request token: %v", name, err)
		}
	}
}
