# helm: go test ./deploy/ lints the chart and renders the plain Kubernetes
# manifests from it. Built from source (about ten minutes on two cores, once).
# Go 1.26: the newest release its go.mod (go 1.24) and its gRPC and x/net were released against.
build_go=go1.26.8
install_go_tool helm helm.sh/helm/v3/cmd/helm v3.19.0
