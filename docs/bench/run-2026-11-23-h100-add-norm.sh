#!/usr/bin/env bash
# Issue #8, GPU run 7 (H100): run 6 + residual add fused with the following RMSNorm in the graphed
# decode step (13 -> 11 graph nodes per layer) + prefill pieces of several requests attending in one
# padded batch. Final numbers of session 3.
# Carries .gpu/ (xz): higgs-serve (cuda build) and t_decode_graph (t_parity + the llm fixtures
# when they fit the 64 MiB carry; in run 7 they did not, parity ran in run 6).
# Run from the repository root: bash docs/bench/run-2026-11-23-h100-add-norm.sh (carry [".gpu"]);
# its $OUT is docs/bench/h100-add-norm/.
for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
  d=$(dirname "$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)")
  export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
export RUST_BACKTRACE=1
W=/tmp/gpu; mkdir -p $W
for f in .gpu/*.xz; do xz -dc "$f" > "$W/$(basename "${f%.xz}")"; done
[ -f $W/fixtures.tar ] && tar -C $W -xf $W/fixtures.tar; chmod +x $W/higgs-serve $W/t_*
B=$W/higgs-serve
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/nvidia-smi.txt
for t in decode_graph parity; do
  [ -x $W/t_$t ] || continue
  echo "== $t test, f32 CUDA"
  HIGGS_FIXTURES=$W HIGGS_TEST_DEVICE=cuda timeout 120 $W/t_$t --test-threads=1 2>&1 | grep -E "^test |test result" | tee -a $OUT/cuda_f32_tests.txt
done
if [ ! -f /tmp/full/model/config.json ]; then
  echo "== full checkpoint"; /usr/bin/time -f "elapsed %e s" $B dev make-checkpoint --preset full --layout legacy --out /tmp/full 2>&1 | tail -1
fi
M="--model /tmp/full/model --device cuda --dtype bf16"
echo "== bench-step context 256"
timeout 120 $B dev bench-step $M --batch 1,8,32,64,128,256 --context 256 --steps 30 --json 2>&1 | tee $OUT/bench_step.jsonl | cut -c1-200
echo "== bench-step context 1024"
timeout 90 $B dev bench-step $M --batch 1,64,256 --context 1024 --steps 30 --json 2>&1 | tee $OUT/bench_step_ctx1024.jsonl | cut -c1-200
E="bench --model /tmp/full/model --codec /tmp/full/codec --device cuda --dtype bf16"
nvidia-smi --query-gpu=memory.used --format=csv,noheader -lms 500 > $OUT/gpu_mem_trace.csv & SMI=$!
echo "== engine bench, 100 frames"
RUST_LOG=higgs_engine=debug,info timeout 200 $B $E --concurrency 1,1,8,32,128,256 --frames 100 --json $OUT/bench_engine.json 2> $OUT/bench_engine.log
grep -E "ready|concurrency" $OUT/bench_engine.log | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-260
echo "== engine bench, 250 frames"
timeout 150 $B $E --concurrency 1,32,256 --frames 250 --json $OUT/bench_engine_250.json 2>&1 | grep -E "concurrency" | cut -c1-260
kill $SMI
