package tofu

import (
	"encoding/json"
	"testing"

	tfjson "github.com/hashicorp/terraform-json"

	"evident.dev/evident/evidence"
)

// The runner reports the planned values of the attributes the policies and
// the ledger's facts read, so a rule open to 0.0.0.0/0 is told from one
// open to 10.40.0.0/16; values the plan marks sensitive are left out.
func TestSummaryReportsExposureAttributes(t *testing.T) {
	var p tfjson.Plan
	if err := json.Unmarshal([]byte(`{"format_version":"1.2","terraform_version":"1.12.6","resource_changes":[
	  {"address":"aws_security_group_rule.https","type":"aws_security_group_rule","change":{"actions":["create"],
	   "after":{"type":"ingress","from_port":443,"cidr_blocks":["0.0.0.0/0"],"description":"web"},"after_sensitive":{}}},
	  {"address":"aws_security_group_rule.admin","type":"aws_security_group_rule","change":{"actions":["create"],
	   "after":{"type":"ingress","from_port":22,"cidr_blocks":["10.40.0.0/16"]},"after_sensitive":{}}},
	  {"address":"aws_s3_bucket_policy.p","type":"aws_s3_bucket_policy","change":{"actions":["update"],
	   "after":{"policy":"{\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\"}]}"},"after_sensitive":{"policy":true}}}
	]}`), &p); err != nil {
		t.Fatal(err)
	}
	s := Summarize(&p, nil, Change{})
	if len(s.ResourceChanges) != 3 {
		t.Fatalf("resource changes: %+v", s.ResourceChanges)
	}
	https, admin, policy := s.ResourceChanges[0], s.ResourceChanges[1], s.ResourceChanges[2]
	if https.Attributes["cidr_blocks"] != `["0.0.0.0/0"]` || https.Attributes["type"] != "ingress" || https.Attributes["description"] != "" {
		t.Errorf("https rule attributes: %v", https.Attributes)
	}
	if _, ok := policy.Attributes["policy"]; ok {
		t.Errorf("a sensitive policy was reported: %v", policy.Attributes)
	}
	facts := func(rc evidence.ResourceChange) []string {
		return evidence.Facts(&evidence.Transition{Plan: &evidence.Plan{ResourceChanges: []evidence.ResourceChange{rc}}})
	}
	if len(facts(https)) != 1 || len(facts(admin)) != 0 {
		t.Errorf("facts: https %v, admin %v", facts(https), facts(admin))
	}
}
