package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"evident.dev/evident/checkpoint"
	"evident.dev/evident/client"
	"evident.dev/evident/evidence"
	"evident.dev/evident/internal/secret"
	"evident.dev/evident/verifier"
)

func runKeys(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "generate" {
		return usageErrorf("usage: evident keys generate --name NAME --dir DIR [--alg ed25519|ecdsa-p256] [--origin ORIGIN]")
	}
	fs := newFlags("keys generate", stderr)
	name := fs.String("name", "", "key name: writes DIR/NAME.key and DIR/NAME.pub")
	dir := fs.String("dir", ".", "directory")
	alg := fs.String("alg", "ed25519", "ed25519 or ecdsa-p256")
	origin := fs.String("origin", "", "a log key: the log's origin; also writes DIR/NAME.vkey, the note verifier key replicas and auditors pin")
	format := addOutputFlag(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if err := format.check(); err != nil {
		return err
	}
	if *origin != "" && *alg != "ed25519" {
		return usageErrorf("keys generate: a log key (--origin) is ed25519")
	}
	if *name == "" || strings.ContainsAny(*name, `/\`) {
		return usageErrorf("keys generate: --name is required and must be a plain file name")
	}
	priv, pub, err := verifier.GenerateKey(*alg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	keyPath, pubPath := filepath.Join(*dir, *name+".key"), filepath.Join(*dir, *name+".pub")
	if err := writeNew(keyPath, priv, 0o600); err != nil {
		return err
	}
	if err := writeNew(pubPath, pub, 0o644); err != nil {
		return err
	}
	pk, err := verifier.ParsePublicKey(pub)
	if err != nil {
		return err
	}
	id, err := verifier.KeyID(pk)
	if err != nil {
		return err
	}
	if *origin != "" {
		key, err := verifier.ParsePrivateKey(priv)
		if err != nil {
			return err
		}
		edKey, ok := key.(ed25519.PrivateKey)
		if !ok {
			return errors.New("keys generate: a log key must be ed25519")
		}
		signer, err := checkpoint.NewSigner(*origin, edKey)
		if err != nil {
			return err
		}
		vkeyPath := filepath.Join(*dir, *name+".vkey")
		if err := writeNew(vkeyPath, []byte(signer.VerifierKey()+"\n"), 0o644); err != nil {
			return err
		}
		if format.json() {
			return writeIndented(stdout, keysResult{Key: keyPath, PublicKey: pubPath, KeyID: id, VerifierKeyFile: vkeyPath, VerifierKey: signer.VerifierKey()})
		}
		_, err = fmt.Fprintf(stdout, "wrote %s, %s and %s (log key of %s: %s)\n", keyPath, pubPath, vkeyPath, *origin, signer.VerifierKey())
		return err
	}
	if format.json() {
		return writeIndented(stdout, keysResult{Key: keyPath, PublicKey: pubPath, KeyID: id})
	}
	_, err = fmt.Fprintf(stdout, "wrote %s and %s (keyid %s)\n", keyPath, pubPath, id)
	return err
}

// keysResult is keys generate's answer in -o json: where the keys are (a
// private key is never printed).
type keysResult struct {
	Key             string `json:"key"`
	PublicKey       string `json:"publicKey"`
	KeyID           string `json:"keyId"`
	VerifierKeyFile string `json:"verifierKeyFile,omitempty"`
	VerifierKey     string `json:"verifierKey,omitempty"` // the log's note verifier key, public
}

// writeNew writes a file that must not exist yet: keys are never overwritten.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s already exists; not overwriting a key", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return errors.Join(err, f.Close())
	}
	return f.Close()
}

func runRecord(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "post" && args[0] != "sign") {
		return errors.New("usage: evident record post|sign --key FILE --file PREDICATE.json [--server URL]")
	}
	verb := args[0]
	fs := newFlags("record "+verb, stderr)
	keyFile := fs.String("key", "", "PKCS#8 PEM private key (a file only its owner may read, or env:VAR)")
	file := fs.String("file", "", "transition predicate JSON, or a whole in-toto statement (- for standard input)")
	server := fs.String("server", defaultServer(), "server URL")
	tlsFlags := addClientTLSFlags(fs)
	origin := fs.String("log-origin", "", "bind the record to this log origin (predicate.logOrigin): another log refuses it")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if *keyFile == "" || *file == "" {
		return usageErrorf("record %s: --key and --file are required", verb)
	}
	envelope, err := signPredicateFile(*keyFile, *file, *origin)
	if err != nil {
		return err
	}
	if verb == "sign" {
		_, err := fmt.Fprintf(stdout, "%s\n", envelope)
		return err
	}
	c := client.New(*server)
	if err := tlsFlags.apply(c); err != nil {
		return err
	}
	receipt, err := c.Post(ctx, envelope)
	if err != nil {
		return err
	}
	return writeIndented(stdout, receipt)
}

// signPredicateFile reads a transition predicate, fills occurredAt if absent,
// binds it to origin if given, and signs it.
func signPredicateFile(keyFile, file, origin string) ([]byte, error) {
	keyPEM, err := secret.ReadPrivateKey(keyFile)
	if err != nil {
		return nil, err
	}
	signer, err := client.NewSigner(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	signer.Origin = origin
	var raw []byte
	if file == "-" {
		raw, err = io.ReadAll(os.Stdin)
	} else {
		raw, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, err
	}
	// A whole in-toto statement keeps its subjects; a bare predicate gets
	// the default ones.
	var probe struct {
		Type string `json:"_type"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("%s: not JSON: %w", file, err)
	}
	var st evidence.Statement
	target := any(&st.Predicate)
	if probe.Type != "" {
		target = &st
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(target); err != nil {
		return nil, fmt.Errorf("%s: not a transition predicate or statement: %w", file, err)
	}
	// Signing re-creates the statement: one of another type or predicate
	// type would be silently re-typed.
	if probe.Type != "" && (st.Type != evidence.StatementType || st.PredicateType != evidence.PredicateType) {
		return nil, fmt.Errorf("%s: a statement of _type %q with predicateType %q; want %q and %q",
			file, st.Type, st.PredicateType, evidence.StatementType, evidence.PredicateType)
	}
	if st.Predicate.OccurredAt.IsZero() {
		st.Predicate.OccurredAt = time.Now().UTC().Truncate(time.Second)
	}
	env, err := signer.Sign(st.Predicate, st.Subject...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return env, nil
}

func writeIndented(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
