//! `higgs-serve serve`: the HTTP server (OpenAI-compatible speech and chat, native /generate,
//! voices, health, metrics) over the batching engine.

use anyhow::{bail, Context, Result};
use clap::Args;
use higgs_engine::voices::VoiceLibrary;
use higgs_engine::{start, EngineConfig, EngineParts};
use higgs_server::{AppState, ServerConfig};
use higgs_service::{Service, ServiceConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::device::{self, DeviceArg, DtypeArg};

#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    host: String,
    #[arg(long, env = "PORT", default_value_t = 8000)]
    port: u16,
    /// Require `Authorization: Bearer KEY` (all routes but /health, /ping, /metrics).
    #[arg(long, env = "HIGGS_API_KEY")]
    api_key: Option<String>,
    /// When the weights are not found, download them (~11 GB) without asking.
    #[arg(long, env = "HIGGS_DOWNLOAD", conflicts_with = "no_download")]
    download: bool,
    /// When the weights are not found, never download them (also not when asked on a terminal).
    #[arg(long, env = "HIGGS_NO_DOWNLOAD")]
    no_download: bool,
    #[command(flatten)]
    pub net: NetArgs,
}

/// Connection limits of an HTTP door (`serve`, and `runpod --rp-serve-api`); docs/security.md.
#[derive(Args, Clone, Debug)]
pub struct NetArgs {
    /// Seconds a connection may take to send a complete request head, counted from when it opens
    /// or from its previous response (so also the keep-alive idle timeout); then it is closed.
    #[arg(long, env = "HIGGS_HEADER_READ_TIMEOUT_SECS", default_value_t = 15)]
    pub header_read_timeout_secs: u64,
    /// Seconds a request body may take to arrive whole; then 408 and the connection is closed.
    #[arg(long, env = "HIGGS_BODY_READ_TIMEOUT_SECS", default_value_t = 60)]
    pub body_read_timeout_secs: u64,
    /// Connections served at once; more wait in the accept backlog until one closes.
    #[arg(long, env = "HIGGS_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
}

impl NetArgs {
    pub fn config(&self) -> Result<higgs_server::NetConfig> {
        if self.header_read_timeout_secs == 0
            || self.body_read_timeout_secs == 0
            || self.max_connections == 0
        {
            bail!("--header-read-timeout-secs, --body-read-timeout-secs and --max-connections must be at least 1");
        }
        Ok(higgs_server::NetConfig {
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs),
            body_read_timeout: std::time::Duration::from_secs(self.body_read_timeout_secs),
            max_connections: self.max_connections,
            ..Default::default()
        })
    }
}

