package evidence

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

// The regular expressions of the schema that validate.go spells out as code.
var syntaxes = []struct {
	name string
	re   *regexp.Regexp
	fn   func(string) bool
}{
	{"sha256", regexp.MustCompile(`^[0-9a-f]{64}$`), isSHA256},
	{"commit", regexp.MustCompile(`^[0-9a-f]{7,64}$`), isCommit},
	{"digest", regexp.MustCompile(`^sha256:[0-9a-f]{64}$`), isDigest},
	{"label", regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,127}$`), isLabel},
	{"ruleId", regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$`), isRuleID},
	{"digest algorithm", regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$`), isDigestAlg},
	// The schema counts characters, Decode bytes: they agree on ASCII.
	{"version name", regexp.MustCompile(`^[^\x00-\x1F\x7F]{1,128}$`), isVersionName},
}

// FuzzSyntaxes checks that the hand-written syntax checks accept exactly
// what the schema's regular expressions accept.
func FuzzSyntaxes(f *testing.F) {
	hex := "9e4ae5643818e741d99a703defa2646920c1a300753ac914e144e98730fb50a1"
	for _, s := range []string{
		"", hex, hex[:63], hex + "0", strings.ToUpper(hex), "8fb2d7e", "8fb2d7", "sha256:" + hex, "sha256:" + hex + "\n",
		hex + "\n", "prod", "prod/aws/account-payments-prod/ap-southeast-1/rds-orders", "-prod", "_x", "a:b", "a b",
		"iac.prod.database.replacement.requires-db-owner", "sha256", "gitCommit", "git_commit-1", strings.Repeat("a", 32),
		strings.Repeat("a", 33), strings.Repeat("a", 128), strings.Repeat("a", 129), strings.Repeat("a", 200), strings.Repeat("a", 201),
		"évident", "a\x7f", "a\x00", "\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, x := range syntaxes {
			if x.name == "version name" && !isASCII(s) {
				continue
			}
			if got, want := x.fn(s), x.re.MatchString(s); got != want {
				t.Errorf("%s(%q) = %v, the regular expression says %v", x.name, s, got, want)
			}
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// FuzzScan checks that scan finds a null in valid JSON exactly when there is one.
func FuzzScan(f *testing.F) {
	for _, s := range []string{
		`null`, `{"a":null}`, `{"null":"null"}`, `["n\"ull", "\\", "\\\"null"]`, `{"a":"\u006eull"}`, `[true,false,1e5]`,
		`{"a":[{"b":"\\\\"},null]}`, `"\\\\\""`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		hasNull, err := scan(b, 10000)
		if !jsontext.Value(b).IsValid() || err != nil {
			return
		}
		want := false
		dec := jsontext.NewDecoder(bytes.NewReader(b))
		for {
			tok, err := dec.ReadToken()
			if err != nil {
				break
			}
			want = want || tok.Kind() == 'n'
		}
		if hasNull != want {
			t.Fatalf("scan(%q) finds a null: %v, want %v", b, hasNull, want)
		}
	})
}
