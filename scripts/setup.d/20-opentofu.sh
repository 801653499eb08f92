# OpenTofu, driven by the runner tests through terraform-exec. Release
# download sites are unreachable here, so it is built from its Go module at a
# pinned version. `go install` refuses the module (its go.mod has a replace
# directive), but building inside the downloaded module directory works.
opentofu_version=v1.12.6
# Go 1.26: the golang.org/x/net OpenTofu pins builds its HTTP/2 server only
# for Go releases before 1.27, and its gRPC needs that server.
build_go=go1.26.8
if ! installed tofu; then
  echo "setup: building tofu $opentofu_version with $(go_release) (several minutes cold)" >&2
  opentofu_dir=$(GOFLAGS=-mod=mod go mod download -json "github.com/opentofu/opentofu@$opentofu_version" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -n "$opentofu_dir" ]] || { echo "setup: no module directory for opentofu" >&2; exit 1; }
  (cd "$opentofu_dir" && GOTOOLCHAIN=$build_go GOFLAGS=-mod=mod go build -trimpath \
    -ldflags "-s -w -X github.com/opentofu/opentofu/version.dev=no" \
    -o "$bin/tofu" ./cmd/tofu) >&2
  mark_installed tofu
fi
