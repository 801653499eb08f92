// Package secret reads private keys and other secrets that the server and
// the commands are given by reference: a file only its owner may read, or
// "env:NAME", an environment variable.
package secret

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// EnvPrefix names a secret held in an environment variable rather than a
// file: --key env:EVIDENT_RUNNER_KEY. Platforms inject secrets that way (a
// Kubernetes secretKeyRef, a CI secret variable).
const EnvPrefix = "env:"

// ReadPrivateKey reads the PEM private key ref names: "env:NAME" is the
// environment variable NAME; anything else is a file, refused when its
// group or others may read or write it (the key would no longer be the
// runner's alone).
func ReadPrivateKey(ref string) ([]byte, error) { return Read("private key", ref) }

// Read reads the secret ref names, as ReadPrivateKey does; what names it in
// errors, which never hold its value.
func Read(what, ref string) ([]byte, error) {
	if name, ok := strings.CutPrefix(ref, EnvPrefix); ok {
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
