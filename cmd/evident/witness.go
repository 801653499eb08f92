package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"evident.dev/evident/witness"
)

// witnessFlags are the witness policy flags of proof, verify and pack
// verification: --witness (repeated) and --witness-quorum.
type witnessFlags struct {
	keys   keyList
	quorum *int
}

// keyList is a repeated flag of note verifier keys, each given inline or
// as a file holding it.
type keyList []string

func (k *keyList) String() string { return strings.Join(*k, ",") }

func (k *keyList) Set(v string) error {
	*k = append(*k, keyOrFile(v))
	return nil
}

func addWitnessFlags(fs *flag.FlagSet) *witnessFlags {
	w := &witnessFlags{}
	fs.Var(&w.keys, "witness", "a witness's cosignature verifier key (name+hash+base64), or a file holding it; repeat for several. With it, the checkpoint must carry the witnesses' cosignatures")
	w.quorum = fs.Int("witness-quorum", 0, "how many of the --witness keys must have cosigned (default: all)")
	return w
}

// policy is the witness policy the flags give, or nil without --witness.
func (w *witnessFlags) policy() (*witness.Policy, error) {
	if len(w.keys) == 0 {
		if *w.quorum != 0 {
			return nil, usageErrorf("--witness-quorum needs --witness keys")
		}
		return nil, nil
	}
	p, err := witness.NewPolicy(w.keys, *w.quorum)
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	return p, nil
}

// readWitnessed reads a cosigned checkpoint saved from the server (GET
// /v1/checkpoint/witnessed or tlog-tiles /checkpoint).
func readWitnessed(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("the witnessed checkpoint: %w", err)
	}
	return b, nil
}
