# The image the Helm chart runs (deploy/helm/evident): the static binary
# scripts/build.sh makes, on a distroless base, as the non-root user the
# chart's security context names (65532).
#
#   docker build --build-arg VERSION=v0.1.0 -t ghcr.io/evident-dev/evident:v0.1.0 .
FROM golang:1.27.3-bookworm AS build
ARG VERSION=devel
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN scripts/build.sh /out/evident "$VERSION"

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/evident /evident
USER 65532:65532
ENTRYPOINT ["/evident"]
CMD ["serve", "--config", "/etc/evident/config/evident.yaml"]