/// Model, engine and limit flags shared by `serve` and `runpod`.
#[derive(Args)]
pub struct EngineArgs {
    /// Model directory (config.json, *.safetensors, tokenizer.json).
    #[arg(long, env = "MODEL_PATH")]
    pub model: Option<PathBuf>,
    /// Audio tokenizer directory.
    #[arg(long, env = "AUDIO_TOKENIZER_PATH")]
    pub codec: Option<PathBuf>,
    /// Text tokenizer (directory or tokenizer.json; default: the model directory).
    #[arg(long, env = "TOKENIZER_PATH")]
    pub tokenizer: Option<PathBuf>,
    /// Voice library directory (NAME.wav + NAME.txt [+ profile.yaml]).
    #[arg(long, env = "VOICE_PROMPTS_PATH")]
    pub voices: Option<PathBuf>,
    /// Where missing weights are downloaded (default: /runpod-volume/higgs_audio when the volume is
    /// mounted, else ~/.cache/higgs-serve/higgs_audio).
    #[arg(long, env = "HIGGS_DOWNLOAD_DIR")]
    pub download_dir: Option<PathBuf>,
    /// Run on a freshly generated tiny RANDOM checkpoint (every endpoint real, the audio is noise).
    #[arg(long, env = "HIGGS_DEMO")]
    pub demo: bool,
    /// Device kind: `auto` (every visible GPU on a CUDA build, else the CPU), `cpu`, or `cuda`
    /// (every visible GPU). `--devices` picks the GPUs and wins over it.
    #[arg(long, value_enum, default_value = "auto", env = "HIGGS_DEVICE")]
    pub device: DeviceArg,
    /// One engine (model, codec, KV cache) per listed device, behind one server: `cuda:0,cuda:1`
    /// (or `0,1`), `cuda`/`all` (every visible GPU), `cpu`, `cpu,cpu` (several CPU engines),
    /// `auto` [default: from --device].
    #[arg(long, env = "HIGGS_DEVICES", value_parser = device::parse_devices)]
    pub devices: Option<device::DevicesArg>,
    #[arg(long, value_enum, default_value = "auto", env = "HIGGS_DTYPE")]
    pub dtype: DtypeArg,
    /// Concurrent sequences (KV slots) per engine.
    #[arg(long, env = "HIGGS_MAX_RUNNING", default_value_t = 16)]
    pub max_running: usize,
    /// KV-cache memory budget in GiB per engine; when set, the number of concurrent sequences is
    /// derived from it (and --max-seq-len) instead of --max-running.
    #[arg(long, env = "HIGGS_KV_CACHE_GB")]
    pub kv_cache_gb: Option<f64>,
    /// Give up on a request (and free its slot) after this many seconds, queue time included.
    #[arg(long, env = "HIGGS_REQUEST_TIMEOUT_SECS")]
    pub request_timeout_secs: Option<u64>,
    /// Positions per sequence (prompt incl. reference audio + generated frames, per chunk).
    /// The default is the reference's largest static cache; on a GPU, --max-running is lowered
    /// (with a warning) when that many sequences do not fit its free memory.
    #[arg(long, env = "HIGGS_MAX_SEQ_LEN", default_value_t = 8192)]
    pub max_seq_len: usize,
    /// Requests allowed to wait per engine; beyond it (on every engine) the server answers 429.
    #[arg(long, env = "HIGGS_MAX_QUEUE", default_value_t = 64)]
    pub max_queue: usize,
    #[command(flatten)]
    pub stream: super::common::StreamArgs,
    #[arg(long, env = "HIGGS_MAX_INPUT_CHARS", default_value_t = 10_000)]
    pub max_input_chars: usize,
    #[arg(long, env = "HIGGS_MAX_BODY_BYTES", default_value_t = 40 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Default `max_new_tokens` when a request gives none [default: 2048; with --demo 75].
    #[arg(long, env = "HIGGS_DEFAULT_MAX_NEW_TOKENS")]
    pub default_max_new_tokens: Option<usize>,
    /// Largest `max_new_tokens` a request may ask for.
    #[arg(long, env = "HIGGS_MAX_NEW_TOKENS_LIMIT", default_value_t = 4096)]
    pub max_new_tokens_limit: usize,
    /// Seconds of reference audio per request, all clips together (docs/security.md).
    #[arg(long, env = "HIGGS_MAX_REFERENCE_TOTAL_SECS", default_value_t = 300.0)]
    pub max_reference_total_secs: f64,
    /// Seconds of one reference clip (its header is read before it is decoded).
    #[arg(long, env = "HIGGS_MAX_REFERENCE_SECS", default_value_t = 120.0)]
    pub max_reference_secs: f64,
    /// Reference clips per request.
    #[arg(long, env = "HIGGS_MAX_REFERENCE_CLIPS", default_value_t = 8)]
    pub max_reference_clips: usize,
    /// Encoded bytes of one reference clip or voice upload.
    #[arg(long, env = "HIGGS_MAX_REFERENCE_BYTES", default_value_t = 25 * 1024 * 1024)]
    pub max_reference_bytes: u64,
    /// Uploaded audio decoded at once (references, voice uploads), off the async runtime.
    #[arg(long, env = "HIGGS_DECODE_CONCURRENCY", default_value_t = higgs_service::DecodePool::DEFAULT_SIZE)]
    pub decode_concurrency: usize,
    /// Name reported by /v1/models.
    #[arg(long, default_value = "higgs-audio-v2-generation-3B-base")]
    pub served_model_name: String,
}

/// What to do when the weights are not on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Download {
    /// Fail with what to run.
    Never,
    /// Ask on a terminal (the download is ~11 GB); without one, as `Never`.
    Ask,
    /// Download without asking (`--download`; the RunPod worker onto its volume).
    Always,
}

/// The loaded engines and the service over them (shared by `serve` and `runpod`).
pub struct Built {
    pub service: Service,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The engine threads, joined after the doors stop.
    pub joins: Vec<std::thread::JoinHandle<()>>,
}

