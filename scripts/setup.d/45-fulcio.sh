# Fulcio, the certificate authority of keyless signing: the runner's keyless
# tests start it on 127.0.0.1 with an ephemeral CA and an OIDC issuer the
# test serves, next to the Rekor of 40-rekor.sh. Pinned to the newest
# version the Go module proxy serves (it builds with our Go in about a
# minute once the modules are downloaded).
# Go 1.26: its go.mod asks for 1.26, and its gRPC and x/net were released against it.
build_go=go1.26.8
install_go_tool fulcio github.com/sigstore/fulcio v1.8.8
