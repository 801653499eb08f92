# helm: go test ./deploy/ lints the chart and renders the plain Kubernetes
# manifests from it. Built from source (about ten minutes on two cores, once).
install_go_tool helm helm.sh/helm/v3/cmd/helm v3.19.0