/// What every engine is built from (read once, shared by the loading threads).
struct EngineInputs<'a> {
    model: &'a std::path::Path,
    codec: &'a std::path::Path,
    tokenizer: &'a higgs_text::TextTokenizer,
    voices: &'a Option<Arc<VoiceLibrary>>,
    model_options: higgs_model::ModelOptions,
    codec_options: higgs_codec::CodecOptions,
    metrics: bool,
}

impl EngineArgs {
    /// Finds (or, as `download` says, downloads) the weights, loads them, starts the engine.
    pub fn build(&self, download: Download) -> Result<Built> {
        // Settings that can be wrong are checked before minutes of loading.
        let env: std::collections::HashMap<String, String> = std::env::vars().collect();
        let s3 = higgs_storage::S3Config::from_env_map(&env).context(
            "the S3 settings in the environment (BUCKET_ENDPOINT_URL, BUCKET_ACCESS_KEY_ID, ...; docs/storage.md)",
        )?;
        let voices_dir = self
            .voices
            .clone()
            .or_else(|| self.demo.then(crate::demo::bundled_voices).flatten());
        let devices =
            device::engine_devices(self.devices.as_ref(), self.device, device::visible_gpus())?;
        let (model, codec) = self.model_dirs(download)?;
        let tok_path = self.tokenizer.clone().unwrap_or_else(|| model.clone());
        let tokenizer = if tok_path.is_dir() {
            higgs_text::TextTokenizer::from_model_dir(&tok_path)
        } else {
            higgs_text::TextTokenizer::from_file(&tok_path)
        }
        .with_context(|| format!("loading the text tokenizer from {}", tok_path.display()))?;
        // Opened (and checked) once here; every engine and the doors share this instance.
        let open_voices = |d: &std::path::Path| {
            VoiceLibrary::open(d)
                .with_context(|| format!("opening the voice directory {}", d.display()))
        };
        let voices = voices_dir.as_deref().map(open_voices).transpose()?;
        let voices = voices.map(Arc::new);
        let uploader = match s3 {
            Some(c) => {
                tracing::info!("S3 uploads enabled for /generate");
                Some(Arc::new(
                    higgs_storage::Uploader::new(c).context("S3 uploader")?,
                ))
            }
            None => None,
        };
        if let Some(gb) = self.kv_cache_gb.filter(|gb| *gb <= 0.0) {
            bail!("--kv-cache-gb must be positive, got {gb}");
        }
        let metrics = install_metrics();
        let inputs = EngineInputs {
            model: &model,
            codec: &codec,
            tokenizer: &tokenizer,
            voices: &voices,
            model_options: crate::options::model_options(),
            codec_options: crate::options::codec_options()?,
            metrics: metrics.is_some(),
        };
        // The engines load at once, each on a thread of its own (its device's uploads are ordered
        // on that thread's stream, which `start` waits for).
        let started: Vec<Result<(higgs_engine::EngineHandle, std::thread::JoinHandle<()>)>> =
            std::thread::scope(|scope| {
                let loading: Vec<_> = devices
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        let inputs = &inputs;
                        scope.spawn(move || self.start_engine(i, *d, inputs))
                    })
                    .collect();
                loading
                    .into_iter()
                    .map(|t| {
                        t.join().unwrap_or_else(|_| {
                            Err(anyhow::anyhow!("the engine's loading thread panicked"))
                        })
                    })
                    .collect()
            });
        let mut joins = Vec::new();
        let mut members = Vec::new();
        for (d, r) in devices.iter().zip(started) {
            members.push(higgs_engine::PoolMember {
                device: d.to_string(),
                engine: match r {
                    Ok((h, j)) => {
                        joins.push(j);
                        Ok(h)
                    }
                    Err(e) => Err(format!("{e:#}")),
                },
            });
        }
        let engine = higgs_engine::EnginePool::new(members, higgs_engine::PoolPolicy::default())?;
        if engine.len() > 1 {
            tracing::info!(
                "{} engines behind one admission front ({})",
                engine.len(),
                device::join(&devices)
            );
        }
        let service = Service {
            engine,
            voices,
            config: Arc::new(ServiceConfig {
                limits: higgs_api::Limits {
                    max_input_chars: self.max_input_chars,
                    default_max_new_tokens: self.default_max_new_tokens.unwrap_or(if self.demo {
                        crate::demo::DEMO_MAX_NEW_TOKENS
                    } else {
                        2048
                    }),
                    max_new_tokens: self.max_new_tokens_limit,
                    max_reference_total_seconds: self.max_reference_total_secs,
                    max_reference_seconds: self.max_reference_secs,
                    max_reference_clips: self.max_reference_clips,
                    max_reference_bytes: self.max_reference_bytes,
                },
                decode_pool: higgs_service::DecodePool::new(self.decode_concurrency),
                request_timeout: self
                    .request_timeout_secs
                    .map(std::time::Duration::from_secs),
                model_name: self.served_model_name.clone(),
                model_path: model.display().to_string(),
            }),
            device: device::join(&devices),
            uploader,
        };
        Ok(Built {
            service,
            metrics,
            joins,
        })
    }

    /// Loads the model and codec onto `d` and starts engine `index` there.
    fn start_engine(
        &self,
        index: usize,
        d: device::EngineDevice,
        inputs: &EngineInputs<'_>,
    ) -> Result<(higgs_engine::EngineHandle, std::thread::JoinHandle<()>)> {
        let dev = device::engine_device(d)?;
        let dtype = device::dtype(self.dtype, &dev);
        device::configure_numerics(&dev, dtype);
        let t0 = std::time::Instant::now();
        let m = higgs_model::HiggsAudioModel::load_with(
            inputs.model,
            dtype,
            &dev,
            &inputs.model_options,
        )
        .with_context(|| format!("loading the model from {}", inputs.model.display()))?;
        let c = higgs_codec::Codec::load_with(
            inputs.codec,
            &device::codec_device(&dev)?,
            &inputs.codec_options,
        )
        .with_context(|| {
            format!(
                "loading the audio tokenizer from {}",
                inputs.codec.display()
            )
        })?;
        tracing::info!(
            engine = index,
            "model and codec loaded in {:.1}s on {d} ({dtype:?})",
            t0.elapsed().as_secs_f64()
        );
        let max_running = match self.kv_cache_gb {
            Some(gb) => {
                let n = EngineConfig::slots_for_memory(
                    &m,
                    self.max_seq_len,
                    (gb * (1u64 << 30) as f64) as usize,
                );
                tracing::info!(
                    engine = index,
                    "{gb} GiB of KV cache: {n} concurrent sequences of {} positions",
                    self.max_seq_len
                );
                n
            }
            None => match higgs_engine::telemetry::gpu_memory(&dev) {
                Some((free, total)) => {
                    let per_slot = higgs_model::KvCache::bytes_per_position(m.config(), m.dtype())
                        * self.max_seq_len;
                    fit_slots(self.max_running, per_slot, free, total).map_err(|e| {
                        anyhow::anyhow!("{d}: {e}; lower --max-seq-len ({})", self.max_seq_len)
                    })?
                }
                None => self.max_running,
            },
        };
        let label = index.to_string();
        let mut cfg = EngineConfig {
            max_running,
            max_seq_len: self.max_seq_len,
            max_queue: self.max_queue,
            label: label.clone(),
            ..Default::default()
        };
        self.stream.apply(&mut cfg)?;
        if inputs.metrics {
            higgs_engine::telemetry::record_kv_cache(&m, cfg.max_running, cfg.max_seq_len, &label);
            higgs_engine::telemetry::sample_gpu_memory(
                dev.clone(),
                label,
                std::time::Duration::from_secs(5),
            );
        }
        let parts = EngineParts {
            model: m,
            codec: c,
            tokenizer: inputs.tokenizer.clone(),
            voices: inputs.voices.clone(),
        };
        Ok(start(cfg, parts)?)
    }

    fn model_dirs(&self, download: Download) -> Result<(PathBuf, PathBuf)> {
        if self.demo {
            return crate::demo::checkpoint();
        }
        if let (Some(m), Some(c)) = (&self.model, &self.codec) {
            let present = |d: &PathBuf| d.join("config.json").is_file();
            if present(m) && present(c) || download == Download::Never {
                return Ok((m.clone(), c.clone()));
            }
            // Both named but not there: download into them when they are DIR/model + DIR/codec
            // (the layout `download --out DIR` writes).
            let parent = m.parent().filter(|p| Some(*p) == c.parent());
            let layout_ok =
                m.file_name() == Some("model".as_ref()) && c.file_name() == Some("codec".as_ref());
            return match parent {
                Some(dir) if layout_ok => {
                    if !may_download(download, dir)? {
                        bail!(
                            "{} / {} do not hold the weights: run `higgs-serve download --out {}` (~11 GB), \
                             or start with --download to fetch them without asking",
                            m.display(),
                            c.display(),
                            dir.display()
                        );
                    }
                    download_into(dir)?;
                    Ok((m.clone(), c.clone()))
                }
                _ => bail!(
                    "{} / {} do not hold the weights, and they are not DIR/model + DIR/codec to download into: \
                     run `higgs-serve download --out DIR` and point --model/--codec at DIR/model and DIR/codec",
                    m.display(),
                    c.display()
                ),
            };
        }
        // Look in the network-volume layout and the Hugging Face cache.
        let mut search = crate::commands::download::model_search_from_env();
        if let Some(m) = &self.model {
            search.model_path = Some(m.clone());
        }
        if let Some(c) = &self.codec {
            search.codec_path = Some(c.clone());
        }
        match higgs_hub::find_model_dirs(&search) {
            Ok(d) => {
                tracing::info!(
                    "using model {} and codec {}",
                    d.model.display(),
                    d.codec.display()
                );
                Ok((d.model, d.codec))
            }
            Err(e) => {
                let out = self
                    .download_dir
                    .clone()
                    .unwrap_or_else(default_download_dir);
                eprintln!("{e}");
                if !may_download(download, &out)? {
                    bail!(
                        "the weights are not on this machine: run `higgs-serve download --out {0}` (~11 GB) and pass \
                         --model {0}/model --codec {0}/codec, or start with --download to fetch them without asking; \
                         try the whole stack on random weights with `higgs-serve serve --demo`",
                        out.display()
                    );
                }
                eprintln!("downloading the weights into {} ...", out.display());
                download_into(&out)?;
                Ok((out.join("model"), out.join("codec")))
            }
        }
    }
}

