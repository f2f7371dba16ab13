//! `higgs-serve bench`: drives the batching engine in-process with N concurrent requests and
//! reports per-stream speed, aggregate audio-seconds per second, real-time factor, time to first
//! audio (p50/p95) and memory. Method: all requests are submitted at once (closed loop over
//! `--requests`, at most `--concurrency` running); every request generates exactly
//! `--frames` audio frames (`ignore_eos`), so runs are comparable across checkpoints.

use anyhow::{Context, Result};
use clap::Args;
use higgs_engine::{
    start, EngineConfig, EngineParts, EnginePool, Event, GenerateRequest, GenerationParams,
    PoolMember, PoolPolicy, Prompting, RasParams, SamplingParams,
};
use higgs_text::{Message, Role};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::commands::common::{LoadArgs, Loaded};

#[derive(Args)]
pub struct BenchArgs {
    /// Model directory (in-process mode).
    #[arg(long, env = "MODEL_PATH", required_unless_present = "url")]
    model: Option<PathBuf>,
    /// Audio tokenizer directory (in-process mode).
    #[arg(long, env = "AUDIO_TOKENIZER_PATH", required_unless_present = "url")]
    codec: Option<PathBuf>,
    #[arg(long, env = "TOKENIZER_PATH")]
    tokenizer: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    device: crate::device::DeviceArg,
    #[arg(long, value_enum, default_value = "auto")]
    dtype: crate::device::DtypeArg,
    /// In-process mode: one engine per listed device behind one pool, as `serve --devices`
    /// (`cuda:0,cuda:1`, `cuda` = every visible GPU, `cpu,cpu`); `--concurrency` is then the total
    /// over the engines [default: one engine on --device].
    #[arg(long, value_parser = crate::device::parse_devices)]
    devices: Option<crate::device::DevicesArg>,
    /// Benchmark a RUNNING server instead (e.g. http://127.0.0.1:8000): streamed
    /// `/v1/audio/speech` requests in raw PCM; time to first audio = first body byte.
    #[arg(long)]
    url: Option<String>,
    /// API key for --url.
    #[arg(long, env = "HIGGS_API_KEY")]
    api_key: Option<String>,
    /// Comma-separated concurrency levels to run one after the other.
    #[arg(long, default_value = "1,8,32")]
    concurrency: String,
    /// Requests per level (default: equal to the concurrency).
    #[arg(long)]
    requests: Option<usize>,
    /// Audio frames per request (25 frames = 1 s of audio).
    #[arg(long, default_value_t = 100)]
    frames: usize,
    /// Text of every request.
    #[arg(
        long,
        default_value = "The quick brown fox jumps over the lazy dog, and the benchmark keeps on talking."
    )]
    text: String,
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// --url and --mix: library voice used by a third of the requests (others: no reference).
    #[arg(long)]
    voice: Option<String>,
    /// In-process mode: let requests end by EOS (no `ignore_eos`), as HTTP clients' requests do;
    /// `--frames` is then the `max_new_tokens` budget, not the exact length.
    #[arg(long)]
    eos: bool,
    /// In-process mode: the `--url` soak's workload without HTTP — requests end by EOS, lengths
    /// mixed (½, 1, 1½ × --frames), the reference text pipeline (as `/v1/audio/speech`), the
    /// library voice `--voice` on every third request, every eighth cancelled after its first
    /// audio. Implies `--eos`.
    #[arg(long)]
    mix: bool,
    /// In-process mode: voice library directory (for `--mix --voice NAME`).
    #[arg(long)]
    voices: Option<PathBuf>,
    #[command(flatten)]
    stream: super::common::StreamArgs,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(serde::Serialize)]
