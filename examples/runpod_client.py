#!/usr/bin/env python3
"""Calls a higgs-serve RunPod endpoint with the official clients: `runpod` (run, status, stream,
cancel, run_sync) and `openai` (the endpoint's OpenAI passthrough). Writes the audio it gets.

    pip install runpod openai
    export RUNPOD_API_KEY=...            # RunPod console > Settings > API Keys
    export RUNPOD_ENDPOINT_ID=...        # the endpoint's id
    python examples/runpod_client.py [--out-dir out] [--voice belinda] [--skip-openai]

Against the local test API (`higgs-serve runpod --rp-serve-api --demo`), point both clients at it:

    RUNPOD_ENDPOINT_BASE_URL=http://127.0.0.1:8000/v2 RUNPOD_API_KEY=local RUNPOD_ENDPOINT_ID=local \\
        python examples/runpod_client.py

(the local API serves RunPod's job routes; the OpenAI passthrough part is skipped unless
RUNPOD_OPENAI_BASE_URL is set, because `/openai/v1` is RunPod's gateway, not the worker's).
"""
import argparse
import base64
import json
import os
import sys
import time
from pathlib import Path

import runpod


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        sys.exit(f"set {name} (see the top of {__file__})")
    return value


def write_audio(path, output):
    """Writes the audio of a /generate-shaped output (inline base64, else prints the S3 URL)."""
    if output.get("audio_base64"):
        path.write_bytes(base64.b64decode(output["audio_base64"]))
        print(f"  wrote {path} ({output.get('duration_seconds')} s at {output.get('sample_rate')} Hz)")
    elif output.get("audio_url"):
        print(f"  uploaded: {output['audio_url']} ({output.get('s3_uri')})")
    else:
        print(f"  no audio in output: {json.dumps(output)[:300]}")


def raw_status(job):
    """The whole /status answer (the SDK's status() gives only the state; a FAILED job's reason is
    in the top-level `error`)."""
    return job.rp_client.get(f"{job.endpoint_id}/status/{job.job_id}")