pub fn run(a: ServeArgs) -> Result<()> {
    let net = a.net.config()?;
    // The port is taken before the weights load: a busy address fails in a second, not after
    // minutes of loading.
    let listener = listen(&a.host, a.port)?;
    let download = match (a.download, a.no_download) {
        (true, _) => Download::Always,
        (_, true) => Download::Never,
        _ => Download::Ask,
    };
    let Built {
        service,
        metrics,
        joins,
    } = a.engine.build(download)?;
    let state = AppState {
        service,
        config: Arc::new(ServerConfig {
            api_key: a.api_key.clone().filter(|k| !k.is_empty()),
            max_body_bytes: a.engine.max_body_bytes,
            net,
        }),
        metrics,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        higgs_server::serve_on(state, listener).await
    })?;
    // Let running requests finish.
    for j in joins {
        let _ = j.join();
    }
    Ok(())
}

/// The Prometheus recorder with histogram buckets (not the exporter's default summaries, which
/// cannot be aggregated across replicas) and every family's `# HELP`. A second recorder cannot be
/// installed (e.g. tests building twice): then run without one.
fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    const SECONDS: &[f64] = &[
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    ];
    const RTF: &[f64] = &[0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0];
    const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full("higgs_real_time_factor".into()), RTF))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full("higgs_batch_size".into()), BATCH));
    let handle = builder
        .map_err(|e| tracing::warn!("metrics buckets: {e}"))
        .ok()?
        .install_recorder()
        .map_err(|e| tracing::warn!("no metrics recorder: {e}"))
        .ok()?;
    higgs_engine::telemetry::describe_metrics();
    higgs_server::describe_metrics();
    Some(handle)
}