struct LevelResult {
    concurrency: usize,
    requests: usize,
    frames_per_request: usize,
    wall_s: f64,
    audio_s_total: f64,
    audio_s_per_s: f64,
    per_stream_frames_per_s_mean: f64,
    per_stream_rtf_mean: f64,
    ttfa_p50_ms: f64,
    ttfa_p95_ms: f64,
    forward_calls: u64,
    mean_batch: f64,
    /// Requests each engine finished over the level (`--devices`: how the pool spread them).
    per_engine_finished: Vec<u64>,
    /// Requests that failed (a model that ended its audio before the first frame, `no_audio`,
    /// is counted apart).
    failed: usize,
    no_audio: usize,
    /// `--mix`: requests the client hung up on after their first audio.
    cancelled_by_client: usize,
    rss_mb: f64,
    /// Engine thread time per phase over the level (seconds; see `EngineStats`).
    phase_forward_s: f64,
    phase_sample_s: f64,
    /// Audio worker's codec time (seconds; on its own thread unless HIGGS_CODEC_THREAD=0).
    phase_codec_s: f64,
    phase_step_s: f64,
    /// Forwards that carried prefill pieces: count, prompt positions, forward time (part of
    /// `phase_forward_s`).
    prefill_forward_calls: u64,
    prefill_positions: u64,
    phase_prefill_forward_s: f64,
    /// Per request (in submission order): RMS of each second of its audio. A fingerprint to
    /// compare the audio of two runs (e.g. codec thread on/off) without storing it.
    audio_rms_per_second: Vec<Vec<f32>>,
}

/// Sums of squares per second of audio, fed chunk by chunk.
#[derive(Default)]
struct RmsPerSecond {
    sums: Vec<f64>,
    counts: Vec<usize>,
    pos: usize,
}

impl RmsPerSecond {
    fn push(&mut self, samples: &[f32], sample_rate: usize) {
        for &x in samples {
            let sec = self.pos / sample_rate.max(1);
            if sec == self.sums.len() {
                self.sums.push(0.0);
                self.counts.push(0);
            }
            self.sums[sec] += f64::from(x) * f64::from(x);
            self.counts[sec] += 1;
            self.pos += 1;
        }
    }

