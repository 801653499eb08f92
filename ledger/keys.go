package ledger

import (
	"encoding/binary"
	"strconv"
	"time"

	"evident.dev/evident/evidence"
)

// Badger key space. One byte of prefix per kind of key; integers big-endian so
// keys sort in log order.
const (
	prefixEntry      = 'e' // e | index u64            -> leaf
	prefixHash       = 'h' // h | stored hash index u64 -> 32-byte tree hash
	prefixDigest     = 'd' // d | record digest [32]    -> index u64
	prefixCheckpoint = 'c' // c | tree size u64         -> signed checkpoint note
	prefixTerm       = 'x' // x | term | time | index   -> (empty): a time-ordered posting
	// prefixChunk ('p', postings.go) holds the other postings, by chunk.
	keyHead = "s" // head: size u64 | last entry hash [32] | checkpoint size u64
	// keyTermsVersion ("v", reindex.go) records which TermsFor built the x keys.
)

func u64Key(prefix byte, n uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefix
	binary.BigEndian.PutUint64(k[1:], n)
	return k
}

// Term is one secondary-index posting: the entry at Index has Name = Value,
// at time At (zero for terms that are not time-ordered).
type Term struct {
	Name  string
	Value string
	At    time.Time
}

// The secondary indexes: what the audit queries filter on.
// Every term but TermEnvironment, TermTime and TermExceptionExpiry has no
// time, so its postings are in log order and a query can check "does entry i
// have term t" with one point read.
const (
	TermChange      = "change"
	TermEnvironment = "env" // ordered by occurredAt
	TermKind        = "kind"
	TermActor       = "actor"
	TermStack       = "stack"

	TermTime        = "time"    // value "", ordered by occurredAt: every entry
	TermEnv         = "envx"    // environment, in log order
	TermAccount     = "account" // target fields
	TermRegion      = "region"
	TermCluster     = "cluster"
	TermNamespace   = "ns"
	TermApplication = "app"
	TermService     = "service"
	TermDataClass   = "dataclass"
	TermRiskClass   = "risk"
	TermEmergency   = "emergency" // "true" for emergency records and break-glass
	TermApprover    = "approver"  // approval blocks
	TermGroup       = "group"
	TermResType     = "rtype" // plan resource types, synced object kinds
	TermResAddress  = "raddr" // plan resource addresses, synced objects as kind/namespace/name
	TermFinding     = "finding"
	TermPolicy      = "presult" // policy result: the log's decision and policy.evaluated blocks
	TermRule        = "rule"    // rule ids of those decisions
	TermArtifactBr  = "protected"
	TermFact        = "fact" // evidence.Facts: public exposure, ingress, database
	// TermExceptionExpiry (value "") orders exception.granted records by
	// their expiry, for "exceptions expiring within N days".
	TermExceptionExpiry = "exexpiry"
)

// maxResourceTerms bounds the resource postings of one record, so a plan of
// thousands of resources cannot multiply the index; the rest are still in
// the record and its plan artifact.
const maxResourceTerms = 64

// TermsFor derives the index terms of a record from its statement and the
// metadata the log adds (findings, policy decision). It is the one
// definition used both when appending and when `evident verify` rebuilds the
// indexes. Terms are unique: the same posting is never listed twice.
func TermsFor(st *evidence.Statement, meta evidence.EntryMeta) []Term {
	p := st.Predicate
	terms := make([]Term, 0, 24)
	add := func(name, value string, at time.Time) {
		if value == "" || !validTerm(Term{Name: name, Value: value}) {
			return
		}
		// A linear scan: a record has a few dozen terms at most
		// (maxResourceTerms bounds the many), and a map per record cost
		// more than the scan.
		for _, t := range terms {
			if t.Value == value && t.Name == name {
				return
			}
		}
		terms = append(terms, Term{Name: name, Value: value, At: at})
	}
	add(TermChange, p.ChangeID, time.Time{})
	add(TermEnvironment, p.Target.Environment, p.OccurredAt)
	add(TermKind, string(p.Kind), time.Time{})
	add(TermActor, p.Actor, time.Time{})
	add(TermStack, p.Target.Stack, time.Time{})

	if !p.OccurredAt.IsZero() {
		terms = append(terms, Term{Name: TermTime, Value: "", At: p.OccurredAt})
	}
	t := p.Target
	add(TermEnv, t.Environment, time.Time{})
	add(TermAccount, t.Account, time.Time{})
	add(TermRegion, t.Region, time.Time{})
	add(TermCluster, t.Cluster, time.Time{})
	add(TermNamespace, t.Namespace, time.Time{})
	add(TermApplication, t.Application, time.Time{})
	add(TermService, t.Service, time.Time{})
	add(TermDataClass, t.DataClass, time.Time{})
	add(TermRiskClass, p.RiskClass, time.Time{})
	if p.Emergency || p.Kind == evidence.KindBreakglassOpened || p.Kind == evidence.KindBreakglassClosed {
		add(TermEmergency, "true", time.Time{})
	}
	if a := p.Approval; a != nil {
		add(TermApprover, a.Approver, time.Time{})
		for _, g := range a.Groups {
			add(TermGroup, g, time.Time{})
		}
	}
	resources := 0
	resource := func(typ, addr string) {
		if resources >= maxResourceTerms {
			return
		}
		resources++
		add(TermResType, typ, time.Time{})
		add(TermResAddress, addr, time.Time{})
	}
	if pl := p.Plan; pl != nil {
		for _, rc := range pl.ResourceChanges {
			resource(rc.Type, rc.Address)
		}
	}
	if s := p.Sync; s != nil {
		for _, o := range s.Resources {
			resource(o.Kind, o.Kind+"/"+o.Namespace+"/"+o.Name)
		}
	}
	if p.Plan != nil || p.Sync != nil {
		for _, f := range evidence.Facts(&p) {
			add(TermFact, f, time.Time{})
		}
	}
	for _, f := range meta.Findings {
		add(TermFinding, f.Code, time.Time{})
	}
	for _, d := range []*evidence.Policy{meta.Decision, p.Policy} {
		if d == nil {
			continue
		}
		add(TermPolicy, d.Result, time.Time{})
		for _, r := range d.Decisions {
			add(TermRule, r.RuleID, time.Time{})
		}
	}
	if a := p.ArtifactAdmission; a != nil {
		add(TermArtifactBr, strconv.FormatBool(a.ProtectedBranch), time.Time{})
	}
	if e := p.Exception; e != nil && p.Kind == evidence.KindExceptionGranted && !e.ExpiresAt.IsZero() {
		terms = append(terms, Term{Name: TermExceptionExpiry, Value: "", At: e.ExpiresAt})
	}
	return terms
}

// termPrefix is x | len(name) u8 | name | len(value) u16 | value.
func termPrefix(name, value string) []byte {
	k := make([]byte, 0, 4+len(name)+len(value)+16)
	k = append(k, prefixTerm, byte(len(name)))
	k = append(k, name...)
	k = binary.BigEndian.AppendUint16(k, uint16(len(value)))
	return append(k, value...)
}

// termKey is termPrefix | at (unix ns, u64, 0 if none) | index u64.
func termKey(t Term, index uint64) []byte {
	k := termPrefix(t.Name, t.Value)
	var at uint64
	if !t.At.IsZero() {
		at = uint64(t.At.UnixNano())
	}
	k = binary.BigEndian.AppendUint64(k, at)
	return binary.BigEndian.AppendUint64(k, index)
}

// validTerm reports whether a term fits the key encoding.
func validTerm(t Term) bool {
	return len(t.Name) > 0 && len(t.Name) < 256 && len(t.Value) < 1<<16
}
