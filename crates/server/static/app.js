// higgs-serve speech playground: plain JS, no dependencies, same-origin API calls only.
//
// Streaming: POST /v1/audio/speech with response_format "pcm" (16-bit little-endian mono at the
// server's sample rate, from /health) and stream_format "audio" (a chunked body, encoded as it is
// generated). Each chunk is scheduled on a Web Audio context as it arrives; when the body ends the
// same samples become a WAV file for the <audio> element and the download link.
//
// State for tests and tools: #output carries data-state (idle | streaming | done | stopped | error),
// data-bytes (PCM bytes received) and data-first-audio-ms.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "higgs-serve.api-key";

const state = {
  key: null,
  sampleRate: 24000,
  voices: [],
  busy: false,
  controller: null,
  audioUrl: null,
  keyPrompt: null,
  wave: null,
};

try {
  state.key = window.localStorage.getItem(KEY_STORAGE) || null;
} catch (_) {
  /* storage may be disabled */
}

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// ---------------------------------------------------------------- API key

function updateKeyButton() {
  $("key-button").textContent = state.key ? "API key ✓" : "API key";
  $("key-button").setAttribute("aria-label", state.key ? "API key (set)" : "API key (not set)");
}

// Opens the key dialog; resolves true when a key was saved, false on cancel. Concurrent 401s
// share one dialog.
function askKey(message) {
  if (state.keyPrompt) return state.keyPrompt;
  const dialog = $("key-dialog");
  const err = $("key-error");
  err.hidden = !message;
  err.textContent = message || "";
  $("key-input").value = state.key || "";
  state.keyPrompt = new Promise((resolve) => {
    const done = (saved) => {
      dialog.removeEventListener("close", onClose);
      state.keyPrompt = null;
      resolve(saved);
    };
    const onClose = () => done(dialog.returnValue === "save");
    dialog.addEventListener("close", onClose);
  });
  dialog.returnValue = "";
  dialog.showModal();
  $("key-input").focus();
  return state.keyPrompt;
}

function setupKeyDialog() {
  const dialog = $("key-dialog");
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) {
      $("key-error").textContent = "Enter a key, or cancel.";
      $("key-error").hidden = false;
      $("key-input").focus();
      return;
    }
    state.key = key;
    try {
      if ($("key-remember").checked) window.localStorage.setItem(KEY_STORAGE, key);
      else window.localStorage.removeItem(KEY_STORAGE);
    } catch (_) {
      /* storage may be disabled */
    }
    updateKeyButton();
    dialog.close("save");
  });
  $("key-cancel").addEventListener("click", () => dialog.close("cancel"));
  $("key-forget").addEventListener("click", () => {
    state.key = null;
    try {
      window.localStorage.removeItem(KEY_STORAGE);
    } catch (_) {
      /* storage may be disabled */
    }
    $("key-input").value = "";
    updateKeyButton();
    dialog.close("cancel");
  });
  $("key-button").addEventListener("click", async () => {
    if (await askKey(null)) loadVoices();
  });
  updateKeyButton();
}

// ---------------------------------------------------------------- API calls

async function errorMessage(res) {
  try {
    const body = await res.json();
    const e = body.error || {};
    let msg = typeof e === "string" ? e : e.message || `HTTP ${res.status}`;
    if (Array.isArray(e.suggestions) && e.suggestions.length) msg += ` (try: ${e.suggestions.join(", ")})`;
    return msg;
  } catch (_) {
    return `HTTP ${res.status} ${res.statusText}`;
  }
}

// fetch with the Bearer key; a 401 asks for the key and retries once it is given.
async function api(path, opts = {}) {
  for (;;) {
    const headers = new Headers(opts.headers || {});
    if (state.key) headers.set("Authorization", `Bearer ${state.key}`);
    const res = await fetch(path, { ...opts, headers });
    if (res.status === 401) {
      const hadKey = !!state.key;
      const saved = await askKey(hadKey ? "The server refused this key. Check it and try again." : null);
      if (saved) continue;
      throw new ApiError("This server needs an API key: set it with the API key button.", 401);
    }
    if (!res.ok) throw new ApiError(await errorMessage(res), res.status);
    return res;
  }
}

// ---------------------------------------------------------------- server status

async function loadHealth() {
  const pill = $("server-status");
  try {
    const res = await fetch("/health");
    const h = await res.json();
    if (h.sample_rate) state.sampleRate = h.sample_rate;
    const ready = h.status === "healthy";
    pill.dataset.state = ready ? "ok" : "loading";
    pill.textContent = ready ? `Ready · ${h.model || "model"} on ${h.device || "?"}` : `Model ${h.status}…`;
    pill.title = (h.model_info && h.model_info.description) || "";
    if (!ready && h.status !== "stopping") setTimeout(loadHealth, 2000);
  } catch (_) {
    pill.dataset.state = "down";
    pill.textContent = "Server unreachable";
    setTimeout(loadHealth, 5000);
  }
}

