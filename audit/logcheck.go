package audit

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/sync/errgroup"

	ckpt "evident.dev/evident/checkpoint"
	"evident.dev/evident/evidence"
	"evident.dev/evident/verifier"
	"evident.dev/evident/witness"
)

// LogSource is a log to check: a data directory's snapshot or an export file.
type LogSource interface {
	// Checkpoints returns every signed checkpoint note, by increasing size.
	Checkpoints(ctx context.Context) ([][]byte, error)
	// Leaves calls fn with every leaf in index order; leaf is valid only
	// during the call.
	Leaves(ctx context.Context, fn func(index uint64, leaf []byte) error) error
}

// CheckOptions says what to check and against which log identity.
type CheckOptions struct {
	// Origin is the log's origin; LogKey its note verifier key
	// ("name+hash+base64key"). An auditor pins both out of band.
	Origin string
	LogKey string
	// Signatures re-verifies every record's signature and statement with the
	// trust configuration in force (from the genesis entry), and calls
	// OnRecord for every entry. Without it only the chain, the tree and the
	// checkpoints are checked.
	Signatures bool
	// OnRecord, if set, is called (concurrently) for every verified record.
	OnRecord func(index uint64, v *verifier.Verified)
	// OnEntry, if set, is called like OnRecord with the parsed entry too,
	// for what the log added to the record (findings, policy decision).
	OnEntry func(index uint64, e *evidence.Entry, v *verifier.Verified)
	// KeepLeafHashes keeps every RFC 6962 leaf hash in the report.
	KeepLeafHashes bool
	// Workers verifying signatures in parallel; 0 means GOMAXPROCS.
	Workers int
	// RekorKeys are the public keys of the Rekor logs anchors may name
	// (with Signatures). Without them an anchor's Rekor proof and signed
	// entry timestamp are not checked, only that it anchors a checkpoint
	// the log signed, with the log's key.
	RekorKeys []crypto.PublicKey
	// Witness, if set, is the witness policy the log must meet: Witnessed,
	// a checkpoint the witnesses cosigned, must carry the cosignatures it
	// asks for, be signed by the log key in force for its size, and commit
	// to the very entries the log holds. A log that shows the witnesses
	// one history and the auditor another fails here.
	Witness   *witness.Policy
	Witnessed []byte
}

// CheckReport is what a successful check established.
type CheckReport struct {
	Size        uint64
	Checkpoints int
	// CheckpointSize and Root are those of the latest checkpoint.
	CheckpointSize uint64
	Root           [32]byte
	Signatures     uint64 // records whose signature was re-verified
	LeafHashes     [][32]byte

	// Anchors is the number of checkpoint.anchored records whose Rekor
	// proof and signatures verified; AnchorsUnchecked those whose Rekor
	// side was not checked for want of RekorKeys.
	Anchors, AnchorsUnchecked int

	// Rotations lists the log key rotations the log holds, in order.
	Rotations []LogKeyRotation

	// Revoked lists every key the trust in force at the end of the log
	// revokes, with the entries it signed. They are valid: each was received
	// before the revocation time (an entry received at or after it fails the
	// check).
	Revoked []RevokedKeyUse

	// WitnessedSize is the size of the witnessed checkpoint (with Witness),
	// and Witnesses the witnesses whose cosignatures on it verified.
	WitnessedSize uint64
	Witnesses     []string
}

// LogKeyRotation is a change of log key the check accepted: announced by the
// trust.updated entry Entry, signed by the key before it, and taken up by
// the checkpoint of CheckpointSize entries, signed by both keys.
type LogKeyRotation struct {
	Entry          uint64
	From, To       string // note verifier keys
	CheckpointSize uint64
}

// RevokedKeyUse is a revoked key and what the log holds signed by it.
type RevokedKeyUse struct {
	verifier.Revocation
	Entries uint64 // entries signed by the key, all received before RevokedAt
	// LastReceivedAt is when the latest of them was received (zero if none).
	LastReceivedAt time.Time
}

// BadEntryError names the first entry that fails a check.
type BadEntryError struct {
	Index uint64
	Err   error
}

func (e *BadEntryError) Error() string { return fmt.Sprintf("entry %d: %v", e.Index, e.Err) }
func (e *BadEntryError) Unwrap() error { return e.Err }

