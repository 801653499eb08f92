package checkpoint_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"evident.dev/evident/checkpoint"
)

const origin = "evident.test/log"

func newSigner(t testing.TB, seed string) (*checkpoint.Signer, note.Verifier) {
	t.Helper()
	s := sha256.Sum256([]byte(seed))
	signer, err := checkpoint.NewSigner(origin, ed25519.NewKeyFromSeed(s[:]))
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(signer.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	return signer, v
}

func TestSignOpenParse(t *testing.T) {
	a, va := newSigner(t, "a")
	b, vb := newSigner(t, "b")
	root := sha256.Sum256([]byte("root"))
	signed, err := checkpoint.Sign([]note.Signer{a}, origin, 42, root)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := checkpoint.Open(signed, origin, va)
	if err != nil || cp.Size != 42 || cp.Root != root || cp.Origin != origin {
		t.Fatalf("Open = %+v, %v", cp, err)
	}
	if p, err := checkpoint.Parse(signed, origin); err != nil || *p != *cp {
		t.Fatalf("Parse = %+v, %v; Open gave %+v", p, err, cp)
	}
	if !strings.HasPrefix(string(signed), string(checkpoint.Text(origin, 42, root))) {
		t.Errorf("the signed note's text is not Text():\n%s", signed)
	}

	for name, open := range map[string]func() error{
		"another key":           func() error { _, err := checkpoint.Open(signed, origin, vb); return err },
		"both keys, one signed": func() error { _, err := checkpoint.Open(signed, origin, va, vb); return err },
		"another origin":        func() error { _, err := checkpoint.Parse(signed, "other.test/log"); return err },
		"no key":                func() error { _, err := checkpoint.Open(signed, origin); return err },
	} {
		if open() == nil {
			t.Errorf("%s: opened", name)
		}
	}
	both, err := checkpoint.Sign([]note.Signer{a, b}, origin, 42, root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := checkpoint.Open(both, origin, va, vb); err != nil {
		t.Errorf("a checkpoint signed by both keys: %v", err)
	}

	// Extension lines, a short root, a bad size: not a checkpoint of this log.
	for _, text := range []string{
		origin + "\n42\n" + b64(root[:]) + "\nextension\n",
		origin + "\n42\n" + b64(root[:16]) + "\n",
		origin + "\n-1\n" + b64(root[:]) + "\n",
		origin + "\n042\n" + b64(root[:]) + "\n",
	} {
		n, err := note.Sign(&note.Note{Text: text}, a)
		if err != nil {
			t.Fatal(err)
		}
		if cp, err := checkpoint.Open(n, origin, va); err == nil {
			t.Errorf("opened %q as %+v", text, cp)
		}
		if cp, err := checkpoint.Parse(n, origin); err == nil {
			t.Errorf("parsed %q as %+v", text, cp)
		}
	}
}

// The chain of keys decides which key may sign a checkpoint of a size:
// the genesis key before the rotation entry, the new key after it, and
// either on the first checkpoint covering it (both sign that one).
func TestChain(t *testing.T) {
	a, va := newSigner(t, "a")
	b, vb := newSigner(t, "b")
	chain := checkpoint.Chain{Keys: []note.Verifier{va, vb}, Rotations: []uint64{10}}
	root := sha256.Sum256(nil)
	sign := func(size uint64, s ...note.Signer) []byte {
		n, err := checkpoint.Sign(s, origin, size, root)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, c := range []struct {
		name   string
		signed []byte
		ok     bool
	}{
		{"genesis key before the rotation", sign(10, a), true},
		{"new key before its rotation entry", sign(10, b), false},
		{"both keys over the rotation", sign(11, a, b), true},
		{"new key after the rotation", sign(11, b), true},
		{"retired key after the rotation", sign(11, a), false},
	} {
		_, err := chain.Open(c.signed, origin)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if _, err := (checkpoint.Chain{Keys: []note.Verifier{va, vb}}).Open(sign(1, a), origin); err == nil {
		t.Error("a chain of two keys and no rotation opened a checkpoint")
	}
}

// Signing names the keys that must sign each checkpoint: the key in
// force, and both keys on the first checkpoint after a rotation entry.
func TestRotationsSigning(t *testing.T) {
	r := checkpoint.Rotations{10, 20}
	for _, c := range []struct {
		prev, size uint64
		want       []int
		err        bool
	}{
		{0, 5, []int{0}, false},
		{5, 10, []int{0}, false},     // entry 10 is not yet covered
		{10, 11, []int{0, 1}, false}, // first to cover entry 10
		{0, 11, []int{0, 1}, false},
		{11, 15, []int{1}, false},
		{15, 21, []int{1, 2}, false},
		{21, 30, []int{2}, false},
		{5, 25, nil, true}, // covers both rotations at once
		{10, 21, nil, true},
	} {
		got, err := r.Signing(c.prev, c.size)
		if (err != nil) != c.err || !slices.Equal(got, c.want) {
			t.Errorf("Signing(%d, %d) = %v, %v; want %v (error %v)", c.prev, c.size, got, err, c.want, c.err)
		}
	}
	if got, err := (checkpoint.Rotations{}).Signing(0, 100); err != nil || !slices.Equal(got, []int{0}) {
		t.Errorf("no rotations: %v, %v", got, err)
	}
}

// FuzzParse feeds Parse arbitrary notes: it never panics, and what it
// accepts is exactly Text of what it returns.
func FuzzParse(f *testing.F) {
	a, _ := newSigner(f, "a")
	root := sha256.Sum256(nil)
	good, err := checkpoint.Sign([]note.Signer{a}, origin, 7, root)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(origin + "\n7\n\n— x\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, signed []byte) {
		cp, err := checkpoint.Parse(signed, origin)
		if err != nil {
			return
		}
		text := checkpoint.Text(cp.Origin, cp.Size, cp.Root)
		if !bytes.HasPrefix(signed, text) {
			t.Fatalf("parsed %q as %+v, whose text is %q", signed, cp, text)
		}
	})
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
