package secret

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	own := filepath.Join(dir, "own.key")
	shared := filepath.Join(dir, "shared.key")
	if err := os.WriteFile(own, []byte("own"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(shared, []byte("shared"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SECRET_TEST_SET", "from the environment")
	t.Setenv("SECRET_TEST_BLANK", " \n")

	for _, c := range []struct{ ref, want, refused string }{
		{ref: own, want: "own"},
		{ref: "env:SECRET_TEST_SET", want: "from the environment"},
		{ref: shared, refused: "accessible by group or others"},
		{ref: "env:SECRET_TEST_BLANK", refused: "SECRET_TEST_BLANK is not set or empty"},
		{ref: "env:SECRET_TEST_UNSET", refused: "SECRET_TEST_UNSET is not set or empty"},
		{ref: "", refused: "no file given"},
		{ref: filepath.Join(dir, "missing"), refused: "no such file"},
	} {
		b, err := Read("test secret", c.ref)
		switch {
		case c.refused == "" && (err != nil || string(b) != c.want):
			t.Errorf("Read(%q) = %q, %v; want %q", c.ref, b, err, c.want)
		case c.refused != "" && (err == nil || !strings.Contains(err.Error(), c.refused) || !strings.HasPrefix(err.Error(), "test secret")):
			t.Errorf("Read(%q) = %q, %v; want an error naming the secret and saying %q", c.ref, b, err, c.refused)
		}
		if err != nil && strings.Contains(err.Error(), "from the environment") {
			t.Errorf("Read(%q): the error holds the secret: %v", c.ref, err)
		}
	}
}
