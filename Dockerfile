# syntax=docker/dockerfile:1
#
#   docker build -t jetway:0.1.0 .
#   docker run --rm -p 8080:8080 -e JETWAY_JWT_SECRET=... jetway:0.1.0 --nats-url nats://nats:4222
#
# Two stages. The builder compiles the release binary with the Rust toolchain. The runtime is
# distroless "cc" (glibc, libgcc, CA certificates and nothing else: no shell, no package
# manager, no curl), the same Debian release as the builder so that the binary's glibc matches,
# and runs as the unprivileged user 65532. The health check is the binary itself:
# `jetway healthcheck` GETs /healthz on the port of JETWAY_LISTEN.
#
# Every flag can also be given as a JETWAY_* environment variable (docs/configuration.md);
# docs/deploy.md has the production picture. tests/it/deploy.rs checks this file without a
# container engine: hadolint, the runtime stage's user, port, environment and health check
# against the binary, and that the binary needs no library the runtime image lacks.

# --- build ------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binary is copied out
# because the target dir is not part of the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p jetway \
    && install -m 0755 target/release/jetway /usr/local/bin/jetway

# --- runtime ----------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /usr/local/bin/jetway /usr/local/bin/jetway
USER 65532:65532
# Inside a container the listener must not be loopback-only.
ENV JETWAY_LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/jetway", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/jetway"]
