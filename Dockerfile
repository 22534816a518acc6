# Herald: a static binary on distroless, running as a non-root user.
#
#   docker build --build-arg VERSION=v1.2.3 -t herald .
#   docker run -p 8080:8080 -v herald-data:/data herald -engine 'redis://redis:6379/0'
#
# Arguments after the image name are flags of `herald serve` (README), and so
# are HERALD_* environment variables. cmd/herald/dockerfile_test.go runs this
# file's `go install` line itself, since the image is not built in CI.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# The binary lands in $GOBIN.
ENV GOBIN=/out
RUN CGO_ENABLED=0 go install -trimpath -ldflags "-s -w -X main.version=${VERSION}" ./cmd/herald
# The data dir (generated publish key, node id, the local engine's store),
# owned by distroless's nonroot user, so that a new volume inherits it.
RUN mkdir -p /data && chown 65532:65532 /data

# static-debian12 holds CA certificates (for rediss://, JWKS URLs), tzdata and
# /etc/passwd with the nonroot user (65532); no shell, no libc.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/herald /usr/local/bin/herald
COPY --from=build --chown=65532:65532 /data /data
USER 65532:65532
ENV HERALD_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080
# No curl here: `herald probe` GETs http://127.0.0.1:8080/readyz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["herald", "probe"]
ENTRYPOINT ["herald", "serve", "-addr", ":8080"]
