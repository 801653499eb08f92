package witness_test

import (
	"errors"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"evident.dev/evident/witness"
)

// cosigner is a witness key made in the test: its cosignature/v1 signer
// and verifier key.
func cosigner(t testing.TB, name string) (note.Signer, string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(nil, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s, vkey // a plain Ed25519 key, taken as its cosignature/v1 key
}

func TestPolicyQuorum(t *testing.T) {
	logSkey, _, _ := note.GenerateKey(nil, origin)
	logSigner, _ := note.NewSigner(logSkey)
	s1, k1 := cosigner(t, "w1")
	s2, k2 := cosigner(t, "w2")
	s3, k3 := cosigner(t, "w3")
	text := &note.Note{Text: origin + "\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}
	sign := func(signers ...note.Signer) []byte {
		b, err := note.Sign(text, append([]note.Signer{logSigner}, signers...)...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name    string
		quorum  int
		signed  []byte
		want    int
		refused bool
	}{
		{"all three, quorum 2", 2, sign(s1, s2, s3), 3, false},
		{"two of three, quorum 2", 2, sign(s1, s3), 2, false},
		{"one of three, quorum 2", 2, sign(s2), 1, true},
		{"none", 1, sign(), 0, true},
		{"two of three, quorum all", 0, sign(s1, s2), 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := witness.NewPolicy([]string{k1, k2, k3}, tc.quorum)
			if err != nil {
				t.Fatal(err)
			}
			names, err := p.Check(tc.signed)
			if len(names) != tc.want || (err != nil) != tc.refused {
				t.Fatalf("Check: %v, %v; want %d names, refused %v", names, err, tc.want, tc.refused)
			}
			if err != nil && !errors.Is(err, witness.ErrNotWitnessed) {
				t.Fatalf("%v does not wrap ErrNotWitnessed", err)
			}
		})
	}

	// A cosignature by a policy key over another text is refused, even when
	// the others reach the quorum.
	other, err := note.Sign(&note.Note{Text: origin + "\n6\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}, s3)
	if err != nil {
		t.Fatal(err)
	}
	_, line, _ := strings.Cut(string(other), "\n\n")
	forged := append(sign(s1, s2), line...)
	p, _ := witness.NewPolicy([]string{k1, k2, k3}, 2)
	if _, err := p.Check(forged); !errors.Is(err, witness.ErrNotWitnessed) {
		t.Fatalf("a cosignature over another checkpoint: %v, want refused", err)
	}
}

func TestNewPolicyRefuses(t *testing.T) {
	_, k1 := cosigner(t, "w1")
	_, k1b := cosigner(t, "w1")
	for _, tc := range []struct {
		keys   []string
		quorum int
		want   string
	}{
		{nil, 0, "no witness key"},
		{[]string{"not a key"}, 0, "witness key"},
		{[]string{k1, k1b}, 0, "two keys of the witness"},
		{[]string{k1}, 2, "quorum of 2 out of 1"},
		{[]string{k1}, -1, "quorum of -1"},
	} {
		if _, err := witness.NewPolicy(tc.keys, tc.quorum); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewPolicy(%v, %d): %v, want %q", tc.keys, tc.quorum, err, tc.want)
		}
	}
}

// FuzzPolicyCheck feeds the policy what a server or a pack may hand an
// auditor: it must never panic, and must never count a witness whose
// cosignature it cannot verify.
func FuzzPolicyCheck(f *testing.F) {
	s1, k1 := cosigner(f, "w1")
	signed, err := note.Sign(&note.Note{Text: origin + "\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}, s1)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Add([]byte(origin + "\n5\n\n— w1 AAAA\n"))
	f.Add([]byte{})
	p, err := witness.NewPolicy([]string{k1}, 1)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		names, err := p.Check(b)
		if err == nil {
			// Accepted: the cosignature must verify on its own.
			if _, err := note.Open(b, note.VerifierList(mustVerifier(t, k1))); err != nil || len(names) != 1 {
				t.Fatalf("accepted %q (%v) but it does not open: %v", b, names, err)
			}
		}
	})
}

func mustVerifier(t *testing.T, vkey string) note.Verifier {
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}
