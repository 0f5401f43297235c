# API Get Away images. Without a target, docker build makes the last stage, "runtime":
#   docker build --build-arg VERSION=1.0.0 -t getaway .
# The dev stack (go run ./bench/devstack) for docker-compose's "demo" profile:
#   docker build --target devstack -t getaway-devstack .
# .ci/check-compose checks this file in CI (no Docker engine there): every COPY
# source exists and HEALTHCHECK runs getaway -healthcheck.

# build: the gateway as a static binary (no cgo), version stamped in.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/getaway .

# devstack: the dev stack of the README's "run" command, for a local demo only.
# It starts the test OpenID provider and the echo backend in its own process
# and builds and runs the gateway with go build at start-up, so it needs the Go
# toolchain and this module's source: it is built on the build stage (a large
# image, never the one to deploy). Everything it starts listens on 127.0.0.1
# only (the provider on a random port): docker-compose.yml runs it with host
# networking. Built once here so that start-up takes seconds.
FROM build AS devstack
RUN useradd --create-home --uid 10001 demo
USER demo
# The source is root's: no VCS stamping (git would refuse the repository), and
# the build cache in the user's home.
ENV GOFLAGS=-buildvcs=false GOCACHE=/home/demo/.cache/go-build
RUN go build -o /home/demo/devstack ./bench/devstack && go build -o /dev/null .
# No EXPOSE: it listens on the container's loopback, which no port mapping reaches.
ENTRYPOINT ["/home/demo/devstack"]
CMD ["-port", "8080"]

# runtime: the image to deploy. No shell, no package manager, not root.
FROM gcr.io/distroless/static-debian12:nonroot AS runtime
WORKDIR /app
COPY --from=build /out/getaway /app/getaway
COPY config.yml /app/config.yml
USER nonroot:nonroot
ENV PORT=8080 CONFIG_PATH=/app/config.yml
EXPOSE 8080
# getaway -healthcheck asks the gateway's own /healthz on PORT (no curl needed).
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 CMD ["/app/getaway", "-healthcheck"]
ENTRYPOINT ["/app/getaway"]