    fn finish(&self) -> Vec<f32> {
        self.sums
            .iter()
            .zip(&self.counts)
            .map(|(s, &n)| (s / n.max(1) as f64).sqrt() as f32)
            .collect()
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}

pub fn run(a: BenchArgs) -> Result<()> {
    if a.url.is_some() {
        return run_http(&a);
    }
    let levels = parse_levels(&a.concurrency)?;
    let max_c = levels.iter().copied().max().unwrap_or(1);
    let t_load = Instant::now();
    let load = LoadArgs {
        model: a.model.clone().unwrap_or_default(),
        codec: a.codec.clone().unwrap_or_default(),
        tokenizer: a.tokenizer.clone(),
        device: a.device,
        dtype: a.dtype,
    };
    // Without --devices: one engine on --device (the GPU suite's numbers stay comparable).
    let devices = match &a.devices {
        Some(d) => crate::device::engine_devices(Some(d), a.device, crate::device::visible_gpus())?,
        None => Vec::new(),
    };
    let voices = match &a.voices {
        Some(d) => Some(std::sync::Arc::new(
            higgs_engine::voices::VoiceLibrary::open(d)
                .with_context(|| format!("opening the voice directory {}", d.display()))?,
        )),
        None => None,
    };
    let mut cfg = EngineConfig {
        max_running: max_c,
        // --mix: room for a voice reference in the prompt (as the soak's server, 1024).
        max_seq_len: if a.mix {
            (a.frames * 3 / 2 + 9 + 640).max(1024)
        } else {
            a.frames + 256
        },
        max_queue: a.requests.unwrap_or(max_c).max(max_c) * 2,
        ..Default::default()
    };
    a.stream.apply(&mut cfg)?;
    let start_one = |label: usize, loaded: Loaded| {
        let Loaded {
            model,
            codec,
            tokenizer,
        } = loaded;
        let cfg = EngineConfig {
            label: label.to_string(),
            ..cfg.clone()
        };
        let parts = EngineParts {
            model,
            codec,
            tokenizer,
            voices: voices.clone(),
        };
        anyhow::Ok(start(cfg, parts)?.0)
    };
    let (engine, device) = if devices.is_empty() {
        let loaded = load.load()?;
        let device = format!("{:?}", loaded.model.device());
        (
            EnginePool::single(start_one(0, loaded)?, device.clone()),
            device,
        )
    } else {
        let mut members = Vec::new();
        for (i, d) in devices.iter().enumerate() {
            let h = start_one(i, load.load_on(crate::device::engine_device(*d)?)?)?;
            members.push(PoolMember {
                device: d.to_string(),
                engine: Ok(h),
            });
        }
        let pool = EnginePool::new(members, PoolPolicy::default())?;
        (pool, crate::device::join(&devices))
    };
    let load_s = t_load.elapsed().as_secs_f64();
    let t_warm = Instant::now();
    if !engine.wait_ready(Duration::from_secs(600)) {
        anyhow::bail!("the engine stopped during its warm-up (see the log above)");
    }
    let warmup_s = t_warm.elapsed().as_secs_f64();
    eprintln!("loaded in {load_s:.2}s on {device}; engine ready after a {warmup_s:.2}s warm-up");
    let make = |i: usize| GenerateRequest {
        prompting: if a.mix {
            let m = mix_item(a.frames, i);
            Prompting::Script {
                transcript: a.text.clone(),
                voices: match (&a.voice, m.voice) {
                    (Some(v), true) => vec![higgs_text::VoiceSpec::Reference(v.clone())],
                    _ => Vec::new(),
                },
                uploads: Vec::new(),
                scene_prompt: None,
                ref_audio_in_system_message: false,
                chunking: Default::default(),
                chunk_buffer_size: None,
            }
        } else {
            Prompting::Messages {
                messages: vec![
                    Message::text(Role::System, "Generate audio following instruction."),
                    Message::text(Role::User, a.text.clone()),
                ],
                clips: vec![],
            }
        },
        params: GenerationParams {
            sampling: SamplingParams {
                temperature: a.temperature,
                top_k: Some(50),
                top_p: 0.95,
            },
            ras: RasParams {
                win_len: 7,
                max_repeat: 2,
            },
            // AUDIO_INIT + frames + the 7-frame delay tail and the BOS/EOS columns.
            max_new_tokens: if a.mix {
                mix_item(a.frames, i).max_new_tokens
            } else {
                a.frames + 9
            },
            seed: Some(i as u64),
            ignore_eos: !a.eos && !a.mix,
        },
        force_audio: true,
        timeout: None,
        request_id: None,
    };
    let mut results = Vec::new();
    for &c in &levels {
        let n = a.requests.unwrap_or(c);
        let before = engine.stats();
        let before_each = engine.statuses();
        let t0 = Instant::now();
        // A closed loop: at most `c` in flight; the engine queues the rest.
        let mut handles = Vec::new();
        let sem = std::sync::Arc::new((std::sync::Mutex::new(0usize), std::sync::Condvar::new()));
        for i in 0..n {
            {
                let (lock, cv) = &*sem;
                let mut inflight = lock.lock().map_err(|_| anyhow::anyhow!("lock poisoned"))?;
                while *inflight >= c {
                    inflight = cv
                        .wait(inflight)
                        .map_err(|_| anyhow::anyhow!("lock poisoned"))?;
                }
                *inflight += 1;
            }
            let mut stream = engine.submit(make(i))?;
            let sem = sem.clone();
            let sample_rate = engine.sample_rate();
            let cancel = a.mix && mix_item(a.frames, i).cancel;
            handles.push(std::thread::spawn(move || {
                let start = Instant::now();
                let (mut first, mut frames, mut ok, mut no_audio) = (None, 0usize, false, false);
                let mut rms = RmsPerSecond::default();
                while let Some(e) = stream.next_blocking() {
                    match e {
                        Event::Audio {
                            frames: f, samples, ..
                        } => {
                            first.get_or_insert(start.elapsed());
                            frames += f;
                            rms.push(&samples, sample_rate);
                            if cancel {
                                // The client hangs up after its first audio (counted as done).
                                ok = true;
                                break;
                            }
                        }
                        Event::Finished { .. } => ok = true,
                        Event::Failed(higgs_engine::GenerationError::NoAudio(_)) => no_audio = true,
                        Event::Failed(e) => eprintln!("request failed: {e}"),
                        _ => {}
                    }
                }
                drop(stream);
                let (lock, cv) = &*sem;
                if let Ok(mut g) = lock.lock() {
                    *g -= 1;
                }
                cv.notify_one();
                (
                    ok,
                    frames,
                    first.unwrap_or(Duration::ZERO),
                    start.elapsed(),
                    rms.finish(),
                    no_audio,
                )
            }));
        }
        let outs: Vec<_> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
        let wall = t0.elapsed().as_secs_f64();
        // An engine publishes its counters after the step that ended its last request: wait for
        // every request of the level to be counted (briefly), so the per-engine split is whole.
        let ended = |s: &higgs_engine::EngineStats| {
            s.requests_finished + s.requests_failed + s.requests_cancelled
        };
        let settle = Instant::now() + Duration::from_secs(2);
        while ended(&engine.stats()) < ended(&before) + n as u64 && Instant::now() < settle {
            std::thread::sleep(Duration::from_millis(5));
        }
        let after = engine.stats();
        let per_engine_finished = engine
            .statuses()
            .iter()
            .zip(&before_each)
            .map(|(a, b)| a.stats.requests_finished - b.stats.requests_finished)
            .collect();
        let frames_total: usize = outs.iter().map(|o| o.1).sum();
        let audio_s = frames_total as f64 / 25.0;
        let mut ttfa: Vec<f64> = outs.iter().map(|o| o.2.as_secs_f64() * 1e3).collect();
        let per_stream: Vec<f64> = outs
            .iter()
            .map(|o| o.1 as f64 / o.3.as_secs_f64().max(1e-9))
            .collect();
        let calls = after.forward_calls - before.forward_calls;
        let seqs: u64 = after
            .batch_sizes
            .iter()
            .map(|(b, n)| *b as u64 * n)
            .sum::<u64>()
            - before
                .batch_sizes
                .iter()
                .map(|(b, n)| *b as u64 * n)
                .sum::<u64>();
        let r = LevelResult {
            concurrency: c,
            requests: n,
            frames_per_request: a.frames,
            wall_s: wall,
            audio_s_total: audio_s,
            audio_s_per_s: audio_s / wall,
            per_stream_frames_per_s_mean: per_stream.iter().sum::<f64>()
                / per_stream.len().max(1) as f64,
            per_stream_rtf_mean: per_stream.iter().map(|f| f / 25.0).sum::<f64>()
                / per_stream.len().max(1) as f64,
            ttfa_p50_ms: percentile(&mut ttfa, 0.5),
            ttfa_p95_ms: percentile(&mut ttfa, 0.95),
            forward_calls: calls,
            mean_batch: seqs as f64 / calls.max(1) as f64,
            per_engine_finished,
            failed: outs.iter().filter(|o| !o.0 && !o.5).count(),
            no_audio: outs.iter().filter(|o| o.5).count(),
            cancelled_by_client: if a.mix {
                (0..n).filter(|&i| mix_item(a.frames, i).cancel).count()
            } else {
                0
            },
            rss_mb: higgs_service::health::rss_mb().unwrap_or(f64::NAN),
            phase_forward_s: after.forward_seconds - before.forward_seconds,
            phase_sample_s: after.sample_seconds - before.sample_seconds,
            phase_codec_s: after.codec_seconds - before.codec_seconds,
            phase_step_s: after.step_seconds - before.step_seconds,
            prefill_forward_calls: after.prefill_forward_calls - before.prefill_forward_calls,
            prefill_positions: after.prefill_positions - before.prefill_positions,
            phase_prefill_forward_s: after.prefill_forward_seconds - before.prefill_forward_seconds,
            audio_rms_per_second: outs.iter().map(|o| o.4.clone()).collect(),
        };
        println!(
            "concurrency {:4}: {:7.2} audio-s/s, per stream {:7.1} frames/s ({:.2}x real time), TTFA p50 {:7.1} ms p95 {:7.1} ms, mean batch {:.1}, {} failed; engine time: forward {:.2} s (prefill forwards {} of {} positions: {:.2} s), sampling {:.2} s, codec {:.2} s, steps {:.2} s",
            c,
            r.audio_s_per_s,
            r.per_stream_frames_per_s_mean,
            r.per_stream_rtf_mean,
            r.ttfa_p50_ms,
            r.ttfa_p95_ms,
            r.mean_batch,
            r.failed,
            r.phase_forward_s,
            r.prefill_forward_calls,
            r.prefill_positions,
            r.phase_prefill_forward_s,
            r.phase_sample_s,
            r.phase_codec_s,
            r.phase_step_s
        );
        if engine.len() > 1 {
            println!(
                "  {} engines ({device}): requests finished per engine {:?}",
                engine.len(),
                r.per_engine_finished
            );
        }
        results.push(r);
    }
    if let Some(p) = &a.json {
        let doc = serde_json::json!({"device": device, "engines": engine.len(), "load_s": load_s, "warmup_s": warmup_s, "model": a.model, "levels": results});
        std::fs::write(p, serde_json::to_string_pretty(&doc)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    engine.shutdown();
    Ok(())
}

/// What one `--url` request is, by its index: a mix the way clients use the server.
#[derive(Clone, Copy, Debug, PartialEq)]
enum HttpKind {
    SpeechPcm,
    SpeechMp3,
    ChatSse,
}

/// The result of one `--url` request.
struct HttpOutcome {
    kind: HttpKind,
    /// Audio seconds received (mp3: from its 64 kbit/s constant bit rate).
    audio_s: f64,
    ttfa: Option<Duration>,
    total: Duration,
    /// The client hung up on purpose after the first audio.
    cancelled: bool,
    /// Refused before streaming (status code), e.g. 429.
    refused: Option<u16>,
    /// Broken after it started: a cut chunked body or an SSE error event.
    failed: Option<String>,
}

/// Request `i` of a mixed level (`--url`, `--mix`): one workload for both, so the HTTP door can
/// be compared with the engine alone.
struct MixItem {
    max_new_tokens: usize,
    /// Uses the library voice.
    voice: bool,
    /// The client hangs up after the first audio.
    cancel: bool,
}

/// Mixed lengths (half, whole, one and a half of `frames`), the library voice for every third
/// request of each kind, every eighth request cancelled by the client after its first audio.
fn mix_item(frames: usize, i: usize) -> MixItem {
    MixItem {
        max_new_tokens: frames * [2, 4, 6][(i / 3) % 3] / 4 + 9,
        voice: (i / 9).is_multiple_of(3),
        cancel: i % 8 == 7,
    }
}

/// Sends request `i` of a `--url` level and reads its stream.
fn http_request(
    url: &str,
    key: Option<&str>,
    text: &str,
    frames: usize,
    voice: Option<&str>,
    i: usize,
) -> HttpOutcome {
    let kind = [HttpKind::SpeechPcm, HttpKind::SpeechMp3, HttpKind::ChatSse][i % 3];
    let m = mix_item(frames, i);
    let voice = if m.voice {
        voice.unwrap_or("alloy")
    } else {
        "alloy"
    };
    let cancel = m.cancel;
    let max_new_tokens = m.max_new_tokens;
    let (path, body) = match kind {
        HttpKind::ChatSse => (
            "/v1/chat/completions",
            serde_json::json!({"model": "higgs", "stream": true,
            "modalities": ["text", "audio"], "audio": {"voice": voice, "format": "pcm16"},
            "messages": [{"role": "user", "content": text}], "max_completion_tokens": max_new_tokens, "seed": i}),
        ),
        _ => (
            "/v1/audio/speech",
            serde_json::json!({"model": "higgs", "input": text, "voice": voice,
            "response_format": if kind == HttpKind::SpeechMp3 { "mp3" } else { "pcm" },
            "max_new_tokens": max_new_tokens, "seed": i}),
        ),
    };
    let mut out = HttpOutcome {
        kind,
        audio_s: 0.0,
        ttfa: None,
        total: Duration::ZERO,
        cancelled: false,
        refused: None,
        failed: None,
    };
    let mut req = ureq::post(&format!("{url}{path}")).set("content-type", "application/json");
    if let Some(k) = key {
        req = req.set("authorization", &format!("Bearer {k}"));
    }
    let start = Instant::now();
    let resp = match req.send_string(&body.to_string()) {
        Ok(r) => r,
        Err(ureq::Error::Status(code, _)) => {
            out.refused = Some(code);
            out.total = start.elapsed();
            return out;
        }
        Err(e) => {
            out.failed = Some(format!("request failed: {e}"));
            out.total = start.elapsed();
            return out;
        }
    };
    let mut reader = std::io::BufReader::new(resp.into_reader());
    if kind == HttpKind::ChatSse {
        use base64::Engine as _;
        let mut line = String::new();
        let mut done = false;
        loop {
            line.clear();
            match std::io::BufRead::read_line(&mut reader, &mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    out.failed = Some(format!("stream failed: {e}"));
                    break;
                }
            }
            let Some(data) = line.trim().strip_prefix("data:").map(str::trim) else {
                continue;
            };
            if data == "[DONE]" {
                done = true;
                break;
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
                continue;
            };
            if let Some(e) = v.get("error") {
                out.failed = Some(format!("stream failed: error event {e}"));
                continue;
            }
            if let Some(b64) = v
                .pointer("/choices/0/delta/audio/data")
                .and_then(|d| d.as_str())
            {
                let n = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_or(0, |b| b.len());
                if n > 0 {
                    out.ttfa.get_or_insert(start.elapsed());
                    out.audio_s += n as f64 / 2.0 / 24_000.0;
                    if cancel {
                        out.cancelled = true;
                        break;
                    }
                }
            }
        }
        if !done && !out.cancelled && out.failed.is_none() {
            out.failed = Some("stream failed: the SSE stream ended without [DONE]".into());
        }
    } else {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match std::io::Read::read(&mut reader, &mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    out.ttfa.get_or_insert(start.elapsed());
                    out.audio_s += match kind {
                        HttpKind::SpeechMp3 => k as f64 * 8.0 / 64_000.0,
                        _ => k as f64 / 2.0 / 24_000.0,
                    };
                    if cancel {
                        out.cancelled = true;
                        break;
                    }
                }
                // A chunked body cut without its last chunk: the server failed mid-stream.
                Err(e) => {
                    out.failed = Some(format!("stream failed: {e}"));
                    break;
                }
            }
        }
    }
    out.total = start.elapsed();
    out
}

