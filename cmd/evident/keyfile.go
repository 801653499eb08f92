package main

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// envKeyPrefix names a private key held in an environment variable rather
// than a file: --key env:EVIDENT_RUNNER_KEY. Platforms inject secrets that
// way (a Kubernetes secretKeyRef, a CI secret variable).
const envKeyPrefix = "env:"

// tokenFromEnv reads a bearer token from the environment variable name, or
// from $EVIDENT_TOKEN when name is "" ("" when that is unset too). Tokens
// are not taken as flags: a command line is visible to every user of the
// machine.
func tokenFromEnv(name string) (string, error) {
	if name == "" {
		return strings.TrimSpace(os.Getenv("EVIDENT_TOKEN")), nil
	}
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return "", fmt.Errorf("the environment variable %s (--token-env) is not set or empty", name)
	}
	return v, nil
}

// readPrivateKey reads the PEM private key ref names: "env:NAME" is the
// environment variable NAME; anything else is a file, refused when its
// group or others may read or write it (the key would no longer be the
// runner's alone).
func readPrivateKey(ref string) ([]byte, error) { return readSecret("private key", ref) }

// readSecret reads the secret ref names, as readPrivateKey does; what names
// it in errors, which never hold its value.
func readSecret(what, ref string) ([]byte, error) {
	if name, ok := strings.CutPrefix(ref, envKeyPrefix); ok {
		v, set := os.LookupEnv(name)
		if !set || strings.TrimSpace(v) == "" {
			// The value is never printed: only the variable's name.
			return nil, fmt.Errorf("%s: the environment variable %s is not set or empty", what, name)
		}
		return []byte(v), nil
	}
	if ref == "" {
		return nil, fmt.Errorf("%s: no file given", what)
	}
	f, err := os.Open(ref)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s %s is accessible by group or others (mode %v); run chmod 600 %s", what, ref, perm, ref)
	}
	// A PEM private key is a few hundred bytes; the bound keeps a mistaken
	// path (a device, a huge file) from being read whole.
	b, err := io.ReadAll(io.LimitReader(f, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, ref, err)
	}
	return b, nil
}
