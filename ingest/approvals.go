package ingest

import (
	"context"

	"evident.dev/evident/approvals"
	"evident.dev/evident/evidence"
	"evident.dev/evident/ledger"
	"evident.dev/evident/verifier"
)

// maxChangeEntries bounds the entries of one change read to judge a record.
const maxChangeEntries = 10000

// ChangeLog reads a change's entries from the ledger, for the verifier's
// approval binding and the apply gate.
func ChangeLog(l *ledger.Log) approvals.ChangeLog {
	return approvals.ChangeLogFunc(func(ctx context.Context, changeID string) ([]*evidence.Entry, error) {
		return l.Entries(ctx, ledger.Query{Name: ledger.TermChange, Value: changeID, Limit: maxChangeEntries})
	})
}

// ApprovalJudge adds the verifier's approval-binding and break-glass findings
// to approvals, applies and break-glass closures.
type ApprovalJudge struct {
	Approvals *approvals.Approvals
}

// Judge implements Judge.
func (j ApprovalJudge) Judge(ctx context.Context, v *verifier.Verified) (Judgement, error) {
	f, err := j.Approvals.Judge(ctx, v)
	if err != nil {
		return Judgement{}, err
	}
	return Judgement{Findings: f}, nil
}

// ArtifactJudge adds the verifier's artifact-admission findings to
// artifact.admitted and sync.* records.
type ArtifactJudge struct {
	Verifier *verifier.Verifier
}

// Judge implements Judge.
func (j ArtifactJudge) Judge(_ context.Context, v *verifier.Verified) (Judgement, error) {
	return Judgement{Findings: j.Verifier.AdmitArtifact(v.Statement.Predicate)}, nil
}
