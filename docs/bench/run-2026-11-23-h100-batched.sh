#!/usr/bin/env bash
# Issue #8, GPU run 1 (H100): batched decode attention + batched sampling + native CUDA
# conv-transpose. Carries .gpu/ = higgs-serve (cuda build), the f32 parity test binaries of
# higgs-model (parity) and higgs-engine (generation_parity), and the llm fixtures, xz-compressed.
# Run through the device tool from the repository root: bash docs/bench/run-2026-11-23-h100-batched.sh
# (carry [".gpu"]); its $OUT is committed as docs/bench/h100-batched/. Code: commit 013814f + the
# engine/codec changes of 64fab21 (batched sampling, native CUDA conv-transpose), before the fused Snake.
for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
  d=$(dirname "$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)")
  export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
export RUST_BACKTRACE=0
W=/tmp/gpu; mkdir -p $W
for f in .gpu/*.xz; do xz -dc "$f" > "$W/$(basename "${f%.xz}")"; done
tar -C $W -xf $W/fixtures.tar 2>/dev/null; chmod +x $W/higgs-serve $W/t_* 2>/dev/null
B=$W/higgs-serve
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/nvidia-smi.txt
echo "== f32 CUDA parity tests (HIGGS_TEST_DEVICE=cuda)"
for t in $W/t_*; do
  echo "== $(basename $t)"
  HIGGS_FIXTURES=$W/fixtures HIGGS_TEST_DEVICE=cuda timeout 240 $t --test-threads=1 --nocapture 2>&1 | grep -v "^\s*$" | tail -40
done 2>&1 | tee $OUT/cuda_f32_tests.txt | grep -E "test result|FAILED|panicked|bf16 vs f32" | head -40
echo "== full checkpoint"; /usr/bin/time -f "elapsed %e s" $B dev make-checkpoint --preset full --layout legacy --out /tmp/full 2>&1 | tail -1
nvidia-smi --query-gpu=memory.used --format=csv,noheader -lms 250 > $OUT/gpu_mem_trace.csv & SMI=$!
echo "== bench-step full bf16"; timeout 200 $B dev bench-step --model /tmp/full/model --device cuda --dtype bf16 --batch 1,8,32,64,128,256 --context 256 --steps 20 --json 2>&1 | tee $OUT/bench_step_full_bf16.jsonl | tail -7
echo "== engine bench full bf16"; timeout 200 $B bench --model /tmp/full/model --codec /tmp/full/codec --device cuda --dtype bf16 --concurrency 1,8,32,128,256 --frames 100 --json $OUT/bench_engine_full_bf16.json 2>&1 | tail -6
echo "== engine bench, HIGGS_PROFILE_SYNC=1 (phase split)"; HIGGS_PROFILE_SYNC=1 timeout 100 $B bench --model /tmp/full/model --codec /tmp/full/codec --device cuda --dtype bf16 --concurrency 1,32 --frames 100 --json $OUT/bench_engine_full_bf16_profile.json 2>&1 | tail -3
kill $SMI
