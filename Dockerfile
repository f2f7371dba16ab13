# syntax=docker/dockerfile:1
#
# higgs-serve: the RunPod Serverless worker (and HTTP server) for Higgs Audio v2, one static-ish Rust
# binary on a slim CUDA 13.0 runtime. Weights are NOT baked in: they live on a network volume
# (/runpod-volume/higgs_audio/{model,codec}); see docs/deploy-runpod.md.
#
#   docker buildx build --platform linux/amd64 -t REGISTRY/higgs-serve:TAG --push .
#   docker buildx build --platform linux/amd64 --build-arg CUDA_COMPUTE_CAP=90 -t ... .   # Hopper-only build
#
# Build arguments:
#   CUDA_COMPUTE_CAP  GPU architecture the CUDA kernels (PTX) are compiled for. Default 80.
#                     PTX is JIT-compiled by the driver for the GPU it runs on, forward only, so a
#                     build for cap N runs on every GPU with cap >= N and on NO GPU below N:
#                       80  A100, A6000/A40 (86), RTX 3090/A5000 (86), L4/L40S/RTX 4090/6000 Ada (89),
#                           H100/H200 (90), RTX 5090/B200 (120/100): the portable choice (default)
#                       86  Ampere workstation/consumer (A6000, A40, 3090) and everything newer
#                       89  Ada (L4, L40S, RTX 4090, 6000 Ada) and everything newer
#                       90  Hopper (H100, H200) and newer only (the development GPU host's setting)
#                       120 Blackwell consumer/workstation (RTX 5090, RTX PRO 6000) only
#                     A build for a newer cap than the GPU fails at the first kernel launch
#                     (CUDA_ERROR_NO_BINARY_FOR_GPU / invalid PTX), so match it to the endpoint's GPUs.
#   RUST_TOOLCHAIN    Rust toolchain rustup installs (default: the version the project is tested with;
#                     "stable" also works). The workspace needs >= 1.85.
#   CUDA_DEVEL_IMAGE / CUDA_BASE_IMAGE
#                     the two NVIDIA images. Pin them by digest for reproducible builds: run
#                       docker buildx imagetools inspect nvidia/cuda:13.0.2-devel-ubuntu24.04
#                       docker buildx imagetools inspect nvidia/cuda:13.0.2-base-ubuntu24.04
#                     and pass --build-arg CUDA_BASE_IMAGE=nvidia/cuda:13.0.2-base-ubuntu24.04@sha256:<Digest>
#                     (the index digest printed on the "Digest:" line). NVIDIA re-publishes tags
#                     with security rebuilds, so a digest is the only immutable reference.
#
# Size: not built yet (no daemon here). scripts/build-image.sh builds the same layout daemonless (Debian 12
# + the same CUDA library versions from NVIDIA's wheels, no cuda-compat); measured there: 0.525 GB
# compressed, 0.837 GB unpacked. This image adds Ubuntu's base and cuda-compat-13-0 (307 MiB): about
# 1.2 GB unpacked, estimate. Details: docs/deploy-runpod.md "Image size".

ARG CUDA_DEVEL_IMAGE=nvidia/cuda:13.0.2-devel-ubuntu24.04
ARG CUDA_BASE_IMAGE=nvidia/cuda:13.0.2-base-ubuntu24.04