// ---------------------------------------------------------------- voices

const NO_VOICE = "";

function renderVoices(select) {
  const sel = $("voice");
  const previous = select !== undefined ? select : sel.value;
  sel.textContent = "";
  const none = new Option("No reference voice (model picks one)", NO_VOICE);
  sel.add(none);
  for (const v of state.voices) sel.add(new Option(v.name, v.name));
  const names = state.voices.map((v) => v.name);
  if (names.includes(previous)) sel.value = previous;
  else sel.value = names.length ? names[0] : NO_VOICE;
  describeVoice();
}

function describeVoice() {
  const name = $("voice").value;
  const v = state.voices.find((x) => x.name === name);
  $("voice-desc").textContent = v
    ? `“${v.description}”`
    : state.voices.length
      ? "The model chooses a voice; describe it in the scene if you like."
      : "No voices in the library yet: add one below.";
  $("delete-voice").disabled = !v || state.busy;
}

async function loadVoices(select) {
  try {
    const res = await api("/v1/audio/voices");
    const body = await res.json();
    state.voices = (body.data || []).map((v) => ({ name: v.name, description: v.description || "" }));
    state.voices.sort((a, b) => a.name.localeCompare(b.name));
    renderVoices(select);
  } catch (e) {
    state.voices = [];
    renderVoices();
    $("voice-desc").textContent = `Could not load voices: ${e.message}`;
  }
}

function readAsBase64(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => {
      const s = String(r.result);
      resolve(s.slice(s.indexOf(",") + 1));
    };
    r.onerror = () => reject(r.error || new Error("could not read the file"));
    r.readAsDataURL(file);
  });
}

async function uploadVoice(e) {
  e.preventDefault();
  const status = $("upload-status");
  const name = $("voice-name").value.trim();
  const transcript = $("voice-transcript").value.trim();
  const file = $("voice-file").files[0];
  let problem = null;
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) problem = ["voice-name", "Name: 1–64 letters, digits, _ or -."];
  else if (!file) problem = ["voice-file", "Choose a recording."];
  else if (!transcript) problem = ["voice-transcript", "Type what the recording says."];
  if (problem) {
    status.textContent = problem[1];
    $(problem[0]).setAttribute("aria-invalid", "true");
    $(problem[0]).focus();
    return;
  }
  for (const id of ["voice-name", "voice-file", "voice-transcript"]) $(id).removeAttribute("aria-invalid");
  $("upload").disabled = true;
  status.textContent = `Uploading ${file.name}…`;
  try {
    const audio_base64 = await readAsBase64(file);
    await api("/v1/audio/voices", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name, transcript, audio_base64 }),
    });
    status.textContent = `Voice “${name}” added and selected.`;
    $("upload-form").reset();
    await loadVoices(name);
  } catch (err) {
    status.textContent = `Upload failed: ${err.message}`;
  } finally {
    $("upload").disabled = false;
  }
}

async function deleteVoice() {
  const name = $("voice").value;
  if (!name || !window.confirm(`Delete the voice “${name}” from the server?`)) return;
  try {
    await api(`/v1/audio/voices/${encodeURIComponent(name)}`, { method: "DELETE" });
    $("voice-desc").textContent = `Deleted “${name}”.`;
    await loadVoices(NO_VOICE);
  } catch (e) {
    $("voice-desc").textContent = `Could not delete: ${e.message}`;
  }
}

// ---------------------------------------------------------------- playback and waveform

// Schedules PCM chunks back to back on a Web Audio context as they arrive.
class StreamPlayer {
  constructor(rate) {
    this.rate = rate;
    this.sources = [];
    this.next = 0;
    try {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      this.ctx = Ctx ? new Ctx() : null;
      if (this.ctx && this.ctx.state === "suspended") this.ctx.resume().catch(() => {});
    } catch (_) {
      this.ctx = null; // no audio output: the file still comes at the end
    }
  }

  push(samples) {
    if (!this.ctx || !samples.length) return;
    const buf = this.ctx.createBuffer(1, samples.length, this.rate);
    buf.copyToChannel(samples, 0);
    const src = this.ctx.createBufferSource();
    src.buffer = buf;
    src.connect(this.ctx.destination);
    const now = this.ctx.currentTime;
    // A small lead absorbs network jitter; after an underrun, start again with the lead.
    if (this.next < now + 0.02) this.next = now + 0.15;
    src.start(this.next);
    this.next += buf.duration;
    this.sources.push(src);
    src.onended = () => {
      const i = this.sources.indexOf(src);
      if (i >= 0) this.sources.splice(i, 1);
    };
  }

