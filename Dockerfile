# The one Tributary image: operator, replicator and checkpoint-sync are subcommands of one binary.
# Build: docker build -t ghcr.io/tributary-dev/tributary:0.1.0 .

FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tributary \
    && install -D -m 0755 target/release/tributary /out/tributary

# distroless/cc has glibc, libgcc and CA certificates; OpenSSL comes along for librdkafka's TLS.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/lib/x86_64-linux-gnu/libssl.so.3 /usr/lib/x86_64-linux-gnu/libcrypto.so.3 /usr/lib/x86_64-linux-gnu/
COPY --from=build /out/tributary /usr/local/bin/tributary
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tributary"]