// LogPublicKey parses a note verifier key of an ed25519 log key.
func LogPublicKey(vkey string) (ed25519.PublicKey, note.Verifier, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, nil, fmt.Errorf("log key %q: %w", vkey, err)
	}
	parts := strings.SplitN(vkey, "+", 3) // name+hash+key; only the key's base64 may hold '+'
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != 1 {
		return nil, nil, fmt.Errorf("log key %q: not an ed25519 note key", vkey)
	}
	return ed25519.PublicKey(raw[1:]), v, nil
}

type checkpoint struct {
	size uint64
	root [32]byte
	note []byte // signed note; its signatures are checked in log order
	// witnessed marks the witnessed checkpoint (CheckOptions.Witnessed).
	witnessed bool
}

// withWitnessed checks the witnessed checkpoint's cosignatures against the
// policy and adds it to the checkpoints the walk checks.
func withWitnessed(cps []checkpoint, opts CheckOptions, rep *CheckReport) ([]checkpoint, error) {
	if len(opts.Witnessed) == 0 {
		return nil, fmt.Errorf("%w: a witness policy was given but no witnessed checkpoint", witness.ErrNotWitnessed)
	}
	names, err := opts.Witness.Check(opts.Witnessed)
	if err != nil {
		return nil, fmt.Errorf("the witnessed checkpoint: %w", err)
	}
	cp, err := openNote(opts.Witnessed, opts.Origin)
	if err != nil {
		return nil, fmt.Errorf("the witnessed checkpoint: %w", err)
	}
	cp.witnessed = true
	rep.WitnessedSize, rep.Witnesses = cp.size, names
	cps = append(cps, cp)
	sort.SliceStable(cps, func(i, j int) bool { return cps[i].size < cps[j].size })
	return cps, nil
}

// chainKey is one key of the chain of log keys.
type chainKey struct {
	vkey string
	pub  ed25519.PublicKey
	note note.Verifier
	at   uint64 // the entry that announced it (0: the genesis)
}

// keyChain follows the log key through rotations, in log order. A key is
// accepted only through a trust.updated entry signed by the key in force
// that names it; which keys must sign each checkpoint is the chain-of-keys
// rule (ckpt.Rotations.Signing), so the audit and the ledger that signed
// agree by construction.
type keyChain struct {
	keys      []chainKey // keys[0]: the key the chain starts from
	rotations ckpt.Rotations
	prev      uint64 // the size of the last checkpoint checked
	accepted  []LogKeyRotation
	// config is the trust configuration last recorded, which a rotation
	// entry names by its digest only.
	config []byte
}

func newKeyChain(start chainKey) *keyChain {
	return &keyChain{keys: []chainKey{start}}
}

// restart makes start the key in force, forgetting the rotations before it
// (an evidence pack checks trust entries one by one, each under the key its
// proven rotations lead to), but not the trust configuration.
func (k *keyChain) restart(start chainKey) {
	k.keys, k.rotations, k.prev = []chainKey{start}, nil, 0
}

// announce takes the new key a trust.updated entry at index names.
func (k *keyChain) announce(index uint64, vkey, origin string) error {
	if n := len(k.rotations); n > 0 && k.rotations[n-1] >= k.prev {
		return fmt.Errorf("rotates the log key again before a checkpoint signed by both keys took up the rotation of entry %d", k.rotations[n-1])
	}
	pub, v, err := LogPublicKey(vkey)
	if err != nil {
		return fmt.Errorf("log key rotation: %w", err)
	}
	if v.Name() != origin {
		return fmt.Errorf("log key rotation: the new key is named %q but the origin is %q", v.Name(), origin)
	}
	k.keys = append(k.keys, chainKey{vkey: vkey, pub: pub, note: v, at: index})
	k.rotations = append(k.rotations, index)
	return nil
}

// checkpoint checks the signatures of the checkpoint of cp.size entries,
// all of which have been read, against the keys the rule requires.
func (k *keyChain) checkpoint(cp checkpoint) error {
	idx, err := k.rotations.Signing(k.prev, cp.size)
	if err != nil {
		return err
	}
	in := k.keys[idx[len(idx)-1]]
	if len(idx) == 2 {
		old := k.keys[idx[0]]
		if err := signedBy(cp.note, old.note); err != nil {
			return fmt.Errorf("the checkpoint of %d entries, the first after the log key rotation of entry %d, is not signed by the key it replaces: %w", cp.size, in.at, err)
		}
		if err := signedBy(cp.note, in.note); err != nil {
			return fmt.Errorf("the checkpoint of %d entries, the first after the log key rotation of entry %d, is not signed by the new key %s: %w", cp.size, in.at, in.vkey, err)
		}
		k.accepted = append(k.accepted, LogKeyRotation{Entry: in.at, From: old.vkey, To: in.vkey, CheckpointSize: cp.size})
	} else if err := signedBy(cp.note, in.note); err != nil {
		since := "the genesis"
		if in.at > 0 {
			since = fmt.Sprintf("entry %d", in.at)
		}
		return fmt.Errorf("the checkpoint of %d entries is not signed by the log key in force since %s (%s): %w", cp.size, since, in.vkey, err)
	}
	k.prev = cp.size
	return nil
}

