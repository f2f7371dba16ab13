#!/usr/bin/env bash
# Issue #8, GPU run 9: the audio worker (codec decodes on their own thread and CUDA stream,
# overlapping the model's steps) on vs off in one binary: HIGGS_CODEC_THREAD=1 (default) vs 0
# (decodes inline on the engine thread, the behaviour of runs 1-8); and the batched K/V write of
# prefill pieces on vs off (HIGGS_BATCHED_KV_WRITE). Same bench as runs 6-7.
# Carries .gpu/ (xz): higgs-serve (cuda build), t_decode_graph. $OUT is docs/bench/h100-codec-thread/.
for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
  d=$(dirname "$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)")
  export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
W=/tmp/gpu; mkdir -p $W
for f in .gpu/*.xz; do xz -dc "$f" > "$W/$(basename "${f%.xz}")"; done
chmod +x $W/higgs-serve $W/t_*
B=$W/higgs-serve
echo "== decode_graph test, f32 CUDA (grouped prefill + batched K/V writes = each alone)"
HIGGS_TEST_DEVICE=cuda timeout 120 $W/t_decode_graph --test-threads=1 2>&1 | grep -E "^test |test result|panicked" | head -20 | tee $OUT/cuda_f32_tests.txt
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv > $OUT/nvidia-smi.txt
if [ ! -f /tmp/full/model/config.json ]; then
  echo "== full checkpoint"; $B dev make-checkpoint --preset full --layout legacy --out /tmp/full 2>&1 | tail -1
fi
E="bench --model /tmp/full/model --codec /tmp/full/codec --device cuda --dtype bf16"
nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv,noheader -lms 500 > $OUT/gpu_mem_trace.csv &
SMI=$!
for v in 1 0; do
  echo "== engine, HIGGS_CODEC_THREAD=$v, 100 frames"
  HIGGS_CODEC_THREAD=$v timeout 150 $B $E --concurrency 1,1,8,32,128,256 --frames 100 --json $OUT/bench_engine_thread_$v.json 2>&1 | grep -E "concurrency|ready|failed|rror" | cut -c1-260
  echo "== engine, HIGGS_CODEC_THREAD=$v, 250 frames"
  HIGGS_CODEC_THREAD=$v timeout 150 $B $E --concurrency 1,32,256 --frames 250 --json $OUT/bench_engine_250_thread_$v.json 2>&1 | grep -E "concurrency|ready|failed|rror" | cut -c1-260
done
echo "== engine, batched K/V write off (HIGGS_BATCHED_KV_WRITE=0), 100 frames"
HIGGS_BATCHED_KV_WRITE=0 timeout 150 $B $E --concurrency 32,128,256 --frames 100 --json $OUT/bench_engine_kvwrite_0.json 2>&1 | grep -E "concurrency|ready|failed|rror" | cut -c1-260
kill $SMI
echo "== audio fingerprints, thread on vs off (same seeds; c=1 levels run alone, so their codes match)"
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
for name in ["bench_engine_thread_%s.json", "bench_engine_250_thread_%s.json"]:
    a, b = (json.load(open(f"{out}/" + name % v)) for v in ("1", "0"))
    la, lb = a["levels"][0], b["levels"][0]
    ra, rb = la["audio_rms_per_second"][0], lb["audio_rms_per_second"][0]
    rel = max(abs(x - y) / max(abs(y), 1e-9) for x, y in zip(ra, rb)) if ra else float("nan")
    print(f"{name % '*'} c={la['concurrency']}: seconds {len(ra)} vs {len(rb)}, max relative RMS diff {rel:.2e}")
PY
