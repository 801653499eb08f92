# MinIO, the S3-compatible server the artifact store tests start on
# 127.0.0.1 (object lock and COMPLIANCE retention work there). Pinned to the
# version the Go module proxy serves.
# Go 1.26: the newest release its go.mod (go 1.24) and its gRPC and x/net were released against.
build_go=go1.26.8
install_go_tool minio github.com/minio/minio v0.0.0-20260212201848-7aac2a2c5b7c
