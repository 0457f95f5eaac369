# syntax=docker/dockerfile:1.10
#
# Tandem container image.
#
#   docker build -t ghcr.io/tandem-dev/tandem:0.1.0 .
#
# Stage 1 builds a fully static release binary (musl, crt-static) with the
# dependency set pinned by Cargo.lock (`--locked`), optimised by a profile of
# the webhook under a training load (bench/pgo.sh: an instrumented build serves
# the bench bodies and the captured admission requests on loopback, then the
# real build uses the profile; about 30% less CPU per small admission).
# Stage 1 also writes a CycloneDX SBOM of the binary's dependency set
# (release/sbom.sh). Stage 2 copies those two files into a distroless "static"
# image: no shell, no package manager, no libc, CA certificates and /etc/passwd
# entries for the non-root user only. The SBOM is at
# /usr/share/doc/tandem/sbom.cdx.json; the label dev.tandem.sbom says where.
#
# Both base images are pinned to explicit versions. For fully reproducible
# builds, pin them further by digest (`image:tag@sha256:...`).

############################
# Builder
############################
FROM rust:1.95.0-slim-bookworm AS builder

# ring (the crypto provider used by rustls and kube) and mimalloc (the global
# allocator) compile C and assembly: musl-gcc comes from musl-tools, gcc/libc6-dev
# are already in the slim image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*

# The repository pins its toolchain in rust-toolchain.toml (1.95.0 plus
# rustfmt/clippy for development). Select the image's toolchain explicitly so
# the build does not download components it does not need.
ENV RUSTUP_TOOLCHAIN=1.95.0 \
    CARGO_TERM_COLOR=never \
    CARGO_NET_RETRY=5 \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CC_x86_64_unknown_linux_musl=musl-gcc

# llvm-tools: the llvm-profdata that merges the training profile, from the
# same LLVM as the compiler.
RUN rustup target add x86_64-unknown-linux-musl \
 && rustup component add llvm-tools

WORKDIR /src
COPY . .

# Cache mounts keep the registry and the target directory between builds
# (BuildKit); the binary is copied out of the cache into the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    --mount=type=cache,target=/src/bench/target \
    bash bench/pgo.sh --target x86_64-unknown-linux-musl \
 && mkdir -p /out \
 && cp target/pgo/tandem /out/tandem

# What the binary is made of, from the same Cargo.lock (release/sbom.sh).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    cargo install --locked cargo-cyclonedx --version 0.5.9 \
 && bash release/sbom.sh --out /out/sbom.cdx.json --target x86_64-unknown-linux-musl

############################
# Runtime
############################
FROM gcr.io/distroless/static-debian12:nonroot

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="tandem" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook that injects sidecar, ambassador, adapter and init containers" \
      org.opencontainers.image.source="https://github.com/tandem-dev/tandem" \
      org.opencontainers.image.url="https://github.com/tandem-dev/tandem" \
      org.opencontainers.image.documentation="https://github.com/tandem-dev/tandem/blob/main/docs/install.md" \
      org.opencontainers.image.vendor="tandem-dev" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot" \
      dev.tandem.sbom="/usr/share/doc/tandem/sbom.cdx.json" \
      dev.tandem.sbom.format="CycloneDX 1.5 JSON"

COPY --from=builder --chown=0:0 --chmod=0444 /out/sbom.cdx.json /usr/share/doc/tandem/sbom.cdx.json
COPY --from=builder --chown=0:0 --chmod=0555 /out/tandem /tandem

# 65532 is "nonroot" in distroless; numeric so runAsNonRoot can verify it.
USER 65532:65532

# 8443: HTTPS admission webhook (/mutate, /validate)
# 9090: plain-HTTP admin port (/livez, /readyz, /metrics)
EXPOSE 8443 9090

ENTRYPOINT ["/tandem"]
CMD ["serve"]
