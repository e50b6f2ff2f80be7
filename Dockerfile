# syntax=docker/dockerfile:1
#
# One static image with the three binaries of validator fencing:
#   /usr/local/bin/fence-coordinator, /usr/local/bin/fence-sidecar,
#   /usr/local/bin/fencectl
# Built with CGO_ENABLED=0 from a golang builder stage onto scratch; runs as
# the unprivileged user 65532 (nonroot) with a read-only root file system.
# The Helm chart (charts/fencing) sets each container's command.
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=0.1.0 -t ghcr.io/validator-fencing/fencing:0.1.0 .
#
# See docs/kubernetes.md for building without network access to Docker Hub.

ARG GO_VERSION=1.27.3

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=go1.27.3
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -ldflags "-s -w" -o /out/ \
      ./coordinator/cmd/fence-coordinator \
      ./coordinator/cmd/fencectl \
      ./sidecar/cmd/fence-sidecar

# The whole root file system of the image: CA certificates (https etcd and
# coordinators), a passwd/group entry for 65532 so tools print a name, and
# /tmp.
RUN mkdir -p /rootfs/etc/ssl/certs /rootfs/tmp /rootfs/var/lib/fencing \
 && cp /etc/ssl/certs/ca-certificates.crt /rootfs/etc/ssl/certs/ \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > /rootfs/etc/passwd \
 && printf 'root:x:0:\nnonroot:x:65532:\n' > /rootfs/etc/group \
 && chmod 1777 /rootfs/tmp \
 && chown 65532:65532 /rootfs/var/lib/fencing

# Offline variant: `docker build --target prebuilt .` copies binaries built on
# the host (see docs/kubernetes.md) into scratch and pulls nothing.
FROM scratch AS prebuilt
COPY bin/linux-amd64/fence-coordinator bin/linux-amd64/fence-sidecar bin/linux-amd64/fencectl /usr/local/bin/
ENV PATH=/usr/local/bin
USER 65532:65532
CMD ["fencectl", "--help"]

FROM scratch
ARG VERSION=dev
LABEL org.opencontainers.image.title="validator fencing" \
      org.opencontainers.image.description="fence-coordinator, fence-sidecar and fencectl: a validator key never signs in two regions at once" \
      org.opencontainers.image.source="https://github.com/validator-fencing/fencing" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /rootfs/ /
COPY --from=build /out/ /usr/local/bin/
ENV PATH=/usr/local/bin
USER 65532:65532
WORKDIR /var/lib/fencing
# No ENTRYPOINT: name the binary, e.g. `docker run IMAGE fencectl status`.
CMD ["fencectl", "--help"]
