package verifier_test

import (
	"encoding/json"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

func decodeEnv(t testing.TB, raw []byte) dsse.Envelope {
	t.Helper()
	var env dsse.Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("decode envelope: %v", err)
	}
	return env
}

func encodeEnv(t testing.TB, env dsse.Envelope) []byte {
	t.Helper()
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// editEnv decodes an envelope, lets fn change it and encodes it again.
func editEnv(t testing.TB, raw []byte, fn func(*dsse.Envelope)) []byte {
	t.Helper()
	env := decodeEnv(t, raw)
	fn(&env)
	return encodeEnv(t, env)
}
