#!/usr/bin/env bash
# Device call: the cuDNN build's small-window cost in the engine (c=1, c=32) next to the default
# build, same call. Carry .gpu (gpu-pack.sh suite + cudnn). Console only.
set -u
for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13 libcudnn.so.9; do
  d=$(dirname "$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)")
  export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
mkdir -p /tmp/gpu
for b in higgs-serve cudnn-higgs-serve; do xz -dc .gpu/$b.xz > /tmp/gpu/$b; chmod +x /tmp/gpu/$b; done
[ -f /tmp/full/codec/config.json ] || /tmp/gpu/higgs-serve dev make-checkpoint --preset full --layout legacy --out /tmp/full 2>&1 | tail -1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
M="--model /tmp/full/model --codec /tmp/full/codec --device cuda --dtype bf16"
for b in higgs-serve cudnn-higgs-serve; do
  echo "== $b"
  timeout 100 /tmp/gpu/$b bench $M --concurrency 1,32 --frames 250 --json $OUT/engine_$b.json 2>&1 | grep -E "concurrency|rror" | cut -c1-190
  timeout 40 /tmp/gpu/$b dev bench-codec --codec /tmp/full/codec --device cuda --batch 1,4,32 --new-frames 4 --runs 5 2>&1 | grep -E "batch|rror"
done
