"""Real clients against a running `higgs-serve serve --demo`: the official openai package
(speech with stream_to_file in every format, chat completions with and without streaming), curl,
and plain HTTP for /generate; every audio file is checked with an independent decoder (ffprobe)."""

import base64
import json
import os
import subprocess
import wave
from pathlib import Path

import urllib.error
import urllib.request
import openai
import pytest

URL = os.environ["HIGGS_E2E_URL"]
KEY = os.environ["HIGGS_E2E_KEY"]
WORK = Path(os.environ["HIGGS_E2E_WORK"])
EXTRA = {"temperature": 0, "ras_win_len": 0, "max_new_tokens": 40}


def post_json(path, body):
    req = urllib.request.Request(URL + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def client(key=KEY):
    return openai.OpenAI(base_url=URL + "/v1", api_key=key)


def probe(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,sample_rate,channels:format=duration",
         "-of", "json", str(path)],
        check=True, capture_output=True, text=True).stdout
    j = json.loads(out)
    s = j["streams"][0]
    dur = j["format"].get("duration")
    if dur is None:
        # A streamed file (e.g. FLAC written as it is generated) has no length in its header:
        # decode it to measure.
        wav = Path(str(path) + ".decoded.wav")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(path), str(wav)], check=True)
        with wave.open(str(wav)) as w:
            dur = w.getnframes() / w.getframerate()
    return s["codec_name"], int(s["sample_rate"]), int(s["channels"]), float(dur)


@pytest.mark.parametrize("fmt,codec", [("mp3", "mp3"), ("opus", "opus"), ("flac", "flac"), ("wav", "pcm_s16le")])
def test_speech_stream_to_file_every_format(fmt, codec):
    path = WORK / f"speech.{fmt}"
    with client().audio.speech.with_streaming_response.create(
            model="higgs", voice="belinda", input="Hello from the official client.", response_format=fmt,
            extra_body=EXTRA) as r:
        r.stream_to_file(path)
    got_codec, rate, ch, dur = probe(path)
    assert got_codec == codec
    # Opus decoders report 48 kHz output; the stream is encoded from 24 kHz input.
    assert rate in ((24000,) if fmt != "opus" else (24000, 48000))
    assert ch == 1 and dur > 0


def test_speech_pcm_is_raw_s16le():
    r = client().audio.speech.create(model="higgs", voice="alloy", input="Raw samples.", response_format="pcm",
                                     extra_body=EXTRA)
    data = r.read()
    assert len(data) > 0 and len(data) % 2 == 0
    # ffmpeg reads it as s16le 24 kHz mono.
    raw = WORK / "speech.pcm"
    raw.write_bytes(data)
    wav = WORK / "pcm.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "s16le", "-ar", "24000", "-ac", "1", "-i", str(raw), str(wav)],
                   check=True)
    with wave.open(str(wav)) as w:
        assert w.getnframes() == len(data) // 2


def test_wrong_key_and_unknown_voice_raise_typed_errors():
    with pytest.raises(openai.AuthenticationError):
        client("wrong").audio.speech.create(model="higgs", voice="alloy", input="x", extra_body=EXTRA)
    with pytest.raises(openai.NotFoundError) as e:
        client().audio.speech.create(model="higgs", voice="nobody", input="x", extra_body=EXTRA)
    assert "belinda" in str(e.value)
    with pytest.raises(openai.BadRequestError):
        client().audio.speech.create(model="higgs", voice="alloy", input="x", speed=5.0, extra_body=EXTRA)


def test_models_list():
    models = client().models.list()
    assert models.data[0].object == "model"


def reference_messages():
    ref = base64.b64encode((Path(os.environ.get("HIGGS_FIXTURES", "../shared/fixtures")) / "../voices/en_man.wav").read_bytes()).decode()
    return [
        {"role": "system", "content": "Generate audio following instruction."},
        {"role": "user", "content": "This is the reference."},
        {"role": "assistant", "content": [{"type": "input_audio", "input_audio": {"data": ref, "format": "wav"}}]},
        {"role": "user", "content": "Please say this sentence."},
    ]


def test_chat_completion_with_audio():
    r = client().chat.completions.create(model="higgs", messages=reference_messages(), modalities=["text", "audio"],
                                         audio={"voice": "alloy", "format": "wav"}, extra_body=EXTRA)
    path = WORK / "chat.wav"
    path.write_bytes(base64.b64decode(r.choices[0].message.audio.data))
    codec, rate, ch, dur = probe(path)
    assert (codec, rate, ch) == ("pcm_s16le", 24000, 1) and dur > 0
    assert r.usage.total_tokens > 0


def test_chat_completion_streaming():
    stream = client().chat.completions.create(model="higgs", messages=reference_messages(), modalities=["text", "audio"],
                                              audio={"voice": "alloy", "format": "pcm16"}, stream=True,
                                              stream_options={"include_usage": True}, extra_body=EXTRA)
    pcm = b""
    finish = None
    usage = None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            audio = getattr(c.delta, "audio", None)
            if audio:
                data = audio["data"] if isinstance(audio, dict) else audio.data
                pcm += base64.b64decode(data)
            finish = c.finish_reason or finish
    assert len(pcm) > 0 and len(pcm) % 2 == 0
    assert finish in ("stop", "length")
    assert usage is not None and usage.total_tokens > 0