# ---------------------------------------------------------------------------------------------------
# Builder: nvcc 13.0 (candle's CUDA kernels), the CUDA link libraries, a C/C++ toolchain and cmake
# for the C code vendored by -sys crates (libopus via cmake in opusic-sys, LAME via configure/make in
# mp3lame-sys, libsoxr and zstd via cc, ring's C/asm, esaxx-rs' C++), and rustup.
# ---------------------------------------------------------------------------------------------------
FROM ${CUDA_DEVEL_IMAGE} AS builder

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Ubuntu's own packages are not version-pinned: the noble archive keeps only the current version of
# each package, so a pin breaks the build as soon as a security update lands.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        build-essential \
        ca-certificates \
        cmake \
        curl \
        pkg-config \
 && rm -rf /var/lib/apt/lists/*

# rustup-init, checksum-pinned (the same archive URL and sha256 the official rust images use).
ARG RUSTUP_VERSION=1.28.2
ARG RUSTUP_SHA256=20a06e644b0d9bd2fbdbfd52d42540bdde820ea7df86e92e533c073da0cdd43c
ARG RUST_TOOLCHAIN=1.95.0
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:${PATH}
RUN curl -fsSLo /tmp/rustup-init \
        "https://static.rust-lang.org/rustup/archive/${RUSTUP_VERSION}/x86_64-unknown-linux-gnu/rustup-init" \
 && echo "${RUSTUP_SHA256}  /tmp/rustup-init" | sha256sum -c - \
 && chmod +x /tmp/rustup-init \
 && /tmp/rustup-init -y --no-modify-path --profile minimal --default-toolchain "${RUST_TOOLCHAIN}" \
 && rm /tmp/rustup-init \
 && rustc --version && cargo --version && nvcc --version | tail -1

ARG CUDA_COMPUTE_CAP=80
# Read by candle-kernels' build script (cudaforge): there is no GPU (nvidia-smi) during a build.
ENV CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP}

WORKDIR /src
COPY . .

# The cargo registry and the target dir are BuildKit cache mounts: a rebuild after a source change
# recompiles only the workspace crates. The cache mount is not part of the image, so the binary is
# copied out in the same step. The kernels' build script re-runs when CUDA_COMPUTE_CAP changes.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p higgs-serve --features cuda \
 && install -D -m 0755 target/release/higgs-serve /out/higgs-serve

# ---------------------------------------------------------------------------------------------------
# Runtime: CUDA base (cudart + the forward-compat driver libs) plus only the CUDA libraries the binary
# links: libcublas.so.13 (which pulls libcublasLt.so.13, same package) and libcurand.so.10.
# libcuda.so.1 comes from the host driver (NVIDIA container toolkit). NVRTC is not linked (candle
# ships precompiled PTX), so cuda-nvrtc-13-0 (~217 MiB) is left out. Checked by `readelf -d` of a
# CUDA build: NEEDED = libcuda.so.1, libcurand.so.10, libcublas.so.13 (+ libc, libm, libgcc_s).
# ---------------------------------------------------------------------------------------------------
FROM ${CUDA_BASE_IMAGE} AS runtime

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# The two CUDA packages are pinned to the versions of the CUDA 13.0.2 release (NVIDIA's repository,
# already configured in the base image, keeps every version). ca-certificates is Ubuntu's (unpinned,
# as above); the binary itself carries its TLS roots (rustls + webpki-roots), the package is for
# anything run inside the container.
ARG LIBCUBLAS_VERSION=13.1.0.3-1
ARG LIBCURAND_VERSION=10.4.0.35-1
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        "libcublas-13-0=${LIBCUBLAS_VERSION}" \
        "libcurand-13-0=${LIBCURAND_VERSION}" \
        ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# The runtime user for hosts that allow a non-root container (`docker run --user higgs`); the same
# uid, name and home as scripts/build-image.sh's image. The default stays root, see the end.
RUN groupadd --gid 10001 higgs \
 && useradd --no-log-init --uid 10001 --gid 10001 --home-dir /home/higgs --create-home \
        --shell /usr/sbin/nologin --comment higgs-serve higgs

COPY --from=builder /out/higgs-serve /usr/local/bin/higgs-serve
# Default voice library (NAME.wav + NAME.txt, profile.yaml; Apache-2.0, see voices/README.md). The
# worker uses /runpod-volume/higgs_audio/voices when that folder exists, else /app/voices.
# VOICE_PROMPTS_PATH is deliberately NOT set here: setting it would override that volume-first choice.
# Owned by the runtime user, so the cached voice codes (NAME.codes) can be written as either user.
COPY --chown=10001:10001 voices/ /app/voices/

# Fail the build if the binary links a library this image lacks (libcuda.so.1 is the host driver's).
RUN missing="$(ldd /usr/local/bin/higgs-serve | grep 'not found' | grep -v 'libcuda\.so\.1' || true)"; \
    if [ -n "${missing}" ]; then echo "higgs-serve needs libraries missing from the image:" >&2; \
        echo "${missing}" >&2; exit 1; fi

LABEL org.opencontainers.image.title="higgs-serve" \
      org.opencontainers.image.description="Rust-native Higgs Audio v2 TTS: RunPod Serverless worker and OpenAI-compatible server" \
      org.opencontainers.image.licenses="Apache-2.0"

# The CUDA base image's settings, restated so that scripts/image/check-layout.py can hold the
# daemonless image (scripts/build-image.sh) to the same values.
ENV PATH=/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# Runs as root by default: RunPod Serverless gives no per-endpoint user setting, its network volume
# (/runpod-volume) is root-owned and the worker writes there (download lock, cached voice codes).
# Everything in the image is readable by the runtime user higgs (10001), which works wherever the
# volume is pre-populated or absent: `docker run --user higgs ...` (the smoke test runs it so).
WORKDIR /app
# `serve` and `runpod --rp-serve-api` listen here; the RunPod queue worker itself listens on nothing.
EXPOSE 8000
ENTRYPOINT ["higgs-serve"]
CMD ["runpod"]
