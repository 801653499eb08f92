# A real Kubernetes API server and the etcd behind it, for the GitOps
# watcher tests (Argo CD and Flux objects, RBAC refusals, closed watches) and
# the writer-lease failover test (two writer processes electing a leader
# through a Lease). The tests start both on 127.0.0.1 in a temporary directory.
#
# Release downloads are unreachable, so kube-apiserver is built from the
# k8s.io/kubernetes module. That module's go.mod replaces every k8s.io/*
# library with a ./staging directory the published module does not contain;
# in a writable copy those replaces are dropped and the published libraries
# of the same release required instead (about seven minutes on two cores).
kubernetes_version=v1.37.2
kubernetes_libraries=v0.37.2
# etcd's server module cannot be `go install`ed (its go.mod has replace
# directives); its embed package runs etcd inside the small program below.
etcd_version=v3.6.13
# Go 1.26: the release Kubernetes 1.37 and etcd 3.6 were released against.
build_go=go1.26.8

if ! installed kube-apiserver; then
  echo "setup: building kube-apiserver $kubernetes_version with $(go_release) (several minutes cold)" >&2
  kubernetes_dir=$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$kubernetes_version" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -n "$kubernetes_dir" ]] || { echo "setup: no module directory for k8s.io/kubernetes" >&2; exit 1; }
  work=$(mktemp -d)
  cp -r "$kubernetes_dir/." "$work/kubernetes"
  chmod -R u+w "$work/kubernetes"
  (
    cd "$work/kubernetes"
    # The repository's go.work names the staging directories too.
    export GOWORK=off
    edits=()
    for library in $(sed -n 's/^[[:space:]]*\(k8s\.io\/[^ ]*\) => \.\/staging\/.*/\1/p' go.mod); do
      edits+=("-dropreplace=$library" "-require=$library@$kubernetes_libraries")
    done
    ((${#edits[@]})) || { echo "setup: no staging replaces in k8s.io/kubernetes's go.mod" >&2; exit 1; }
    go mod edit "${edits[@]}"
    GOTOOLCHAIN=$build_go GOFLAGS=-mod=mod go build -trimpath \
      -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$kubernetes_version" \
      -o "$bin/kube-apiserver" ./cmd/kube-apiserver
  ) >&2
  rm -rf "$work"
  mark_installed kube-apiserver
fi

if ! installed etcd; then
  echo "setup: building etcd $etcd_version with $(go_release)" >&2
  work=$(mktemp -d)
  mkdir -p "$work/etcd"
  cat >"$work/etcd/main.go" <<'EOF'
// Command etcd runs one etcd member for tests: clients on --listen-client,
// peers on --listen-peer, data in --data-dir, until SIGINT or SIGTERM.
package main

import (
	"flag"
	"log"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"go.etcd.io/etcd/server/v3/embed"
)

func main() {
	dir := flag.String("data-dir", "", "data directory")
	client := flag.String("listen-client", "http://127.0.0.1:2379", "client URL")
	peer := flag.String("listen-peer", "http://127.0.0.1:2380", "peer URL")
	flag.Parse()
	clientURL, err := url.Parse(*client)
	if err != nil {
		log.Fatalf("etcd: --listen-client: %v", err)
	}
	peerURL, err := url.Parse(*peer)
	if err != nil {
		log.Fatalf("etcd: --listen-peer: %v", err)
	}
	cfg := embed.NewConfig()
	cfg.Dir = *dir
	cfg.LogLevel = "error"
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		log.Fatalf("etcd: %v", err)
	}
	defer e.Close()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-e.Server.ReadyNotify():
		log.Printf("etcd: ready on %s", clientURL)
	case err := <-e.Err():
		log.Fatalf("etcd: %v", err)
	}
	select {
	case <-stop:
	case err := <-e.Err():
		log.Fatalf("etcd: %v", err)
	}
}
EOF
  (
    cd "$work/etcd"
    GOTOOLCHAIN=$build_go go mod init evident.dev/tools/etcd >/dev/null 2>&1
    GOTOOLCHAIN=$build_go GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@$etcd_version"
    GOTOOLCHAIN=$build_go GOFLAGS=-mod=mod go mod tidy
    GOTOOLCHAIN=$build_go GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .
  ) >&2
  rm -rf "$work"
  mark_installed etcd
fi
