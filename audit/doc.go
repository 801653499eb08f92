// Package audit checks Evident's log offline, trusting nothing but the
// pinned log key: a whole log (every checkpoint's signature by the key the
// chain of keys puts in force, the hash chain, the Merkle tree, every
// record's signature under the trust configuration recorded before it,
// revoked keys, anchors in Rekor), the export format that carries a log to
// an auditor, evidence packs (one change's entries with their inclusion
// proofs), and the proofs of log key rotations. It is pure: sources are
// interfaces, so the same checks run on a server's store, an export file
// or a pack fetched from an untrusted server.
package audit
