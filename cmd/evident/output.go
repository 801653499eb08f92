package main

import (
	"encoding/hex"
	"flag"
	"io"
	"time"

	"evident.dev/evident/audit"
)

// output is the -o flag of commands that print a result: text for people,
// json for scripts (one JSON object on stdout, also when the command fails
// with an answer, such as a log that does not verify).
type output struct{ format string }

func addOutputFlag(fs *flag.FlagSet) *output {
	o := &output{}
	fs.StringVar(&o.format, "o", "text", "output format: text or json")
	return o
}

func (o *output) check() error {
	if o.format != "text" && o.format != "json" {
		return usageErrorf("-o %q: want text or json", o.format)
	}
	return nil
}

func (o *output) json() bool { return o.format == "json" }

// verifyResult is verify's answer in -o json.
type verifyResult struct {
	OK               bool           `json:"ok"`
	Error            string         `json:"error,omitempty"`
	Entries          uint64         `json:"entries"`
	Checkpoints      int            `json:"checkpoints"`
	CheckpointSize   uint64         `json:"checkpointSize"`
	Root             string         `json:"root,omitempty"`
	Signatures       uint64         `json:"signaturesVerified"`
	Checked          string         `json:"checked"`
	Anchors          int            `json:"anchorsVerified"`
	AnchorsUnchecked int            `json:"anchorsUnchecked"`
	Rotations        []rotationJSON `json:"logKeyRotations,omitempty"`
	RevokedKeys      []revokedJSON  `json:"revokedKeys,omitempty"`
	Seconds          float64        `json:"seconds"`
}

type rotationJSON struct {
	Entry          uint64 `json:"entry"`
	From           string `json:"from"`
	To             string `json:"to"`
	CheckpointSize uint64 `json:"checkpointSize"`
}

type revokedJSON struct {
	Name           string    `json:"name"`
	KeyID          string    `json:"keyId"`
	RevokedAt      time.Time `json:"revokedAt"`
	Entries        uint64    `json:"entries"`
	LastReceivedAt time.Time `json:"lastReceivedAt,omitzero"`
}

func writeVerifyJSON(w io.Writer, rep *audit.CheckReport, verr error, checked string, took time.Duration) error {
	res := verifyResult{OK: verr == nil, Checked: checked, Seconds: took.Seconds()}
	if verr != nil {
		res.Error = verr.Error()
	}
	if rep != nil {
		res.Entries, res.Checkpoints, res.CheckpointSize = rep.Size, rep.Checkpoints, rep.CheckpointSize
		res.Root = hex.EncodeToString(rep.Root[:])
		res.Signatures, res.Anchors, res.AnchorsUnchecked = rep.Signatures, rep.Anchors, rep.AnchorsUnchecked
		for _, r := range rep.Rotations {
			res.Rotations = append(res.Rotations, rotationJSON{Entry: r.Entry, From: r.From, To: r.To, CheckpointSize: r.CheckpointSize})
		}
		for _, r := range rep.Revoked {
			res.RevokedKeys = append(res.RevokedKeys, revokedJSON{Name: r.Name, KeyID: r.KeyID, RevokedAt: r.RevokedAt, Entries: r.Entries, LastReceivedAt: r.LastReceivedAt})
		}
	}
	return writeIndented(w, res)
}

// packResult is the answer of pack and verify --pack in -o json.
type packResult struct {
	OK         bool     `json:"ok"`
	Error      string   `json:"error,omitempty"`
	Change     string   `json:"change,omitempty"`
	Records    int      `json:"records"`
	TreeSize   uint64   `json:"treeSize"`
	Root       string   `json:"root,omitempty"`
	Signatures int      `json:"signaturesVerified"`
	Trust      bool     `json:"carriesTrust"` // false: a tenant's pack, signatures not checked
	Kinds      []string `json:"kinds,omitempty"`
	Out        string   `json:"out,omitempty"`
}

func newPackResult(rep *audit.PackReport, trust bool, err error) packResult {
	res := packResult{OK: err == nil, Trust: trust}
	if err != nil {
		res.Error = err.Error()
	}
	if rep != nil {
		res.Change, res.Records, res.TreeSize, res.Signatures = rep.Change, rep.Records, rep.TreeSize, rep.Signatures
		res.Root = hex.EncodeToString(rep.Root[:])
		for _, k := range rep.Kinds {
			res.Kinds = append(res.Kinds, string(k))
		}
	}
	return res
}
