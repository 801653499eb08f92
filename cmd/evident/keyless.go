package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"evident.dev/evident/client"
	"evident.dev/evident/internal/secret"
	"evident.dev/evident/runners/tofu"
)

// The environment variables a CI system hands an OIDC token in. The token's
// value is a bearer credential: only these names are ever printed.
const (
	sigstoreTokenEnv   = "SIGSTORE_ID_TOKEN"
	githubTokenURLEnv  = "ACTIONS_ID_TOKEN_REQUEST_URL"
	githubTokenAuthEnv = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
)

// signingFlags choose how a runner signs: a key file, or keyless through
// Sigstore with an OIDC token.
type signingFlags struct {
	key, tokenEnv, fulcio, rekor, audience string
}

func addSigningFlags(fs *flag.FlagSet) *signingFlags {
	s := &signingFlags{}
	fs.StringVar(&s.key, "key", "", "runner signing key (PKCS#8 PEM) (a file only its owner may read, or env:VAR); without it the runner signs keyless when an OIDC token is present")
	fs.StringVar(&s.tokenEnv, "oidc-token-env", "", "sign keyless with the OIDC ID token in this environment variable (default: "+sigstoreTokenEnv+", else GitHub Actions' "+githubTokenURLEnv+" request)")
	fs.StringVar(&s.fulcio, "fulcio-url", "https://fulcio.sigstore.dev", "keyless: Fulcio, which certifies the token's identity")
	fs.StringVar(&s.rekor, "rekor-url", "https://rekor.sigstore.dev", "keyless: Rekor, which logs each signature")
	fs.StringVar(&s.audience, "oidc-audience", "sigstore", "keyless: the audience of tokens requested from GitHub Actions")
	return s
}

// signer returns the runner's signer and a sentence saying how it signs
// (never the token or the key). An explicit --key or --oidc-token-env
// wins; with neither, a token the CI environment offers means keyless.
func (s *signingFlags) signer(getenv func(string) string) (tofu.Signer, string, error) {
	if s.key != "" && s.tokenEnv != "" {
		return nil, "", usageErrorf("give --key or --oidc-token-env, not both")
	}
	if s.key != "" {
		keyPEM, err := secret.ReadPrivateKey(s.key)
		if err != nil {
			return nil, "", err
		}
		signer, err := client.NewSigner(keyPEM)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", s.key, err)
		}
		return signer, "signing with the key " + s.key, nil
	}
	var tokens client.TokenSource
	var from string
	switch {
	case s.tokenEnv != "":
		v := strings.TrimSpace(getenv(s.tokenEnv))
		if v == "" {
			return nil, "", fmt.Errorf("the environment variable %s (--oidc-token-env) is not set or empty", s.tokenEnv)
		}
		tokens, from = client.StaticToken(v), s.tokenEnv
	case strings.TrimSpace(getenv(sigstoreTokenEnv)) != "":
		tokens, from = client.StaticToken(strings.TrimSpace(getenv(sigstoreTokenEnv))), sigstoreTokenEnv
	case getenv(githubTokenURLEnv) != "" && getenv(githubTokenAuthEnv) != "":
		tokens = client.GitHubActionsToken{RequestURL: getenv(githubTokenURLEnv), RequestToken: getenv(githubTokenAuthEnv), Audience: s.audience}
		from = "GitHub Actions (" + githubTokenURLEnv + ")"
	default:
		return nil, "", errors.New("no signing identity: give --key FILE, or run where an OIDC token is present (--oidc-token-env VAR, " +
			sigstoreTokenEnv + ", or a GitHub Actions job with id-token: write)")
	}
	signer, err := client.NewKeylessSigner(client.KeylessConfig{FulcioURL: s.fulcio, RekorURL: s.rekor, Token: tokens})
	if err != nil {
		return nil, "", err
	}
	return signer, fmt.Sprintf("signing keyless: OIDC token from %s, certificate from %s, logged in %s", from, s.fulcio, s.rekor), nil
}
