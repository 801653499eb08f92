package ingest

import (
	"context"
	"fmt"

	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
)

// ArtifactChecker says whether the artifact store holds a blob.
// artifacts.Store implementations satisfy it. Safe for concurrent use.
type ArtifactChecker interface {
	Exists(ctx context.Context, digest string) (bool, error)
}

// ArtifactStoreJudge finds the artifacts a record names (predicate.artifacts)
// that the server's artifact store does not hold: finding artifact.missing,
// one per missing artifact. Evidence that points at nothing is incomplete,
// but the record is still appended, as every judged record is. A store that
// cannot be reached is an error: the record is not appended and the runner
// retries, rather than its evidence being marked missing by an outage.
type ArtifactStoreJudge struct {
	Store ArtifactChecker
}

// FindingArtifactMissing is the finding code ArtifactStoreJudge reports.
const FindingArtifactMissing = "artifact.missing"

// Judge implements Judge.
func (j ArtifactStoreJudge) Judge(ctx context.Context, v *verifier.Verified) (Judgement, error) {
	var out Judgement
	for _, a := range v.Statement.Predicate.Artifacts {
		ok, err := j.Store.Exists(ctx, a.Digest)
		if err != nil {
			return Judgement{}, fmt.Errorf("artifact %s (%s): %w", a.Name, a.Digest, err)
		}
		if ok {
			continue
		}
		out.Findings = append(out.Findings, evidence.Finding{
			Code:     FindingArtifactMissing,
			Severity: "high",
			Message:  fmt.Sprintf("artifact %q is not in the artifact store", a.Name),
			Evidence: map[string]string{"name": a.Name, "digest": a.Digest},
		})
	}
	return out, nil
}
