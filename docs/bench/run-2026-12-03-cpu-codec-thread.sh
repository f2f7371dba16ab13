#!/usr/bin/env bash
# Session 4, CPU (2-core dev VM): the audio worker on its own thread (HIGGS_CODEC_THREAD=1) vs
# inline on the engine thread (0, the CPU default), tiny random checkpoint, alternating runs.
# Outputs: docs/bench/cpu-codec-thread/.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p higgs-serve
B=target/release/higgs-serve
OUT=docs/bench/cpu-codec-thread; mkdir -p $OUT
[ -f /tmp/tiny/model/config.json ] || $B dev make-checkpoint --preset tiny --out /tmp/tiny
for run in a b; do
  for v in 1 0; do
    echo "== run $run, HIGGS_CODEC_THREAD=$v"
    HIGGS_CODEC_THREAD=$v $B bench --model /tmp/tiny/model --codec /tmp/tiny/codec --device cpu \
      --concurrency 1,8,32 --frames 100 --json $OUT/bench_engine_tiny_thread_${v}_$run.json 2>&1 | grep concurrency | cut -c1-200
  done
done
