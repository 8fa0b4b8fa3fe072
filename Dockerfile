# Signpost container image: `docker build -t signpost:0.1.0 .` (deploy/k8s runs it).
# Needs BuildKit (Docker's default builder since 23.0) for the cache mounts.

FROM rust:1-bookworm AS build
# pingora's build needs cmake. Not pinned (DL3008): a Debian point release removes the old
# version and a pin would break the build; the bookworm tag already fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the build reads (see .dockerignore): the manifest, the lockfile, the sources, the
# bench target Cargo.toml declares, and the example config `signpost init` embeds.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY config/example.yaml ./config/example.yaml
# --locked: exactly the committed Cargo.lock. The caches keep crates and objects between builds;
# the binary is copied out because the target cache is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
 && install -m 0755 target/release/signpost /signpost

# glibc + libgcc (what the binary links), CA roots for upstream TLS, tzdata; no shell.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /signpost /usr/local/bin/signpost
USER 65532:65532
EXPOSE 8080 8443 9090
ENTRYPOINT ["/usr/local/bin/signpost"]
CMD ["run", "--config", "/etc/signpost/signpost.yaml"]
