# GPU diagnostics of 2026-12-04 (commit 4a8ba5a), second call; the first call ran HIGGS_PROFILE_SYNC=1 with
# HIGGS_CODEC_THREAD default/0 at c=256 (sync_thread, sync_inline, nosync_inline.json). HIGGS_CUDA_TF32 was an opt-in
# switch of that commit, removed after this run showed no effect. Results: docs/BENCHMARKS.md 'GPU diagnostics'.
set -u
for lib in libcublas.so.13 libcurand.so.10 libnvrtc.so.13 libcudart.so.13; do
  d=$(dirname "$(find / -name "$lib" -not -path '/proc/*' 2>/dev/null | head -1)"); export LD_LIBRARY_PATH=$d:${LD_LIBRARY_PATH:-}
done
W=/tmp/gpu; mkdir -p $W
for f in .gpu/higgs-serve.xz .gpu/t_engine_sampling_device.xz; do xz -dc "$f" > "$W/$(basename "${f%.xz}")"; done; chmod +x $W/*
echo "== sampling_device"; HIGGS_TEST_DEVICE=cuda timeout 100 $W/t_engine_sampling_device --test-threads=1 2>&1 | grep -E "^test |result|panicked|^called"
B=$W/higgs-serve
[ -f /tmp/full/model/config.json ] || $B dev make-checkpoint --preset full --layout legacy --out /tmp/full 2>&1 | tail -1
M="--model /tmp/full/model --codec /tmp/full/codec --device cuda --dtype bf16"
run() { # NAME ENV...
  local n=$1; shift
  echo "== $n"; env "$@" timeout 80 $B bench $M --concurrency 1,256 --frames 250 --json $OUT/$n.json 2>&1 | grep -E "concurrency|rror" | cut -c1-330
}
run base HIGGS_CHUNK_FRAMES=25
run chunk50 HIGGS_CHUNK_FRAMES=50
run chunk100 HIGGS_CHUNK_FRAMES=100 HIGGS_MAX_CHUNK_FRAMES=100
run tf32 HIGGS_CUDA_TF32=1
run tf32_chunk50 HIGGS_CUDA_TF32=1 HIGGS_CHUNK_FRAMES=50
for t in 0 1; do HIGGS_CUDA_TF32=$t timeout 60 $B synth $M --text "The GPU suite checks synth end to end." --force-audio --max-new-tokens 150 --seed 1 --out $OUT/synth_tf32_$t.wav > $OUT/synth_$t.log 2>&1; echo "synth tf32=$t rc=$?"; done
python3 - <<'P'
import json,os,wave,struct,math
O=os.environ["OUT"]
for n in ["base","chunk50","chunk100","tf32","tf32_chunk50"]:
    p=O+"/"+n+".json"
    if not os.path.exists(p): print(n,"missing"); continue
    for l in json.load(open(p))["levels"]:
        print(n,{k:round(v,3) if isinstance(v,float) else v for k,v in l.items() if k.startswith("phase") or k in("concurrency","audio_s_per_s","ttfa_p50_ms","per_stream_rtf_mean","wall_s")})
def rd(p):
    w=wave.open(p); b=w.readframes(w.getnframes()); return struct.unpack("<%dh"%(len(b)//2),b)
try:
    a,b=rd(O+"/synth_tf32_0.wav"),rd(O+"/synth_tf32_1.wav")
    n=min(len(a),len(b)); sig=sum(x*x for x in a[:n]); err=sum((x-y)**2 for x,y in zip(a[:n],b[:n]))
    print("synth lens",len(a),len(b),"SNR dB", 10*math.log10(sig/err) if err else "inf", "max abs diff", max(abs(x-y) for x,y in zip(a[:n],b[:n])))
except Exception as e: print("synth compare failed",e)
P