def test_curl_speech_and_native_generate():
    out = WORK / "curl.wav"
    body = json.dumps({"model": "higgs", "input": "Curl says hi.", "voice": "en_man", "response_format": "wav", **EXTRA})
    subprocess.run(["curl", "-sf", "-o", str(out), "-H", f"Authorization: Bearer {KEY}", "-H", "Content-Type: application/json",
                    "-d", body, URL + "/v1/audio/speech"], check=True)
    assert probe(out)[0] == "pcm_s16le"
    status, j = post_json("/generate", {"transcript": "Native API.", "ref_audio": "belinda", "output_format": "flac", **EXTRA})
    assert status == 200, j
    assert j["success"] is True and j["sample_rate"] == 24000
    path = WORK / "generate.flac"
    path.write_bytes(base64.b64decode(j["audio_base64"]))
    codec, rate, ch, dur = probe(path)
    assert codec == "flac" and abs(dur - j["duration_seconds"]) < 0.01
    status, bad = post_json("/generate", {"transcript": "x", "ref_audio": "nobody"})
    assert status == 404 and bad["success"] is False and "belinda" in bad["voice_suggestions"]


def plain_messages():
    return [{"role": "user", "content": "Say this with the chosen voice."}]


def test_chat_uses_audio_voice_like_speech():
    def chat(voice):
        return client().chat.completions.create(model="higgs", messages=plain_messages(), modalities=["text", "audio"],
                                                audio={"voice": voice, "format": "wav"}, extra_body=EXTRA)
    library, builtin = chat("belinda"), chat("alloy")
    # The library voice's transcript and recording are in the prompt; a built-in name adds nothing.
    assert library.usage.prompt_tokens > builtin.usage.prompt_tokens
    assert library.choices[0].message.audio.data != builtin.choices[0].message.audio.data
    with pytest.raises(openai.NotFoundError) as e:
        chat("belindaa")
    # Suggestions are ranked by similarity to the name asked for.
    assert "belinda" in str(e.value)


def test_standard_openai_fields_are_accepted_and_n_above_one_refused():
    r = client().chat.completions.create(
        model="higgs", messages=plain_messages(), modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"},
        user="user-1", metadata={"team": "tts"}, store=False, frequency_penalty=0, presence_penalty=0, n=1,
        logprobs=False, response_format={"type": "text"}, parallel_tool_calls=False, service_tier="auto",
        extra_body=EXTRA)
    assert r.choices[0].message.audio.data
    speech = client().audio.speech.create(model="higgs", voice="alloy", input="Fields.", response_format="pcm",
                                          speed=1.0, extra_body={**EXTRA, "user": "user-1"})
    assert len(speech.read()) > 0
    with pytest.raises(openai.BadRequestError) as e:
        client().chat.completions.create(model="higgs", messages=plain_messages(), modalities=["text", "audio"],
                                         audio={"voice": "alloy", "format": "wav"}, n=2, extra_body=EXTRA)
    assert "n" in str(e.value)
    # `speed` is honoured (pitch-preserving time stretch): the same seeded request at 1.5 is 1/1.5 as long,
    # as a whole WAV and as streamed PCM; out of OpenAI's range [0.25, 4.0] it is still a 400 naming `speed`.
    seeded = {**EXTRA, "seed": 5}

    def wav_frames(speed):
        data = client().audio.speech.create(model="higgs", voice="alloy", input="Speed test.", response_format="wav",
                                            speed=speed, extra_body=seeded).read()
        path = WORK / f"speed-{speed}.wav"
        path.write_bytes(data)
        with wave.open(str(path)) as w:
            assert (w.getframerate(), w.getnchannels()) == (24000, 1)
            return w.getnframes(), w.readframes(w.getnframes())

    n1, _ = wav_frames(1.0)
    n15, frames15 = wav_frames(1.5)
    assert n1 > 0 and abs(n15 / n1 - 1 / 1.5) <= 0.05 / 1.5, (n1, n15)
    pcm15 = client().audio.speech.create(model="higgs", voice="alloy", input="Speed test.", response_format="pcm",
                                         speed=1.5, extra_body=seeded).read()
    assert pcm15 == frames15, "streamed pcm carries the whole wav's samples"
    with pytest.raises(openai.BadRequestError) as e:
        client().audio.speech.create(model="higgs", voice="alloy", input="x", speed=5.0, extra_body=EXTRA)
    assert "speed" in str(e.value) and "[0.25, 4.0]" in str(e.value)


def test_non_streamed_wav_has_true_sizes():
    raw = client().audio.speech.with_raw_response.create(model="higgs", voice="alloy", input="A whole file.",
                                                         response_format="wav", extra_body=EXTRA)
    data = raw.content
    assert int(raw.headers["content-length"]) == len(data)
    path = WORK / "sizes.wav"
    path.write_bytes(data)
    with wave.open(str(path)) as w:
        frames = w.getnframes()
        assert w.getframerate() == 24000 and w.getnchannels() == 1 and w.getsampwidth() == 2
    # RIFF size = file - 8; the data chunk holds exactly the frames the header announces.
    assert int.from_bytes(data[4:8], "little") == len(data) - 8
    assert 0 < frames and frames * 2 + 44 == len(data)
