package testenv

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Witness is a litewitness (a real c2sp.org/tlog-witness witness, from
// scripts/setup.d/47-litewitness.sh) started for one test.
type Witness struct {
	Name string
	// Key is its cosignature/v1 verifier key (name+hash+base64 of 0x04 and
	// the Ed25519 public key), the one a witness policy pins.
	Key string
	// URL is its tlog-witness prefix: checkpoints go to URL/add-checkpoint.
	URL string
	db  string
}

// StartWitness starts litewitness on a free 127.0.0.1 port, with a fresh
// Ed25519 key held by its own ssh-agent (as litewitness requires) and a
// fresh SQLite database, and stops both when the test ends. It knows no log
// until AddLog.
func StartWitness(t testing.TB, name string) *Witness {
	t.Helper()
	litewitness := Tool(t, "litewitness")
	Tool(t, "witnessctl") // for AddLog: missing, it fails the test here
	agent, sshAdd := Tool(t, "ssh-agent"), Tool(t, "ssh-add")
	// A short directory: a unix socket path has at most 107 bytes.
	dir, err := os.MkdirTemp("", "witness")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "witness.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "witness.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logf.Close() })
	log := func() string { b, _ := os.ReadFile(logf.Name()); return string(b) }

	sock := filepath.Join(dir, "agent.sock")
	startProcess(t, logf, agent, "-D", "-a", sock)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh-agent made no socket in 30s; log:\n%s", log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	add := exec.Command(sshAdd, keyFile)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v: %s", err, out)
	}

	w := &Witness{Name: name, Key: cosignatureKey(name, pub), db: filepath.Join(dir, "witness.db")}
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	w.URL = "http://" + addr
	startProcess(t, logf, litewitness, "-name", name, "-db", w.db, "-ssh-agent", sock,
		"-key", ssh.FingerprintSHA256(sshPub), "-listen", addr)
	waitReady(t, http.DefaultClient, w.URL+"/", "", log)
	return w
}

// AddLog makes the witness know a log, at size 0, by its origin and the
// verifier key its checkpoints are signed with (witnessctl, which works
// while litewitness runs).
func (w *Witness) AddLog(t testing.TB, origin, logKey string) {
	t.Helper()
	witnessctl := Tool(t, "witnessctl")
	for _, args := range [][]string{
		{"add-log", "-db", w.db, "-origin", origin},
		{"add-key", "-db", w.db, "-origin", origin, "-key", logKey},
	} {
		if out, err := exec.Command(witnessctl, args...).CombinedOutput(); err != nil {
			t.Fatalf("witnessctl %s: %v: %s", args[0], err, out)
		}
	}
}

// cosignatureKey is the C2SP signed-note verifier key of an Ed25519
// cosignature/v1 key: algorithm byte 0x04, and a key hash over the name,
// a newline, that byte and the key.
func cosignatureKey(name string, pub ed25519.PublicKey) string {
	raw := append([]byte{0x04}, pub...)
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", name)
	h.Write(raw)
	hash := binary.BigEndian.Uint32(h.Sum(nil)[:4])
	return fmt.Sprintf("%s+%08x+%s", name, hash, base64.StdEncoding.EncodeToString(raw))
}
