#!/usr/bin/env bash
# Issue #8, GPU run 8 (H100): A/B of the fused residual-add + RMSNorm kernel (now one thread per
# element up to 1024) in one binary, and the grouped-prefill test's CUDA failure message from run 7.
# Carries .gpu/ (xz): higgs-serve (cuda build), t_decode_graph. $OUT is docs/bench/h100-add-norm-ab/.
for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
  d=$(dirname "$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)")
  export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
W=/tmp/gpu; mkdir -p $W
for f in .gpu/*.xz; do xz -dc "$f" > "$W/$(basename "${f%.xz}")"; done
chmod +x $W/higgs-serve $W/t_*
B=$W/higgs-serve
echo "== decode_graph test, f32 CUDA"
HIGGS_TEST_DEVICE=cuda timeout 120 $W/t_decode_graph --test-threads=1 2>&1 | grep -E "^test |test result|panicked|max \|diff\||divergence" | head -20 | tee $OUT/cuda_f32_tests.txt
if [ ! -f /tmp/full/model/config.json ]; then
  echo "== full checkpoint"; $B dev make-checkpoint --preset full --layout legacy --out /tmp/full 2>&1 | tail -1
fi
M="--model /tmp/full/model --device cuda --dtype bf16"
for v in 1 0 1; do
  echo "== bench-step context 256, HIGGS_FUSED_ADD_NORM=$v"
  HIGGS_FUSED_ADD_NORM=$v timeout 90 $B dev bench-step $M --batch 1,32,256 --context 256 --steps 50 --json 2>&1 | tee -a $OUT/bench_step_add_norm_$v.jsonl | cut -c1-120
done
E="bench --model /tmp/full/model --codec /tmp/full/codec --device cuda --dtype bf16"
for v in 1 0; do
  echo "== engine c=1, HIGGS_FUSED_ADD_NORM=$v"
  HIGGS_FUSED_ADD_NORM=$v timeout 60 $B $E --concurrency 1,1,1 --frames 250 --json $OUT/bench_engine_c1_add_norm_$v.json 2>&1 | grep concurrency | cut -c1-200
done