/// Binds `host:port`, naming the address in every failure.
pub fn listen(host: &str, port: u16) -> Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let addr: SocketAddr = (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .with_context(|| {
            format!("--host {host:?} is not an IP address or a name of this machine (e.g. 0.0.0.0, 127.0.0.1, :: or localhost)")
        })?;
    let l = std::net::TcpListener::bind(addr).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "another process is listening there: stop it or pick another --port"
            }
            std::io::ErrorKind::PermissionDenied => {
                "ports below 1024 need privileges: pick --port 1024 or above"
            }
            std::io::ErrorKind::AddrNotAvailable => "that address is not one of this machine's",
            _ => "check --host and --port",
        };
        anyhow::anyhow!("cannot listen on {addr}: {e}; {hint}")
    })?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Whether to download into `dir` now: `Ask` asks on a terminal and says no without one.
fn may_download(policy: Download, dir: &std::path::Path) -> Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    match policy {
        Download::Always => Ok(true),
        Download::Never => Ok(false),
        Download::Ask if !std::io::stdin().is_terminal() => Ok(false),
        Download::Ask => {
            eprint!(
                "Download the model and audio tokenizer (~11 GB) into {}? [y/N] ",
                dir.display()
            );
            std::io::stderr().flush()?;
            let mut answer = String::new();
            std::io::stdin().lock().read_line(&mut answer)?;
            Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES"))
        }
    }
}

