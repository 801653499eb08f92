package witness

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Witness is one witness a log submits its checkpoints to.
type Witness struct {
	// Name is the witness's name, as its cosignatures carry it.
	Name string `yaml:"name"`
	// Key is its cosignature verifier key (name+hash+base64), pinned.
	Key string `yaml:"key"`
	// URL is its tlog-witness endpoint's prefix: the checkpoint is posted
	// to URL + "/add-checkpoint".
	URL string `yaml:"url"`
}

// ConflictError is a witness's 409 answer: it has cosigned a checkpoint of
// Known entries, not of the size the request said it had.
type ConflictError struct{ Known uint64 }

func (e *ConflictError) Error() string {
	return fmt.Sprintf("the witness holds a checkpoint of %d entries", e.Known)
}

// ErrRefused is wrapped by a witness's refusal of a checkpoint: a
// consistency proof that does not hold against the checkpoint it holds,
// which for a checkpoint of the same size means another root, a split
// view (422); a log signature it does not accept (403); or a log it does
// not know (404).
var ErrRefused = errors.New("the witness refused the checkpoint")

// maxAnswer bounds a witness's answer: a few signature lines.
const maxAnswer = 64 << 10

// AddCheckpoint submits a signed checkpoint to a witness, with the
// consistency proof from the checkpoint of oldSize entries the log believes
// the witness holds (C2SP tlog-witness), and returns the witness's
// cosignature lines as they go under a signed note's own.
func AddCheckpoint(ctx context.Context, hc *http.Client, url string, oldSize uint64, proof [][32]byte, signed []byte) ([]byte, error) {
	if len(proof) > 63 {
		return nil, fmt.Errorf("a consistency proof of %d hashes; tlog-witness takes at most 63", len(proof))
	}
	var body bytes.Buffer
	fmt.Fprintf(&body, "old %d\n", oldSize)
	for _, h := range proof {
		body.WriteString(base64.StdEncoding.EncodeToString(h[:]))
		body.WriteByte('\n')
	}
	body.WriteByte('\n')
	body.Write(signed)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(url, "/")+"/add-checkpoint", &body)
	if err != nil {
		return nil, fmt.Errorf("witness request: %w", err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("witness %s: %w", url, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("witness %s: read the answer: %w", url, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		if len(answer) == 0 || answer[len(answer)-1] != '\n' {
			return nil, fmt.Errorf("witness %s: an answer that is not signature lines: %q", url, answer)
		}
		return answer, nil
	case http.StatusConflict:
		known, err := strconv.ParseUint(strings.TrimSpace(string(answer)), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("witness %s: a conflict naming no size: %q", url, answer)
		}
		return nil, &ConflictError{Known: known}
	case http.StatusUnprocessableEntity, http.StatusForbidden, http.StatusNotFound:
		return nil, fmt.Errorf("%w (%s): %s", ErrRefused, resp.Status, strings.TrimSpace(string(answer)))
	default:
		return nil, fmt.Errorf("witness %s: %s: %s", url, resp.Status, strings.TrimSpace(string(answer)))
	}
}
