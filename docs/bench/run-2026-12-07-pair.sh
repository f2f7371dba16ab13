#!/usr/bin/env bash
# The other half of a same-card-type comparison, with the device time left for one suite run:
# on an H100 run the build of the last GPU-measured commit (.gpu/base-higgs-serve.xz, 7875397) —
# run 6 measured this commit's build on an H100; on an H200 run this commit's build (.gpu/) — run 5
# measured 7875397 on an H200. The fused-sampler A/B is left out to fit the time.
set -u
O=${OUT:-/tmp/pair}; mkdir -p "$O"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); echo "gpu: $GPU"
mv .gpu/base-higgs-serve.xz /tmp/base-higgs-serve.xz
case "$GPU" in
  *H100*) rm -f .gpu/higgs-serve.xz .gpu/t_*.xz; mv /tmp/base-higgs-serve.xz .gpu/higgs-serve.xz
          cp .gpu/base-commit .gpu/commit; WHICH=base ;;
  *) WHICH=head ;;
esac
echo "running the $WHICH build ($(cat .gpu/commit))"
GPU_SUITE_SKIP_FUSED=1 OUT=$O/$WHICH bash scripts/gpu-suite.sh > "$O/$WHICH.txt" 2>&1; echo "suite rc=$?"
tar -C "$O" -czf "$O/raw-$WHICH.tgz" "$WHICH/raw" && rm -rf "$O/$WHICH/raw"
grep -E "^(ok|REGRESSION)|http/engine" "$O/$WHICH.txt"
