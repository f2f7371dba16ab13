#!/usr/bin/env bash
# Issue #8, GPU run 3 (H100): f32 CUDA parity of the model with the fused SwiGLU kernel, the fused
# vs generic SwiGLU unit test in f32 and bf16, and the bf16-vs-f32 divergence. Carries .gpu/
# (xz-compressed): the higgs-model unit-test and parity binaries, higgs-engine generation_parity,
# and the llm fixtures. Run from the repository root: bash docs/bench/run-2026-11-23-h100-parity-fused.sh
# (carry [".gpu"]); its $OUT is committed as docs/bench/h100-parity-fused/.
for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
  d=$(dirname "$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)")
  export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
W=/tmp/gpu; mkdir -p $W
for f in .gpu/*.xz; do xz -dc "$f" > "$W/$(basename "${f%.xz}")"; done
tar -C $W -xf $W/fixtures.tar; chmod +x $W/t_*
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
for t in $W/t_*; do
  echo "== $(basename $t)"
  HIGGS_FIXTURES=$W/fixtures HIGGS_TEST_DEVICE=cuda timeout 200 $t --test-threads=1 --nocapture 2>&1 | grep -v "^\s*$" | tail -40
done 2>&1 | tee $OUT/cuda_f32_tests_fused.txt | grep -E "^== |test result|FAILED|panicked|fused vs generic|bf16 vs f32"
