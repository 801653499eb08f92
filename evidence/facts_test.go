package evidence_test

import (
	"slices"
	"testing"

	"evident.dev/evident/evidence"
)

func TestFacts(t *testing.T) {
	rc := func(typ string, attrs map[string]string, actions ...string) evidence.ResourceChange {
		if len(actions) == 0 {
			actions = []string{"create"}
		}
		return evidence.ResourceChange{Address: typ + ".x", Type: typ, Actions: actions, Attributes: attrs}
	}
	for name, c := range map[string]struct {
		rc   evidence.ResourceChange
		want []string
	}{
		"rule from anywhere":        {rc("aws_security_group_rule", map[string]string{"type": "ingress", "cidr_blocks": `["0.0.0.0/0"]`}), []string{evidence.FactPublicExposure}},
		"rule from the vpc":         {rc("aws_security_group_rule", map[string]string{"type": "ingress", "cidr_blocks": `["10.40.0.0/16"]`}), nil},
		"egress to anywhere":        {rc("aws_security_group_rule", map[string]string{"type": "egress", "cidr_blocks": `["0.0.0.0/0"]`}), nil},
		"ipv6 ingress rule":         {rc("aws_vpc_security_group_ingress_rule", map[string]string{"cidr_ipv6": "::/0"}), []string{evidence.FactPublicExposure}},
		"rule removed":              {rc("aws_security_group_rule", map[string]string{"type": "ingress", "cidr_blocks": `["0.0.0.0/0"]`}, "delete"), nil},
		"rule without attributes":   {rc("aws_security_group_rule", nil), nil},
		"internet-facing lb":        {rc("aws_lb", map[string]string{"internal": "false"}), []string{evidence.FactPublicExposure}},
		"internal lb":               {rc("aws_lb", map[string]string{"internal": "true"}), nil},
		"public bucket acl":         {rc("aws_s3_bucket_acl", map[string]string{"acl": "public-read"}), []string{evidence.FactPublicExposure}},
		"private bucket acl":        {rc("aws_s3_bucket_acl", map[string]string{"acl": "private"}), nil},
		"access block lifted":       {rc("aws_s3_bucket_public_access_block", map[string]string{"block_public_acls": "false"}), []string{evidence.FactPublicExposure}},
		"bucket policy to everyone": {rc("aws_s3_bucket_policy", map[string]string{"policy": `{"Statement":[{"Effect": "Allow","Principal":"*","Action":"s3:GetObject"}]}`}), []string{evidence.FactPublicExposure}},
		"bucket policy denying all": {rc("aws_s3_bucket_policy", map[string]string{"policy": `{"Statement":[{"Effect":"Deny","Principal":"*"}]}`}), nil},
		"database":                  {rc("aws_db_instance", nil, "update"), []string{evidence.FactDatabase}},
		"database parameters":       {rc("aws_rds_cluster_parameter_group", nil, "update"), []string{evidence.FactDatabase}},
		"topic":                     {rc("aws_sns_topic", nil), nil},
	} {
		got := evidence.Facts(&evidence.Transition{Plan: &evidence.Plan{ResourceChanges: []evidence.ResourceChange{c.rc}}})
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: facts %v, want %v", name, got, c.want)
		}
	}
	sync := &evidence.Transition{Sync: &evidence.Sync{Resources: []evidence.SyncedObject{
		{Kind: "Deployment", Name: "web"}, {Kind: "Ingress", Name: "web"}, {Kind: "HTTPRoute", Name: "api"}}}}
	if got := evidence.Facts(sync); !slices.Equal(got, []string{evidence.FactIngress}) {
		t.Errorf("a sync of an Ingress and a route: facts %v", got)
	}
	for typ, want := range map[string][]string{
		"LoadBalancer": {evidence.FactIngress, evidence.FactPublicExposure},
		"NodePort":     {evidence.FactIngress},
		"ClusterIP":    nil,
		"":             nil, // a watcher that could not read the Service claims nothing
	} {
		svc := &evidence.Transition{Sync: &evidence.Sync{Resources: []evidence.SyncedObject{{Kind: "Service", Name: "web", ServiceType: typ}}}}
		if got := evidence.Facts(svc); !slices.Equal(got, want) {
			t.Errorf("a synced Service of type %q: facts %v, want %v", typ, got, want)
		}
	}
}