  stop() {
    for (const s of this.sources) {
      try {
        s.stop();
      } catch (_) {
        /* not started */
      }
    }
    this.sources = [];
    if (this.ctx) this.ctx.close().catch(() => {});
    this.ctx = null;
  }

  // Closes the context once everything scheduled has played.
  release() {
    if (!this.ctx) return;
    const left = Math.max(0, this.next - this.ctx.currentTime);
    const ctx = this.ctx;
    setTimeout(() => ctx.close().catch(() => {}), left * 1000 + 250);
    this.ctx = null;
  }
}

class Waveform {
  constructor(canvas, rate) {
    this.canvas = canvas;
    this.block = Math.max(1, Math.round(rate / 100)); // one peak per 10 ms
    this.peaks = [];
    this.acc = 0;
    this.n = 0;
    this.pending = false;
    this.draw();
  }

  push(samples) {
    for (let i = 0; i < samples.length; i++) {
      const a = Math.abs(samples[i]);
      if (a > this.acc) this.acc = a;
      if (++this.n === this.block) {
        this.peaks.push(this.acc);
        this.acc = 0;
        this.n = 0;
      }
    }
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        this.draw();
      });
    }
  }

  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(c.clientWidth * dpr));
    const h = Math.max(1, Math.round(c.clientHeight * dpr));
    if (c.width !== w || c.height !== h) {
      c.width = w;
      c.height = h;
    }
    const g = c.getContext("2d");
    g.clearRect(0, 0, w, h);
    const css = getComputedStyle(document.documentElement);
    const step = 3 * dpr;
    const bars = Math.floor(w / step);
    const mid = h / 2;
    if (!this.peaks.length) {
      g.fillStyle = css.getPropertyValue("--wave-dim").trim() || "#ccc";
      g.fillRect(0, mid - dpr / 2, w, dpr);
      return;
    }
    g.fillStyle = css.getPropertyValue("--wave").trim() || "#10a37f";
    // Fits the whole take: several 10 ms peaks per bar once it is longer than the canvas.
    const per = Math.max(1, Math.ceil(this.peaks.length / bars));
    for (let b = 0; b * per < this.peaks.length; b++) {
      let p = 0;
      for (let i = b * per; i < Math.min(this.peaks.length, (b + 1) * per); i++) p = Math.max(p, this.peaks[i]);
      const bh = Math.max(dpr, p * (h - 4 * dpr));
      g.fillRect(b * step, mid - bh / 2, step - dpr, bh);
    }
  }
}

function pcm16ToFloat(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.byteLength >> 1);
  for (let i = 0; i < out.length; i++) out[i] = view.getInt16(i * 2, true) / 32768;
  return out;
}