def wait(job, timeout_s=600):
    deadline = time.time() + timeout_s
    while True:
        st = raw_status(job)
        if st["status"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"):
            return st
        if time.time() > deadline:
            raise TimeoutError(f"job {job.job_id} still {st['status']} after {timeout_s} s")
        time.sleep(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", default="runpod_out")
    ap.add_argument("--voice", default="belinda", help="a voice of the endpoint's library")
    ap.add_argument("--skip-openai", action="store_true")
    args = ap.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    runpod.api_key = env("RUNPOD_API_KEY")
    # The SDK reads RUNPOD_ENDPOINT_BASE_URL when imported; set here too so it can change per run.
    runpod.endpoint_url_base = os.environ.get("RUNPOD_ENDPOINT_BASE_URL", "https://api.runpod.ai/v2")
    endpoint_id = env("RUNPOD_ENDPOINT_ID")
    endpoint = runpod.Endpoint(endpoint_id)

    text = "The sun rose over the quiet harbour, and the boats began to stir."

    # 1. run + status + output: the asynchronous job flow.
    print("run (async) ...")
    job = endpoint.run({"transcript": text, "ref_audio": args.voice, "seed": 42, "output_format": "mp3"})
    print(f"  job {job.job_id}: {job.status()}")
    st = wait(job)
    if st["status"] != "COMPLETED":
        sys.exit(f"  job {st['status']}: {st.get('error')}")
    write_audio(out / "run.mp3", st["output"])

    # 2. stream: audio partials as they are generated, concatenated in chunk_index order.
    print("run with stream: true ...")
    job = endpoint.run({"transcript": text, "ref_audio": args.voice, "seed": 7, "stream": True,
                        "output_format": "wav"})
    pieces = {}
    for part in job.stream():
        pieces[part["chunk_index"]] = base64.b64decode(part["audio_base64"])
        print(f"  chunk {part['chunk_index']}: {len(pieces[part['chunk_index']])} bytes")
    if pieces:
        (out / "stream.wav").write_bytes(b"".join(pieces[i] for i in sorted(pieces)))
        print(f"  wrote {out / 'stream.wav'} ({len(pieces)} chunks)")
    print(f"  final: {raw_status(job)['status']}")

    # 3. cancel: a long job, cancelled while queued or running.
    print("run + cancel ...")
    job = endpoint.run({"transcript": " ".join([text] * 20), "ref_audio": args.voice,
                        "chunk_method": "word", "chunk_max_word_num": 40})
    time.sleep(2)
    print(f"  cancel: {job.cancel()}")
    print(f"  status after cancel: {raw_status(job)['status']}")

    # 4. run_sync: one call, waits for the result (the SDK polls past /runsync's own wait).
    #    On FAILED the SDK returns None; use run() + raw_status() to read the error.
    print("run_sync ...")
    output = endpoint.run_sync({"transcript": "Short and synchronous.", "ref_audio": args.voice,
                                "output_format": "wav"}, timeout=300)
    if output is None:
        sys.exit("  run_sync: the job failed (run it with run() to see the error)")
    write_audio(out / "run_sync.wav", output)

    # 5. health check job (answers once the worker has loaded the model).
    print("health_check job ...")
    print(f"  {endpoint.run_sync({'health_check': True}, timeout=120)}")

    # 6. An OpenAI route as a plain queue job: the input RunPod's /openai/v1 gateway produces.
    #    Binary answers (speech) come back as {"data_b64", "content_type", "size_bytes"}.
    print("OpenAI route as a job (openai_route + openai_input) ...")
    output = endpoint.run_sync({"openai_route": "/v1/audio/speech",
                                "openai_input": {"model": "higgs-audio-v2-generation-3B-base", "voice": args.voice,
                                                 "input": "Mind the gap.", "response_format": "mp3"}}, timeout=300)
    if output is None:
        sys.exit("  openai_route job failed (run it with run() to see the error)")
    (out / "openai_job_speech.mp3").write_bytes(base64.b64decode(output["data_b64"]))
    print(f"  wrote {out / 'openai_job_speech.mp3'} ({output['size_bytes']} bytes, {output['content_type']})")

    if args.skip_openai:
        return
    openai_base = os.environ.get("RUNPOD_OPENAI_BASE_URL")
    if openai_base is None:
        if "api.runpod.ai" not in runpod.endpoint_url_base:
            print("OpenAI passthrough: skipped (set RUNPOD_OPENAI_BASE_URL; the local test API has no /openai/v1)")
            return
        openai_base = f"https://api.runpod.ai/v2/{endpoint_id}/openai/v1"
    openai_passthrough(openai_base, runpod.api_key, args.voice, out)


def openai_passthrough(base_url, api_key, voice, out):
    """The endpoint's OpenAI passthrough with the official openai client."""
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=api_key)
    print(f"OpenAI passthrough at {base_url}")
    print(f"  models: {[m.id for m in client.models.list().data]}")

    # Chat completions with audio output: JSON, the passthrough's documented shape.
    chat = client.chat.completions.create(
        model="higgs-audio-v2-generation-3B-base",
        messages=[{"role": "user", "content": "Welcome to the harbour tour."}],
        modalities=["text", "audio"],
        audio={"voice": voice, "format": "wav"},
    )
    (out / "chat.wav").write_bytes(base64.b64decode(chat.choices[0].message.audio.data))
    print(f"  chat: wrote {out / 'chat.wav'}")

    # Speech: the worker answers binary audio as {"data_b64", "content_type", "size_bytes"} inside a
    # queue job; whether RunPod's gateway turns that back into audio bytes is unverified, so read the
    # raw body and handle both.
    raw = client.audio.speech.with_raw_response.create(
        model="higgs-audio-v2-generation-3B-base", voice=voice, input="Mind the gap.",
        response_format="mp3")
    body = raw.content
    try:
        wrapped = json.loads(body)
    except ValueError:
        wrapped = None
    if isinstance(wrapped, dict) and "data_b64" in wrapped:
        body = base64.b64decode(wrapped["data_b64"])
    elif isinstance(wrapped, dict) and isinstance(wrapped.get("output"), dict) and "data_b64" in wrapped["output"]:
        body = base64.b64decode(wrapped["output"]["data_b64"])
    (out / "speech.mp3").write_bytes(body)
    print(f"  speech: wrote {out / 'speech.mp3'} ({len(body)} bytes, content-type {raw.headers.get('content-type')})")


if __name__ == "__main__":
    main()
