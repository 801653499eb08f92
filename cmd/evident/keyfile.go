package main

import (
	"fmt"
	"os"
	"strings"
)

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

// keyOrFile is a note verifier key given as a flag value: the key, or a
// file holding it.
func keyOrFile(k string) string {
	if b, err := os.ReadFile(k); err == nil {
		return strings.TrimSpace(string(b))
	}
	return strings.TrimSpace(k) // from a Secret's file or variable, with its newline
}