/// `--url` mode: a soak of a running server. Each level runs `--requests` (default: the
/// concurrency) requests, at most `--concurrency` at once, mixing streamed `/v1/audio/speech`
/// (PCM and MP3) and streamed `/v1/chat/completions`, mixed lengths, a library voice
/// (`--voice`), client cancellations; no `ignore_eos`, so streams end by EOS or length as users'
/// do. Counts refused requests (by status) apart from streams that broke after they started.
fn run_http(a: &BenchArgs) -> Result<()> {
    let url = a.url.clone().unwrap_or_default();
    let levels = parse_levels(&a.concurrency)?;
    let mut results = Vec::new();
    for &c in &levels {
        let n = a.requests.unwrap_or(c);
        let t0 = Instant::now();
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers: Vec<_> = (0..c)
            .map(|_| {
                let (url, key, text, next, voice) = (
                    url.clone(),
                    a.api_key.clone(),
                    a.text.clone(),
                    next.clone(),
                    a.voice.clone(),
                );
                let frames = a.frames;
                std::thread::spawn(move || {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if i >= n {
                            break;
                        }
                        out.push(http_request(
                            &url,
                            key.as_deref(),
                            &text,
                            frames,
                            voice.as_deref(),
                            i,
                        ));
                    }
                    out
                })
            })
            .collect();
        let outs: Vec<HttpOutcome> = workers
            .into_iter()
            .filter_map(|w| w.join().ok())
            .flatten()
            .collect();
        let wall = t0.elapsed().as_secs_f64();
        for o in &outs {
            if let Some(f) = &o.failed {
                eprintln!("{:?}: {f}", o.kind);
            }
        }
        let started: Vec<&HttpOutcome> = outs.iter().filter(|o| o.refused.is_none()).collect();
        let audio_s: f64 = started.iter().map(|o| o.audio_s).sum();
        let mut ttfa: Vec<f64> = started
            .iter()
            .filter_map(|o| o.ttfa)
            .map(|t| t.as_secs_f64() * 1e3)
            .collect();
        let whole: Vec<&&HttpOutcome> = started
            .iter()
            .filter(|o| !o.cancelled && o.failed.is_none())
            .collect();
        let rtf: Vec<f64> = whole
            .iter()
            .map(|o| o.audio_s / o.total.as_secs_f64().max(1e-9))
            .collect();
        let mut refused = std::collections::BTreeMap::<String, usize>::new();
        for o in &outs {
            if let Some(code) = o.refused {
                *refused.entry(code.to_string()).or_default() += 1;
            }
        }
        let count = |k: HttpKind| outs.iter().filter(|o| o.kind == k).count();
        let r = serde_json::json!({"concurrency": c, "requests": outs.len(), "wall_s": wall,
            // A chat stream whose audio ended before its first frame is the model's outcome
            // (random weights emit audio EOS at once), reported as `no_audio`, not a serving failure.
            "failed_streams": started.iter().filter(|o| o.failed.as_deref().is_some_and(|f| !is_no_audio(f))).count(),
            "no_audio_streams": started.iter().filter(|o| o.failed.as_deref().is_some_and(is_no_audio)).count(),
            "refused_by_status": refused,
            "cancelled_by_client": started.iter().filter(|o| o.cancelled).count(),
            "speech_pcm": count(HttpKind::SpeechPcm), "speech_mp3": count(HttpKind::SpeechMp3), "chat_sse": count(HttpKind::ChatSse),
            "audio_s_total": audio_s, "audio_s_per_s": audio_s / wall,
            "per_stream_rtf_mean": rtf.iter().sum::<f64>() / rtf.len().max(1) as f64,
            "per_stream_rtf_min": rtf.iter().copied().fold(f64::INFINITY, f64::min),
            "ttfa_p50_ms": percentile(&mut ttfa, 0.5), "ttfa_p95_ms": percentile(&mut ttfa, 0.95)});
        println!("{r}");
        results.push(r);
    }
    if let Some(p) = &a.json {
        std::fs::write(
            p,
            serde_json::to_string_pretty(&serde_json::json!({"url": url, "levels": results}))?,
        )
        .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// The error event the server sends when the model ended the audio before its first frame.
fn is_no_audio(failure: &str) -> bool {
    failure.contains(r#""type":"no_audio""#)
}

fn parse_levels(s: &str) -> Result<Vec<usize>> {
    s.split(',')
        .map(|x| {
            x.trim()
                .parse()
                .with_context(|| format!("bad --concurrency entry {x:?}"))
        })
        .collect()
}
