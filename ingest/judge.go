package ingest

import (
	"context"
	"errors"
	"fmt"

	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
)

// A Judge assesses a verified record against the ledger's state before it is
// appended: the verifier's approval binding and artifact admission, the
// policies' decision, completeness. Judging is about compliance, not
// authenticity: a judge reports what is wrong as findings and the record is
// appended with them (an apply without approval is exactly what an auditor
// must see). A judge refuses a record only by returning an
// *evidence.ValidationError (the record breaks an invariant ingest enforces,
// such as an exception without an owner); any other error means the judge
// could not read the state it needs, and the record is not appended.
//
// Judges see the entries acknowledged before the record was received. Safe
// for concurrent use.
type Judge interface {
	Judge(ctx context.Context, v *verifier.Verified) (Judgement, error)
}

// Judgement is what a judge adds to an entry.
type Judgement struct {
	Findings []evidence.Finding
	// Decision is the policy decision; at most one judge sets it.
	Decision *evidence.Policy
}

// errJudge marks a judge that could not reach the state it needs.
var errJudge = errors.New("judging the record failed")

// judge runs every judge over v and merges their judgements.
func judge(ctx context.Context, judges []Judge, v *verifier.Verified) (Judgement, error) {
	var out Judgement
	for _, j := range judges {
		got, err := j.Judge(ctx, v)
		if err != nil {
			var invalid *evidence.ValidationError
			if errors.As(err, &invalid) {
				return Judgement{}, err
			}
			return Judgement{}, fmt.Errorf("%w: %w", errJudge, err)
		}
		out.Findings = append(out.Findings, got.Findings...)
		if got.Decision != nil {
			if out.Decision != nil {
				return Judgement{}, fmt.Errorf("%w: two judges decided the policy of one record", errJudge)
			}
			out.Decision = got.Decision
		}
	}
	return out, nil
}
