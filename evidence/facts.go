package evidence

import (
	"slices"
	"strings"
)

// Facts an auditor asks about that a resource's type alone cannot tell:
// a security-group rule open to 0.0.0.0/0 and one open to 10.40.0.0/16 are
// the same type. They are derived from a record's plan resource changes
// (their type and the attributes the runner reports) and synced objects,
// once, when the record is indexed.
const (
	// FactPublicExposure: the change opens something to the internet: an
	// ingress rule from 0.0.0.0/0 or ::/0, a load balancer that is not
	// internal (in a plan, or a synced Service of type LoadBalancer), a
	// bucket made public by ACL, policy or a lifted public access block.
	FactPublicExposure = "public-exposure"
	// FactIngress: the change touches Kubernetes ingress (Ingress, Gateway
	// API routes and gateways, Services of type LoadBalancer or NodePort).
	FactIngress = "ingress"
	// FactDatabase: the change touches a database or its configuration.
	FactDatabase = "database"
)

// Facts returns the facts of p, each once, in the order first derived.
func Facts(p *Transition) []string {
	var out []string
	add := func(f string) {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	if pl := p.Plan; pl != nil {
		for _, rc := range pl.ResourceChanges {
			if isDatabase(rc.Type) {
				add(FactDatabase)
			}
			if publiclyExposed(rc) {
				add(FactPublicExposure)
			}
		}
	}
	if s := p.Sync; s != nil {
		for _, o := range s.Resources {
			switch o.Kind {
			case "Ingress", "Gateway", "HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute":
				add(FactIngress)
			case "Service":
				switch o.ServiceType {
				case "LoadBalancer":
					add(FactIngress)
					add(FactPublicExposure)
				case "NodePort":
					add(FactIngress)
				}
			}
		}
	}
	return out
}

// isDatabase recognises the database resources of the common providers.
func isDatabase(t string) bool {
	for _, p := range []string{"aws_db_", "aws_rds_", "aws_dynamodb_", "aws_docdb_", "aws_neptune_", "aws_redshift_",
		"aws_elasticache_", "aws_memorydb_", "google_sql_", "google_spanner_", "google_bigtable_", "google_alloydb_",
		"azurerm_mssql_", "azurerm_postgresql_", "azurerm_mysql_", "azurerm_cosmosdb_", "azurerm_sql_"} {
		if strings.HasPrefix(t, p) {
			return true
		}
	}
	return false
}

// anywhere are the address ranges that mean "the whole internet".
func anywhere(v string) bool {
	return strings.Contains(v, "0.0.0.0/0") || strings.Contains(v, "::/0")
}

// publiclyExposed tells from a resource change's type and attributes
// whether it opens something to the internet. A change that does not report
// the attributes that would tell is not claimed to.
func publiclyExposed(rc ResourceChange) bool {
	a := rc.Attributes
	if slices.Equal(rc.Actions, []string{"delete"}) || a == nil {
		return false
	}
	switch rc.Type {
	case "aws_security_group_rule":
		return a["type"] != "egress" && (anywhere(a["cidr_blocks"]) || anywhere(a["ipv6_cidr_blocks"]))
	case "aws_vpc_security_group_ingress_rule":
		return anywhere(a["cidr_ipv4"]) || anywhere(a["cidr_ipv6"])
	case "aws_security_group":
		return anywhere(a["ingress"])
	case "google_compute_firewall":
		return a["direction"] != "EGRESS" && anywhere(a["source_ranges"])
	case "azurerm_network_security_rule":
		return a["direction"] == "Inbound" && a["access"] == "Allow" &&
			(a["source_address_prefix"] == "*" || a["source_address_prefix"] == "Internet" || anywhere(a["source_address_prefix"]))
	case "aws_lb", "aws_alb", "aws_elb":
		return a["internal"] == "false"
	case "aws_s3_bucket_acl", "aws_s3_bucket":
		switch a["acl"] {
		case "public-read", "public-read-write", "authenticated-read":
			return true
		}
	case "aws_s3_bucket_public_access_block":
		for _, k := range []string{"block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"} {
			if a[k] == "false" {
				return true
			}
		}
	case "aws_s3_bucket_policy":
		p := strings.ReplaceAll(a["policy"], " ", "")
		return strings.Contains(p, `"Effect":"Allow"`) && (strings.Contains(p, `"Principal":"*"`) || strings.Contains(p, `"AWS":"*"`))
	}
	return false
}