/// `higgs-serve download --out DIR` with the defaults and the hub environment.
fn download_into(out: &std::path::Path) -> Result<()> {
    let args = crate::commands::download::DownloadArgs {
        out: out.to_path_buf(),
        model_repo: higgs_hub::DEFAULT_MODEL_REPO.into(),
        codec_repo: higgs_hub::DEFAULT_CODEC_REPO.into(),
        revision: "main".into(),
        codec_revision: "main".into(),
        token: std::env::var("HF_TOKEN").ok().filter(|v| !v.is_empty()),
        endpoint: std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| higgs_hub::DEFAULT_ENDPOINT.into()),
        retries: 5,
        model_only: false,
        codec_only: false,
        quiet: false,
    };
    crate::commands::download::run(args).map_err(|d| {
        anyhow::anyhow!(
            "the weights are not on this machine and downloading them failed: {d:#}\n\
             fix the network/token (HF_ENDPOINT, HF_TOKEN) and run `higgs-serve download --out {}`, \
             or pass --model DIR --codec DIR (try --demo for random weights)",
            out.display()
        )
    })
}

/// The RunPod network volume when mounted, else a per-user cache directory.
fn default_download_dir() -> PathBuf {
    let volume = PathBuf::from("/runpod-volume");
    if volume.is_dir() {
        return volume.join("higgs_audio");
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/higgs-serve/higgs_audio")
}

/// GPU memory kept free beside the KV cache for activations, the codec and CUDA graphs: 10 % of
/// the card, at least 4 GiB (a c=256 suite run used 4 GB beyond weights and cache on an H200).
fn gpu_headroom(total: usize) -> usize {
    (total / 10).max(4 << 30)
}

/// How many of `requested` KV slots of `per_slot` bytes fit the GPU's `free` memory after the
/// headroom; fewer than asked is a warning (a serving system starts with what fits, as vLLM sizes
/// its cache from free memory), none is an error naming the numbers.
fn fit_slots(
    requested: usize,
    per_slot: usize,
    free: usize,
    total: usize,
) -> Result<usize, String> {
    let gib = |b: usize| b as f64 / (1u64 << 30) as f64;
    let usable = free.saturating_sub(gpu_headroom(total));
    let fit = usable / per_slot.max(1);
    if fit == 0 {
        return Err(format!(
            "one sequence's KV cache needs {:.2} GiB but the GPU has {:.2} GiB free ({:.2} GiB kept for activations and the codec)",
            gib(per_slot),
            gib(free),
            gib(gpu_headroom(total))
        ));
    }
    if fit < requested {
        tracing::warn!(
            "--max-running {requested} sequences do not fit the GPU's free memory ({:.1} GiB, {:.1} GiB kept back, {:.2} GiB per sequence): running {fit}; lower --max-seq-len or set --kv-cache-gb to choose",
            gib(free),
            gib(gpu_headroom(total)),
            gib(per_slot)
        );
        return Ok(fit);
    }
    Ok(requested)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a failure should panic with its location
mod tests {
    use super::fit_slots;

    const GIB: usize = 1 << 30;

    #[test]
    fn slots_are_lowered_to_what_fits_the_free_gpu_memory() {
        // 80 GiB card, 60 GiB free, 8 GiB kept back: 52 GiB for 1 GiB slots.
        assert_eq!(fit_slots(16, GIB, 60 * GIB, 80 * GIB), Ok(16));
        assert_eq!(fit_slots(64, GIB, 60 * GIB, 80 * GIB), Ok(52));
        // A 24 GiB card with 10 GiB free: 4 GiB kept back, 6 slots of 1 GiB.
        assert_eq!(fit_slots(16, GIB, 10 * GIB, 24 * GIB), Ok(6));
        let e = fit_slots(16, 8 * GIB, 10 * GIB, 24 * GIB).unwrap_err();
        assert!(
            e.contains("8.00 GiB") && e.contains("10.00 GiB free"),
            "{e}"
        );
    }
}