function wavFile(chunks, rate) {
  let len = 0;
  for (const c of chunks) len += c.byteLength;
  const header = new DataView(new ArrayBuffer(44));
  const text = (off, s) => [...s].forEach((ch, i) => header.setUint8(off + i, ch.charCodeAt(0)));
  text(0, "RIFF");
  header.setUint32(4, 36 + len, true);
  text(8, "WAVE");
  text(12, "fmt ");
  header.setUint32(16, 16, true);
  header.setUint16(20, 1, true); // PCM
  header.setUint16(22, 1, true); // mono
  header.setUint32(24, rate, true);
  header.setUint32(28, rate * 2, true);
  header.setUint16(32, 2, true);
  header.setUint16(34, 16, true);
  text(36, "data");
  header.setUint32(40, len, true);
  return new Blob([header.buffer, ...chunks], { type: "audio/wav" });
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(2)} MB`;
}

// ---------------------------------------------------------------- generation

function setBusy(busy) {
  state.busy = busy;
  $("generate").disabled = busy;
  $("generate").textContent = busy ? "Generating…" : "Generate";
  $("stop").disabled = !busy;
  $("voice").disabled = busy;
  describeVoice();
}

function showError(msg) {
  const el = $("error");
  el.textContent = msg || "";
  el.hidden = !msg;
}

function numberField(id, name, body, integer) {
  const raw = $(id).value.trim();
  if (!raw) return;
  const v = Number(raw);
  if (!Number.isFinite(v) || (integer && !Number.isInteger(v))) throw new ApiError(`${name} must be ${integer ? "a whole number" : "a number"}.`, 0);
  body[name] = v;
}

async function generate() {
  if (state.busy) return;
  const text = $("input-text").value.trim();
  showError(null);
  if (!text) {
    showError("Type some text to speak.");
    $("input-text").focus();
    return;
  }
  const body = {
    model: "higgs-audio-v2",
    input: text,
    voice: $("voice").value,
    response_format: "pcm",
    stream_format: "audio",
  };
  const scene = $("scene").value.trim();
  if (scene) body.instructions = scene;
  try {
    numberField("max-new-tokens", "max_new_tokens", body, true);
    numberField("temperature", "temperature", body, false);
    numberField("top-p", "top_p", body, false);
    numberField("top-k", "top_k", body, true);
    numberField("seed", "seed", body, true);
  } catch (e) {
    $("advanced").open = true;
    showError(e.message);
    return;
  }

  const out = $("output");
  const progress = $("progress");
  const player = $("player");
  const download = $("download");
  player.pause();
  player.removeAttribute("src");
  player.load();
  download.hidden = true;
  if (state.audioUrl) URL.revokeObjectURL(state.audioUrl);
  state.audioUrl = null;
  out.dataset.state = "streaming";
  out.dataset.bytes = "0";
  delete out.dataset.firstAudioMs;
  $("output-meta").textContent = "";

  const rate = state.sampleRate;
  // Created inside the click/submit handler: browsers only let a user gesture start audio.
  const live = new StreamPlayer(rate);
  const wave = new Waveform($("wave"), rate);
  state.wave = wave;
  const chunks = [];
  let bytes = 0;
  let carry = null;
  let firstMs = null;
  const t0 = performance.now();
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  progress.textContent = "Waiting for the first audio…";

  const report = (final) => {
    const secs = (bytes / 2 / rate).toFixed(2);
    const first = firstMs === null ? "" : ` · first audio after ${(firstMs / 1000).toFixed(2)} s`;
    progress.textContent = `${final || "Streaming"}: ${secs} s of audio · ${fmtBytes(bytes)} received${first}`;
  };

  let outcome = "done";
  try {
    const res = await api("/v1/audio/speech", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (!value || !value.byteLength) continue;
      let data = value;
      if (carry) {
        data = new Uint8Array(carry.byteLength + value.byteLength);
        data.set(carry, 0);
        data.set(value, carry.byteLength);
        carry = null;
      }
      if (data.byteLength % 2) {
        carry = data.slice(data.byteLength - 1);
        data = data.subarray(0, data.byteLength - 1);
      }
      if (!data.byteLength) continue;
      const copy = data.slice(); // own buffer: the reader may reuse its chunk
      chunks.push(copy);
      bytes += copy.byteLength;
      if (firstMs === null) {
        firstMs = performance.now() - t0;
        out.dataset.firstAudioMs = String(Math.round(firstMs));
      }
      out.dataset.bytes = String(bytes);
      const samples = pcm16ToFloat(copy);
      live.push(samples);
      wave.push(samples);
      report();
    }
  } catch (e) {
    if (e.name === "AbortError") outcome = "stopped";
    else {
      outcome = "error";
      showError(e.message);
    }
  } finally {
    state.controller = null;
    setBusy(false);
  }

  if (outcome === "stopped") live.stop();
  else live.release();
  if (bytes) {
    const blob = wavFile(chunks, rate);
    state.audioUrl = URL.createObjectURL(blob);
    player.src = state.audioUrl;
    download.href = state.audioUrl;
    const voice = body.voice || "default";
    download.download = `higgs-${voice}-${new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19)}.wav`;
    download.hidden = false;
    $("output-meta").textContent = `${voice} · ${rate} Hz · ${fmtBytes(blob.size)} WAV`;
  }
  const words = { done: "Done", stopped: "Stopped", error: "Failed" };
  if (bytes || outcome === "done") report(words[outcome]);
  else if (outcome === "stopped") progress.textContent = "Stopped before any audio arrived.";
  else progress.textContent = "No audio.";
  out.dataset.state = outcome;
}

// ---------------------------------------------------------------- wiring

function updateCount() {
  const n = [...$("input-text").value].length;
  $("char-count").textContent = `${n.toLocaleString()} character${n === 1 ? "" : "s"}`;
}

function init() {
  setupKeyDialog();
  $("speech-form").addEventListener("submit", (e) => {
    e.preventDefault();
    generate();
  });
  $("input-text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      generate();
    }
  });
  $("input-text").addEventListener("input", updateCount);
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("voice").addEventListener("change", describeVoice);
  $("delete-voice").addEventListener("click", deleteVoice);
  $("upload-form").addEventListener("submit", uploadVoice);
  window.addEventListener("resize", () => state.wave.draw());
  updateCount();
  state.wave = new Waveform($("wave"), state.sampleRate);
  loadHealth();
  loadVoices();
}

document.addEventListener("DOMContentLoaded", init);
