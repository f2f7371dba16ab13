#!/usr/bin/env bash
# Run on the GPU host right after scripts/gpu-suite.sh in the same call (it leaves the cuda build in
# /tmp/gpu and the full-size random checkpoint in /tmp/full): the issue-15 paths on CUDA that the
# suite does not take. Writes $OUT/extra/*.log.
set -u
B=/tmp/gpu/higgs-serve
X=${OUT:-/tmp}/extra; mkdir -p "$X"
for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
  d=$(dirname "$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)")
  export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
# 1. A transformers-layout checkpoint without text_lm_head (full size, bf16): loads, warms up on
#    audio logits only, speaks, ends on the audio EOS or max_new_tokens.
timeout 150 $B dev make-checkpoint --preset full --layout hf --no-text-head --out /tmp/nohead > "$X/nohead-make.log" 2>&1
echo "make nohead rc=$?"
timeout 120 $B synth --model /tmp/nohead/model --codec /tmp/nohead/codec --device cuda --dtype bf16 --text "No text head on the GPU." \
  --max-new-tokens 150 --seed 1 --out /tmp/nohead.wav > "$X/nohead-synth.log" 2>&1
echo "synth nohead rc=$?"; tail -2 "$X/nohead-synth.log"
# 2. Long text split by the engine on the GPU: 900 words with a 1024-position limit.
TEXT=$(python3 -c 'print("the quick brown fox jumps over the lazy dog " * 100)')
timeout 150 $B synth --model /tmp/full/model --codec /tmp/full/codec --device cuda --dtype bf16 --force-audio --text "$TEXT" \
  --max-seq-len 1024 --max-new-tokens 200 --seed 1 --out /tmp/long.wav > "$X/long-synth.log" 2>&1
echo "synth long rc=$?"; grep -E "did not fit|wrote|chunk" "$X/long-synth.log" | tail -4
