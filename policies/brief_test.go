package policies

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"evident.dev/evident/evidence"
)

// readBrief folds every example record into the same facts and exception
// as the full decoder does.
func TestReadBriefMatchesDecode(t *testing.T) {
	for _, k := range evidence.Kinds() {
		raw, err := os.ReadFile(filepath.Join("../evidence/testdata/kinds", string(k)+".json"))
		if err != nil {
			t.Fatal(err)
		}
		full, err := evidence.Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		var compact json.RawMessage
		if compact, err = json.Marshal(json.RawMessage(raw)); err != nil {
			t.Fatal(err)
		}
		env, _ := json.Marshal(map[string]any{"payloadType": evidence.PayloadType,
			"payload": base64.StdEncoding.EncodeToString(compact), "signatures": []any{map[string]string{"sig": "AA=="}}})
		for _, decision := range []*evidence.Policy{nil, {Result: "allow"}} {
			e := evidence.Entry{Origin: "o", ReceivedAt: time.Unix(0, 0), Envelope: env,
				Meta: evidence.EntryMeta{Decision: decision, Findings: []evidence.Finding{{Code: "x", Evidence: map[string]string{"decision": "y"}}}}}
			leaf, err := e.Leaf()
			if err != nil {
				t.Fatal(err)
			}
			brief, decided, err := readBrief(leaf)
			if err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			if decided != (decision != nil) {
				t.Errorf("%s: decided = %v with decision %v", k, decided, decision)
			}
			var a, b Facts
			a.Add(full, decided, DefaultProduction())
			b.Add(brief, decided, DefaultProduction())
			if !reflect.DeepEqual(a, b) {
				t.Errorf("%s: facts from the brief %+v, from the record %+v", k, b, a)
			}
			la, lb := exceptionLog{}, exceptionLog{}
			la.add(1, full)
			lb.add(1, brief)
			if !reflect.DeepEqual(la, lb) {
				t.Errorf("%s: exceptions from the brief %+v, from the record %+v", k, lb, la)
			}
		}
	}
}
