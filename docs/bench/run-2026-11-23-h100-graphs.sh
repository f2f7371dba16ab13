#!/usr/bin/env bash
# Issue #8, GPU run 4 (H100): CUDA graphs for the audio decode step (+ cudarc event tracking off).
# Carries .gpu/ (xz-compressed): higgs-serve (cuda build) and the model's decode_graph test binary
# (t_decode_graph), the model parity test binary (t_parity) and the llm fixtures. Run through the device tool from the repository root:
#   bash docs/bench/run-2026-11-23-h100-graphs.sh   (carry [".gpu"]); its $OUT is docs/bench/h100-graphs/.
for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
  d=$(dirname "$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)")
  export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
export RUST_BACKTRACE=1
W=/tmp/gpu; mkdir -p $W
for f in .gpu/*.xz; do xz -dc "$f" > "$W/$(basename "${f%.xz}")"; done
tar -C $W -xf $W/fixtures.tar; chmod +x $W/higgs-serve $W/t_*
B=$W/higgs-serve
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/nvidia-smi.txt
for t in decode_graph parity; do
  echo "== $t test, f32 CUDA (graphs on by default: the parity decode steps replay graphs)"
  HIGGS_FIXTURES=$W HIGGS_TEST_DEVICE=cuda timeout 120 $W/t_$t --test-threads=1 2>&1 | tail -15 | tee $OUT/cuda_f32_${t}_test.txt
done
if [ ! -f /tmp/full/model/config.json ]; then
  echo "== full checkpoint"; /usr/bin/time -f "elapsed %e s" $B dev make-checkpoint --preset full --layout legacy --out /tmp/full 2>&1 | tail -1
fi
M="--model /tmp/full/model --device cuda --dtype bf16"
echo "== bench-step context 256, graphs on"; timeout 120 $B dev bench-step $M --batch 1,8,32,64,128,256 --context 256 --steps 30 --json 2>&1 | tee $OUT/bench_step_graphs.jsonl | cut -c1-330
echo "== bench-step context 256, graphs off"; HIGGS_CUDA_GRAPHS=0 timeout 90 $B dev bench-step $M --batch 1,32,256 --context 256 --steps 30 --json 2>&1 | tee $OUT/bench_step_nographs.jsonl | cut -c1-200
E="bench --model /tmp/full/model --codec /tmp/full/codec --device cuda --dtype bf16"
echo "== engine warm-up"; timeout 60 $B $E --concurrency 2 --frames 30 2>&1 | tail -1
echo "== engine bench, graphs on"; timeout 150 $B $E --concurrency 1,8,32,128,256 --frames 100 --json $OUT/bench_engine_graphs.json 2>&1 | tail -7
echo "== engine bench, graphs off"; HIGGS_CUDA_GRAPHS=0 timeout 80 $B $E --concurrency 1,32 --frames 100 --json $OUT/bench_engine_nographs.json 2>&1 | tail -3
