package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"evident.dev/evident/api"
	"evident.dev/evident/approvals"
)

// GateRequest asks whether one plan of one commit may be applied to a
// target now: {"changeId","commitSha","planSha256","target","actor"}.
type GateRequest = approvals.GateRequest

// GateDecision is the gate's answer: "allow" or "deny", the reasons, the
// required approver groups, the approvals that count, and the receipt of the
// gate.decided entry recording the decision.
type GateDecision = api.GateAnswer

// Gate decisions.
const (
	Allow = approvals.Allow
	Deny  = approvals.Deny
)

// AskGate asks the apply gate. A runner applies only on an answer whose
// Decision is Allow; an error (the gate could not decide) means do not apply.
func (c *Client) AskGate(ctx context.Context, req GateRequest) (*GateDecision, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode gate request: %w", err)
	}
	var d GateDecision
	if err := c.do(ctx, http.MethodPost, "/v1/gate/apply", body, &d); err != nil {
		return nil, err
	}
	if d.Decision != Allow && d.Decision != Deny {
		return nil, fmt.Errorf("gate answered an unknown decision %q", d.Decision)
	}
	return &d, nil
}
