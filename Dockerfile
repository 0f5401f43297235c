# Build: docker build --build-arg VERSION=1.0.0 -t getaway .
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/getaway .

FROM gcr.io/distroless/static-debian12:nonroot
WORKDIR /app
COPY --from=build /out/getaway /app/getaway
COPY config.yml /app/config.yml
USER nonroot:nonroot
ENV PORT=8080 CONFIG_PATH=/app/config.yml
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 CMD ["/app/getaway", "-healthcheck"]
ENTRYPOINT ["/app/getaway"]
