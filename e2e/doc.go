// Package e2e holds the process-level tests of Evident: TestMain builds the
// evident binary once, and every test drives real processes (servers killed
// with kill -9 or stopped with SIGSTOP, runners, watchers, restores) over
// real HTTP on 127.0.0.1 against real MinIO, Rekor, Fulcio, OpenTofu and a
// Kubernetes API server. It has no code of its own outside its tests.
package e2e
