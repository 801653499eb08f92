package tofu

import (
	"context"
	"errors"
	"fmt"
	"time"

	"evident.dev/evident/api"
	"evident.dev/evident/client"
	"evident.dev/evident/evidence"
)

// Signer signs one transition into what POST /v1/records takes: a DSSE
// envelope signed with the runner's key (*client.Signer) or a Sigstore
// bundle signed keyless (*client.KeylessSigner).
type Signer interface {
	SignRecord(ctx context.Context, t evidence.Transition) (client.Signed, error)
}

// ClientRecorder signs records and posts them to an Evident server,
// retrying what the server says a retry can cure (overload, shutdown) until
// ctx ends. A retry posts the same signed record, so the server sees a
// duplicate, never a second entry.
type ClientRecorder struct {
	Client *client.Client
	Signer Signer
}

// Record signs and posts t, returning the receipt once the entry is durable.
func (c ClientRecorder) Record(ctx context.Context, t evidence.Transition) (*api.Receipt, error) {
	signed, err := c.Signer.SignRecord(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	wait := 200 * time.Millisecond
	for {
		rec, err := c.Client.PostSigned(ctx, signed)
		if err == nil {
			return rec, nil
		}
		if !client.IsRetryable(err) {
			return nil, err
		}
		var apiErr *client.APIError
		if errors.As(err, &apiErr) && apiErr.RetryAfter > 0 {
			wait = apiErr.RetryAfter
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last answer: %w)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
}