// signer is the key that must sign the log's own records from here on: the
// key announced last.
func (k *keyChain) signer() ed25519.PublicKey {
	return k.keys[len(k.keys)-1].pub
}

// signedBy reports whether a checkpoint carries a valid signature by v.
func signedBy(signed []byte, v note.Verifier) error {
	_, err := ckpt.Open(signed, v.Name(), v)
	var unverified *note.UnverifiedNoteError
	if errors.As(err, &unverified) {
		return fmt.Errorf("no signature by %s", v.Name())
	}
	return err
}

// CheckLog verifies a whole log offline: every checkpoint's signature, the
// hash chain, the Merkle tree against every checkpoint, and (with
// Signatures) every record's signature, statement and signer scope. The first
// bad entry is reported as a *BadEntryError.
func CheckLog(ctx context.Context, src LogSource, opts CheckOptions) (*CheckReport, error) {
	logPub, noteVerifier, err := LogPublicKey(opts.LogKey)
	if err != nil {
		return nil, err
	}
	if noteVerifier.Name() != opts.Origin {
		return nil, fmt.Errorf("log key is named %q but the origin is %q", noteVerifier.Name(), opts.Origin)
	}
	cps, err := openCheckpoints(ctx, src, opts.Origin)
	if err != nil {
		return nil, err
	}
	keys := newKeyChain(chainKey{vkey: opts.LogKey, pub: logPub, note: noteVerifier})
	rep := &CheckReport{Checkpoints: len(cps)}
	if n := len(cps); n > 0 {
		rep.CheckpointSize, rep.Root = cps[n-1].size, cps[n-1].root
	}
	if opts.Witness != nil {
		// Checked during the walk like the log's own checkpoints: its log
		// signature, and its root against the tree of the entries.
		if cps, err = withWitnessed(cps, opts, rep); err != nil {
			return nil, err
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	sigs := &signatureCheck{opts: opts}
	jobs := make(chan sigJob, 1024)
	if opts.Signatures {
		workers := opts.Workers
		if workers <= 0 {
			workers = runtime.GOMAXPROCS(0)
		}
		for range workers {
			g.Go(func() error { return sigs.work(gctx, jobs) })
		}
	}
	anchors := newAnchorCheck(opts, logPub, cps)
	g.Go(func() error {
		defer close(jobs)
		return checkChain(gctx, src, opts, cps, keys, rep, sigs, anchors, jobs)
	})
	if err := g.Wait(); err != nil {
		if bad := sigs.firstBad(); bad != nil && !isBadBefore(err, bad.Index) {
			return nil, bad
		}
		return nil, err
	}
	if bad := sigs.firstBad(); bad != nil {
		return nil, bad
	}
	rep.Signatures = sigs.count
	rep.Rotations = keys.accepted
	if sigs.final != nil {
		for _, r := range sigs.final.Revocations() {
			u := sigs.uses[r.KeyID]
			rep.Revoked = append(rep.Revoked, RevokedKeyUse{Revocation: r, Entries: u.n, LastReceivedAt: u.last})
		}
	}
	rep.Anchors, rep.AnchorsUnchecked = anchors.verified, anchors.unchecked
	return rep, nil
}

func isBadBefore(err error, index uint64) bool {
	var bad *BadEntryError
	return errors.As(err, &bad) && bad.Index < index
}

// openCheckpoints parses every checkpoint; which keys must sign one depends
// on the entries it covers, so signatures are checked during the walk.
func openCheckpoints(ctx context.Context, src LogSource, origin string) ([]checkpoint, error) {
	notes, err := src.Checkpoints(ctx)
	if err != nil {
		return nil, fmt.Errorf("read checkpoints: %w", err)
	}
	cps := make([]checkpoint, 0, len(notes))
	for i, n := range notes {
		cp, err := openNote(n, origin)
		if err != nil {
			return nil, fmt.Errorf("checkpoint %d of %d: %w", i+1, len(notes), err)
		}
		cps = append(cps, cp)
	}
	sort.Slice(cps, func(i, j int) bool { return cps[i].size < cps[j].size })
	return cps, nil
}

func openNote(signed []byte, origin string) (checkpoint, error) {
	// Only the form is checked here; signatures depend on the entries the
	// checkpoint covers and are checked during the walk.
	cp, err := ckpt.Parse(signed, origin)
	if err != nil {
		return checkpoint{}, err
	}
	return checkpoint{size: cp.Size, root: cp.Root, note: signed}, nil
}

// checkChain reads the leaves in order: chain, tree and checkpoints, and hands
// each leaf to the signature workers.
//
// A broken link between entries i-1 and i means one of the two was altered:
// entry i-1 (its hash changed) or entry i (its previous-hash changed). Which
// one is decided by the next link: if entry i+1 vouches for entry i, entry
// i-1 is the bad one. Until then the judgement waits, and any other finding
// about entry i is dropped in its favour.
func checkChain(ctx context.Context, src LogSource, opts CheckOptions, cps []checkpoint, keys *keyChain, rep *CheckReport, sigs *signatureCheck, anchors *anchorCheck, jobs chan<- sigJob) error {
	var prev [32]byte
	rf := compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}
	tree := rf.NewEmptyRange(0)
	next := 0
	for next < len(cps) && cps[next].size == 0 {
		if !bytes.Equal(cps[next].root[:], rfc6962.DefaultHasher.EmptyRoot()) {
			return errors.New("a signed checkpoint of the empty log has a root that is not the empty tree's")
		}
		if err := keys.checkpoint(cps[next]); err != nil {
			return err
		}
		next++
	}
	var trust *verifier.Verifier
	var broken *BadEntryError // a broken link at broken.Index, judged at the next entry
	fail := func(err error) error {
		if broken != nil {
			return broken
		}
		return err
	}
	err := src.Leaves(ctx, func(index uint64, leaf []byte) error {
		if index != rep.Size {
			return fail(&BadEntryError{Index: rep.Size, Err: errors.New("missing")})
		}
		p, err := evidence.ParseLeafPrefix(leaf)
		if err != nil {
			return fail(&BadEntryError{Index: index, Err: err})
		}
		switch {
		case p.Origin != opts.Origin:
			return fail(&BadEntryError{Index: index, Err: fmt.Errorf("belongs to log %q, not %q", p.Origin, opts.Origin)})
		case p.Index != index:
			return fail(&BadEntryError{Index: index, Err: fmt.Errorf("leaf says index %d", p.Index)})
		case broken != nil && p.PrevHash == prev:
			// This entry vouches for the one after the broken link, so the
			// one before the link was altered.
			altered := &BadEntryError{Index: broken.Index - 1, Err: fmt.Errorf("altered: its hash no longer matches the previous-hash entry %d records", broken.Index)}
			broken = nil
			return altered
		case broken != nil:
			return broken
		case p.PrevHash != prev && index == 0:
			return &BadEntryError{Index: index, Err: errors.New("the first entry's previous-hash must be zero")}
		case p.PrevHash != prev:
			broken = &BadEntryError{Index: index, Err: errors.New("previous-hash does not match the entry before it: the chain is broken")}
		}
		prev = sha256.Sum256(leaf)
		leafHash := rfc6962.DefaultHasher.HashLeaf(leaf)
		if opts.KeepLeafHashes {
			rep.LeafHashes = append(rep.LeafHashes, [32]byte(leafHash))
		}
		if err := tree.Append(leafHash, nil); err != nil {
			return fail(err)
		}
		rep.Size++
		// The log's own records first: a rotation entry changes which keys
		// must sign the checkpoints covering it.
		logWritten := index == 0 || bytes.HasPrefix(leafLine(leaf, 5), []byte(`{"signer":{"name":"`+verifier.LogSigner+`"`))
		switch {
		case logWritten && opts.Signatures:
			// They change the trust for what follows, so they are checked
			// here, in order, not by the workers.
			established, err := logRecord(leaf, index, opts, keys, anchors)
			if err != nil {
				return fail(&BadEntryError{Index: index, Err: err})
			}
			if established != nil {
				trust = established
				sigs.final = established
			}
			sigs.mu.Lock()
			sigs.count++
			sigs.mu.Unlock()
		case logWritten:
			// Even without signatures the chain of log keys is followed.
			if err := logKeyRecord(leaf, index, opts.Origin, keys); err != nil {
				return fail(&BadEntryError{Index: index, Err: err})
			}
		}
		for next < len(cps) && cps[next].size == rep.Size {
			root, err := tree.GetRootHash(nil)
			if err != nil {
				return fail(err)
			}
			// The signature first: a checkpoint the log did not sign says
			// nothing about its entries.
			if err := keys.checkpoint(cps[next]); err != nil {
				return err
			}
			if broken == nil && !bytes.Equal(root, cps[next].root[:]) {
				if cps[next].witnessed {
					return &BadEntryError{Index: index, Err: fmt.Errorf("%w: the tree of the first %d entries does not match the checkpoint the witnesses cosigned: they were shown another history of this log", witness.ErrNotWitnessed, rep.Size)}
				}
				return &BadEntryError{Index: index, Err: fmt.Errorf("the tree of the first %d entries does not match its signed checkpoint", rep.Size)}
			}
			next++
		}
		if !opts.Signatures || logWritten {
			return nil
		}
		select {
		case jobs <- sigJob{index: index, leaf: bytes.Clone(leaf), trust: trust}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if broken != nil {
		// The last link is broken (or reading stopped): nothing after it
		// can tell which side was altered.
		return broken
	}
	if err != nil {
		return err
	}
	if next < len(cps) {
		return fmt.Errorf("a signed checkpoint commits to %d entries but the log holds only %d: entries are missing", cps[next].size, rep.Size)
	}
	return nil
}

// leafLine returns line n (0-based) of a leaf, or nil.
func leafLine(leaf []byte, n int) []byte {
	for range n {
		i := bytes.IndexByte(leaf, '\n')
		if i < 0 {
			return nil
		}
		leaf = leaf[i+1:]
	}
	if i := bytes.IndexByte(leaf, '\n'); i >= 0 {
		return leaf[:i]
	}
	return nil
}

// logRecord checks a record the log wrote itself: entry 0 must be the
// bootstrap record, later ones may update the trust configuration. It returns
// the verifier for the trust the record establishes, or nil if unchanged.
func logRecord(leaf []byte, index uint64, opts CheckOptions, keys *keyChain, anchors *anchorCheck) (*verifier.Verifier, error) {
	e, err := evidence.ParseLeaf(leaf)
	if err != nil {
		return nil, err
	}
	logPub := keys.signer()
	logOnly, err := verifier.New(verifier.TrustConfig{}, logPub)
	if err != nil {
		return nil, err
	}
	v, err := logOnly.Verify(e.Envelope)
	if err != nil {
		return nil, fmt.Errorf("log record: %w", err)
	}
	if err := checkMeta(e, v); err != nil {
		return nil, err
	}
	p := v.Statement.Predicate
	var digest string
	var config []byte
	switch {
	case index == 0 && p.Kind == evidence.KindBootstrap:
		b := p.Bootstrap
		if b.LogOrigin != opts.Origin || b.LogKey != opts.LogKey {
			return nil, errors.New("genesis: bootstrap names another log origin or key")
		}
		digest, config = b.TrustDigest, b.Trust
	case index == 0:
		return nil, fmt.Errorf("genesis: the first entry must be a bootstrap record, not %s", p.Kind)
	case p.Kind == evidence.KindBootstrap:
		return nil, errors.New("a second bootstrap record")
	case p.Kind == evidence.KindTrustUpdated && p.Trust.LogKey != "":
		if err := keys.announce(index, p.Trust.LogKey, opts.Origin); err != nil {
			return nil, err
		}
		// The trust in force is unchanged but for the log key it names.
		logPub = keys.signer()
		if keys.config != nil {
			digest, config = p.Trust.Digest, keys.config
		}
	case p.Kind == evidence.KindTrustUpdated && len(p.Trust.Config) > 0:
		digest, config = p.Trust.Digest, p.Trust.Config
	case p.Kind == evidence.KindCheckpointAnchored:
		anchors.logKey = logPub
		if err := anchors.check(index, p.Anchor); err != nil {
			return nil, err
		}
	}
	if opts.OnRecord != nil {
		opts.OnRecord(index, v)
	}
	if opts.OnEntry != nil {
		opts.OnEntry(index, e, v)
	}
	if config == nil {
		return nil, nil
	}
	sum := sha256.Sum256(config)
	if hex.EncodeToString(sum[:]) != digest {
		return nil, errors.New("the trust digest does not match the recorded trust configuration")
	}
	cfg, err := verifier.ParseTrustConfig(config)
	if err != nil {
		return nil, err
	}
	keys.config = config
	return verifier.New(cfg, logPub)
}

// logKeyRecord follows the chain of log keys through one of the log's own
// records when signatures are not otherwise checked: a rotation is accepted
// only from a trust.updated record the key in force signed.
func logKeyRecord(leaf []byte, index uint64, origin string, keys *keyChain) error {
	if index == 0 {
		return nil // the genesis names the pinned key; the full check compares them
	}
	e, err := evidence.ParseLeaf(leaf)
	if err != nil {
		return err
	}
	_, payload, err := verifier.DecodeEnvelope(e.Envelope)
	if err != nil {
		return err
	}
	st, err := evidence.Decode(payload)
	if err != nil {
		return err
	}
	if st.Predicate.Kind != evidence.KindTrustUpdated || st.Predicate.Trust.LogKey == "" {
		return nil
	}
	logOnly, err := verifier.New(verifier.TrustConfig{}, keys.signer())
	if err != nil {
		return err
	}
	if _, err := logOnly.Verify(e.Envelope); err != nil {
		return fmt.Errorf("log key rotation: %w", err)
	}
	return keys.announce(index, st.Predicate.Trust.LogKey, origin)
}

type sigJob struct {
	index uint64
	leaf  []byte
	trust *verifier.Verifier
}

// signatureCheck re-verifies records in parallel and remembers the lowest
// failing index.
type signatureCheck struct {
	opts  CheckOptions
	mu    sync.Mutex // guards bad, count and uses
	bad   *BadEntryError
	count uint64
	// uses counts entries per signing key id, to report what revoked keys
	// signed.
	uses map[string]keyUse
	// final is the trust in force at the end of the log; set by the chain
	// walk before the workers finish.
	final *verifier.Verifier
}

type keyUse struct {
	n    uint64
	last time.Time
}

func (s *signatureCheck) work(ctx context.Context, jobs <-chan sigJob) error {
	var n uint64
	uses := map[string]keyUse{}
	defer func() {
		s.mu.Lock()
		s.count += n
		if s.uses == nil {
			s.uses = map[string]keyUse{}
		}
		for id, u := range uses {
			t := s.uses[id]
			t.n += u.n
			if u.last.After(t.last) {
				t.last = u.last
			}
			s.uses[id] = t
		}
		s.mu.Unlock()
	}()
	for j := range jobs {
		if err := s.check(j, uses); err != nil {
			s.mu.Lock()
			if s.bad == nil || j.index < s.bad.Index {
				s.bad = &BadEntryError{Index: j.index, Err: err}
			}
			s.mu.Unlock()
			continue
		}
		n++
	}
	return ctx.Err()
}

func (s *signatureCheck) check(j sigJob, uses map[string]keyUse) error {
	e, err := evidence.ParseLeaf(j.leaf)
	if err != nil {
		return err
	}
	v, err := j.trust.Verify(e.Envelope)
	if err != nil {
		return fmt.Errorf("record no longer verifies: %w", err)
	}
	if err := verifier.CheckRevocation(v, e.ReceivedAt); err != nil {
		return fmt.Errorf("received at %s: %w", e.ReceivedAt.UTC().Format(time.RFC3339Nano), err)
	}
	u := uses[v.Signer.KeyID]
	u.n++
	if e.ReceivedAt.After(u.last) {
		u.last = e.ReceivedAt
	}
	uses[v.Signer.KeyID] = u
	if err := checkMeta(e, v); err != nil {
		return err
	}
	if s.opts.OnRecord != nil {
		s.opts.OnRecord(j.index, v)
	}
	if s.opts.OnEntry != nil {
		s.opts.OnEntry(j.index, e, v)
	}
	return nil
}

// checkMeta checks the signer and digest the log recorded are the ones the
// record verifies to.
func checkMeta(e *evidence.Entry, v *verifier.Verified) error {
	if e.Meta.Signer != v.Signer {
		return fmt.Errorf("recorded signer %q does not match the verified signer %q", e.Meta.Signer.Name, v.Signer.Name)
	}
	if e.Meta.RecordDigest != hex.EncodeToString(v.Digest[:]) {
		return errors.New("recorded record digest does not match the envelope")
	}
	if o := v.Statement.Predicate.LogOrigin; o != "" && o != e.Origin {
		return fmt.Errorf("the record was signed for log %q: replayed into %q", o, e.Origin)
	}
	return nil
}

func (s *signatureCheck) firstBad() *BadEntryError {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bad
}
