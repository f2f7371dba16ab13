"""The official `runpod` Python client (PyPI, pinned in scripts/install-test-deps.sh) against
`higgs-serve runpod --rp-serve-api --demo`: run, status, output, stream, cancel, run_sync, health,
purge_queue; plus one-shot `--test-input` runs of the binary. Every audio result is decoded with an
independent decoder (the stdlib wave module / ffprobe)."""

import base64
import io
import json
import os
import subprocess
import time
import wave
from pathlib import Path

import pytest
import runpod

URL = os.environ["HIGGS_RP_URL"]
KEY = os.environ["HIGGS_E2E_KEY"]
BIN = os.environ["HIGGS_BIN"]
WORK = Path(os.environ["HIGGS_E2E_WORK"])
FAST = {"temperature": 0, "ras_win_len": 0, "max_new_tokens": 30}

runpod.api_key = KEY
runpod.endpoint_url_base = URL + "/v2"


def endpoint():
    return runpod.Endpoint("local-endpoint")


def wav_frames(b64):
    with wave.open(io.BytesIO(base64.b64decode(b64))) as w:
        assert w.getframerate() == 24000
        assert w.getnchannels() == 1
        return w.getnframes()


def test_run_status_output():
    job = endpoint().run({"transcript": "Hello from the runpod client.", **FAST})
    assert job.job_id.startswith("local-")
    assert job.status() in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED")
    out = job.output(timeout=120)
    assert job.status() == "COMPLETED"
    assert out["success"] is True
    frames = wav_frames(out["audio_base64"])
    assert frames > 0
    assert abs(out["duration_seconds"] - frames / 24000) < 1e-6
    assert out["metadata"]["generation_parameters"]["max_new_tokens"] == 30


def test_run_sync_and_input_wrapping():
    # run_sync wraps a bare dict into {"input": ...}; an explicit {"input": ...} is sent as is.
    a = endpoint().run_sync({"transcript": "Synchronous.", "seed": 7, **FAST}, timeout=120)
    b = endpoint().run_sync({"input": {"transcript": "Synchronous.", "seed": 7, **FAST}}, timeout=120)
    assert a["success"] and b["success"]
    # Same seed, same input: the same audio.
    assert a["audio_base64"] == b["audio_base64"]


def test_stream_yields_audio_chunks_in_order():
    job = endpoint().run({"transcript": "Streaming through the queue.", "stream": True,
                          "output_format": "pcm", **FAST, "max_new_tokens": 60})
    chunks = list(job.stream())
    assert chunks, "no partials"
    assert [c["chunk_index"] for c in chunks] == list(range(len(chunks)))
    pcm = b"".join(base64.b64decode(c["audio_base64"]) for c in chunks)
    out = job.output(timeout=60)
    assert out["streamed_chunks"] == len(chunks)
    assert "audio_base64" not in out
    assert len(pcm) == round(out["duration_seconds"] * 24000) * 2


def test_cancel_stops_a_running_job():
    words = " ".join(f"word{i}" for i in range(200))
    job = endpoint().run({"transcript": words, "chunk_method": "word", "chunk_max_word_num": 4,
                          "temperature": 1.0, "max_new_tokens": 64, "seed": 3})
    deadline = time.time() + 60
    while job.status() == "IN_QUEUE" and time.time() < deadline:
        time.sleep(0.2)
    res = job.cancel()
    assert res["status"] == "CANCELLED"
    assert job.status() == "CANCELLED"
    # It stays cancelled (the engine stopped it; nothing overwrites the state later).
    time.sleep(1.5)
    fresh = runpod.Endpoint("local-endpoint")
    from runpod.endpoint.runner import Job
    assert Job("local-endpoint", job.job_id, fresh.rp_client).status() == "CANCELLED"


def test_failed_job_reports_the_error():
    job = endpoint().run({"transcript": "Hello.", "ref_audio": "no_such_voice", **FAST})
    deadline = time.time() + 60
    while job.status() not in ("COMPLETED", "FAILED") and time.time() < deadline:
        time.sleep(0.2)
    assert job.status() == "FAILED"
    raw = job.rp_client.get(f"local-endpoint/status/{job.job_id}")
    err = json.loads(raw["error"])
    assert err["error_type"] == "not_found"
    assert "belinda" in err["voice_suggestions"]


def test_openai_passthrough_speech():
    out = endpoint().run_sync({"openai_route": "/v1/audio/speech",
                               "openai_input": {"model": "tts-1", "input": "Passthrough.", "voice": "belinda",
                                                "response_format": "mp3", **FAST}}, timeout=120)
    assert out["content_type"] == "audio/mpeg"
    path = WORK / "passthrough.mp3"
    path.write_bytes(base64.b64decode(out["data_b64"]))
    assert out["size_bytes"] == path.stat().st_size
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate",
                            "-of", "json", str(path)], capture_output=True, text=True, check=True)
    s = json.loads(probe.stdout)["streams"][0]
    assert s["codec_name"] == "mp3" and s["sample_rate"] == "24000"


def test_health_and_purge_queue():
    h = endpoint().health()
    assert set(h["jobs"]) >= {"completed", "failed", "inProgress", "inQueue", "retried"}
    assert h["jobs"]["completed"] >= 1
    assert h["workers"]["unhealthy"] == 0
    assert endpoint().purge_queue()["status"] == "completed"


def test_wrong_key_is_refused():
    bad = runpod.Endpoint("local-endpoint", api_key="wrong")
    with pytest.raises(RuntimeError, match="401"):
        bad.run({"transcript": "x"})


def test_one_shot_test_input(tmp_path):
    ok = subprocess.run([BIN, "runpod", "--demo", "--device", "cpu", "--max-seq-len", "1024",
                         "--test-input", json.dumps({"input": {"transcript": "One shot.", **FAST}})],
                        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    body = json.loads(ok.stdout)
    assert wav_frames(body["output"]["audio_base64"]) > 0
    # ./test_input.json is picked up when no platform is configured; a failing job exits 1.
    (tmp_path / "test_input.json").write_text(json.dumps({"input": {"transcript": "x", "temperature": -1}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_")}
    bad = subprocess.run([BIN, "runpod", "--demo", "--device", "cpu"], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path, env=env)
    assert bad.returncode == 1
    assert "temperature" in json.loads(bad.stdout)["error"]
