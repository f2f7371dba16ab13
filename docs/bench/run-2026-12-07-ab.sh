#!/usr/bin/env bash
# Same-card A/B in one device call (the lent card may be an H100 or an H200; the committed
# baseline.json is H200): the GPU suite on this commit's cuda build (.gpu/), then on the build of
# the last GPU-measured commit (.gpu/base-higgs-serve.xz, its commit in .gpu/base-commit), without
# the fused-sampler A/B to fit one call. Raw outputs come back as one tarball.
set -u
O=${OUT:-/tmp/ab}; mkdir -p "$O"
mv .gpu/base-higgs-serve.xz /tmp/base-higgs-serve.xz
GPU_SUITE_SKIP_FUSED=1 OUT=$O/head bash scripts/gpu-suite.sh > "$O/head.txt" 2>&1; echo "head rc=$?"
rm -f .gpu/higgs-serve.xz .gpu/t_*.xz /tmp/gpu/*
mv /tmp/base-higgs-serve.xz .gpu/higgs-serve.xz; cp .gpu/base-commit .gpu/commit
GPU_SUITE_SKIP_FUSED=1 OUT=$O/base bash scripts/gpu-suite.sh > "$O/base.txt" 2>&1; echo "base rc=$?"
tar -C "$O" -czf "$O/raw.tgz" head/raw base/raw && rm -rf "$O/head/raw" "$O/base/raw"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
