# syntax=docker/dockerfile:1
#
#   docker build -t jetway .
#   docker run --rm -p 8080:8080 jetway --nats-url nats://nats.example.internal:4222
#
# Every flag can also be given as a JETWAY_* environment variable (docs/configuration.md).

# --- build ------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binary is copied out
# because the target dir is not part of the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -m 0755 target/release/jetway /usr/local/bin/jetway

# --- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin jetway
COPY --from=builder /usr/local/bin/jetway /usr/local/bin/jetway
USER jetway
# Inside a container the listener must not be loopback-only.
ENV JETWAY_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/jetway"]
