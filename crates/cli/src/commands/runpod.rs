//! `higgs-serve runpod`: the RunPod Serverless worker (also chosen when `higgs-serve` runs without
//! a command and `RUNPOD_WEBHOOK_GET_JOB` is set), its local test API (`--rp-serve-api`) and
//! one-shot local runs (`--test-input` / `./test_input.json`). See docs/deploy-runpod.md.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use higgs_worker::{JobContext, PlatformClient, PlatformConfig, PlatformUrls, WorkerConfig};

use crate::commands::serve::{Built, EngineArgs};

/// Voices baked into the Docker image (used when the volume has none).
const IMAGE_VOICES: &str = "/app/voices";

#[derive(Args)]
pub struct RunpodArgs {
    #[command(flatten)]
    engine: EngineArgs,
    /// Jobs taken at once; all run together in the batching engines [default: the KV slots of
    /// the engines in rotation, i.e. --max-running times the number of engines].
    #[arg(long, env = "HIGGS_WORKER_CONCURRENCY")]
    concurrency: Option<usize>,
    /// Serve the local test API (/run, /runsync, /status, /stream, /cancel, /health) instead of
    /// talking to the platform.
    #[arg(long = "rp-serve-api", alias = "rp_serve_api")]
    rp_serve_api: bool,
    /// Local test API address.
    #[arg(long = "host", env = "RP_API_HOST", default_value = "127.0.0.1")]
    host: String,
    #[arg(long = "port", env = "RP_API_PORT", default_value_t = 8000)]
    port: u16,
    /// Local test API: require `Authorization: Bearer KEY`.
    #[arg(long, env = "HIGGS_API_KEY")]
    api_key: Option<String>,
    /// Connection limits of the local test API.
    #[command(flatten)]
    net: crate::commands::serve::NetArgs,
    /// Run one job (`{"input": {...}}`) and exit 0, or 1 when it failed (default: ./test_input.json
    /// when it exists and no platform is configured).
    #[arg(long = "test-input", alias = "test_input")]
    test_input: Option<String>,
    /// Recycle the worker after each job (every result carries `stopPod: true`).
    #[arg(long, env = "HIGGS_REFRESH_WORKER")]
    refresh_worker: bool,
    /// Largest result returned inline (bytes); bigger ones fail with a clear error (use S3).
    #[arg(long, env = "HIGGS_MAX_INLINE_BYTES", default_value_t = higgs_worker::job::DEFAULT_MAX_INLINE_BYTES)]
    max_inline_bytes: usize,
    /// After SIGTERM, seconds running jobs may still take before they fail with a retry hint.
    #[arg(long, env = "HIGGS_DRAIN_TIMEOUT_SECS", default_value_t = 30)]
    drain_timeout_secs: u64,
    /// Download missing weights at start-up (off: a worker should find them on the volume, and
    /// fail fast otherwise).
    #[arg(long, env = "HIGGS_DOWNLOAD_ON_START")]
    download: bool,
    /// Hosts (HOST or HOST:PORT, comma-separated) that endpoints from jobs may reach although they
    /// are loopback/private/link-local (`s3Config.endpointUrl`, the local API's `webhook`), e.g. a
    /// MinIO on the private network; public http(s) endpoints are always allowed (docs/security.md).
    #[arg(long, env = "HIGGS_ALLOW_PRIVATE_ENDPOINTS", value_delimiter = ',')]
    allow_private_endpoints: Vec<String>,
}

/// The platform settings from the `RUNPOD_*` environment, if this runs on RunPod.
fn platform_from_env(env: &HashMap<String, String>) -> Option<PlatformConfig> {
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    let job_take = get("RUNPOD_WEBHOOK_GET_JOB")?;
    let urls = PlatformUrls {
        worker_id: get("RUNPOD_POD_ID").unwrap_or_else(uuid_like),
        job_take,
        job_done: get("RUNPOD_WEBHOOK_POST_OUTPUT").unwrap_or_default(),
        job_stream: get("RUNPOD_WEBHOOK_POST_STREAM"),
        ping: get("RUNPOD_WEBHOOK_PING"),
    };
    Some(PlatformConfig::new(urls, get("RUNPOD_AI_API_KEY")))
}

fn uuid_like() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

fn ping_interval(env: &HashMap<String, String>) -> Duration {
    env.get("RUNPOD_PING_INTERVAL")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(10))
}

/// `VOICE_PROMPTS_PATH`, else the volume's voices, else the image's.
fn default_voices() -> Option<PathBuf> {
    [
        PathBuf::from(higgs_hub::RUNPOD_VOLUME_ROOT).join("voices"),
        PathBuf::from(IMAGE_VOICES),
    ]
    .into_iter()
    .find(|p| p.is_dir())
}

pub fn run(mut a: RunpodArgs) -> Result<()> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let platform = platform_from_env(&env);
    // Every job the worker holds must fit an engine's queue, even when the others failed.
    if let Some(c) = a.concurrency {
        a.engine.max_queue = a.engine.max_queue.max(c);
    }
    if a.engine.voices.is_none() {
        a.engine.voices = default_voices();
    }
    let test_input = match &a.test_input {
        Some(t) => Some(t.clone()),
        None if platform.is_none() && !a.rp_serve_api && Path::new("test_input.json").is_file() => {
            Some(std::fs::read_to_string("test_input.json").context("reading ./test_input.json")?)
        }
        None => None,
    };
    if platform.is_none() && !a.rp_serve_api && test_input.is_none() {
        bail!(
            "not on RunPod (RUNPOD_WEBHOOK_GET_JOB is not set): use `higgs-serve runpod --rp-serve-api` for the local test API, \
             `--test-input '{{\"input\": {{...}}}}'` (or ./test_input.json) for one job, or `higgs-serve serve` for the HTTP server"
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let download = if a.download {
        crate::commands::serve::Download::Always
    } else {
        crate::commands::serve::Download::Never
    };
    let built = match a.engine.build(download) {
        Ok(b) => b,
        Err(e) => {
            // Fail fast, and tell the platform why (it marks the worker unhealthy).
            if let Some(p) = &platform {
                if let Ok(c) = PlatformClient::new(p.clone()) {
                    rt.block_on(c.report_unhealthy("model_files", &format!("{e:#}")));
                }
            }
            return Err(e.context(
                "the worker could not start: put the weights on the network volume (higgs-serve download --out /runpod-volume/higgs_audio) or set MODEL_PATH / AUDIO_TOKENIZER_PATH / TOKENIZER_PATH",
            ));
        }
    };
    let Built {
        service,
        metrics,
        joins,
    } = built;
    let engine = service.engine.clone();
    // The OpenAI passthrough runs through the HTTP server's own router over the same service, with
    // no API key: the platform authenticates callers before a job exists.
    let openai = higgs_server::app(higgs_server::AppState {
        service: service.clone(),
        config: std::sync::Arc::new(higgs_server::ServerConfig {
            api_key: None,
            max_body_bytes: a.engine.max_body_bytes,
            net: higgs_server::NetConfig::default(),
        }),
        metrics,
    });
    let egress = higgs_storage::EgressPolicy::allowing(&a.allow_private_endpoints)
        .context("--allow-private-endpoints / HIGGS_ALLOW_PRIVATE_ENDPOINTS")?;
    let ctx = JobContext::new(service, openai, a.max_inline_bytes).with_egress(egress);
    let result = if let Some(t) = test_input {
        rt.block_on(one_shot(&ctx, &t))
    } else if a.rp_serve_api {
        rt.block_on(local_api(&a, ctx))
    } else {
        let p = platform.context("RUNPOD_WEBHOOK_GET_JOB is not set")?;
        let cfg = WorkerConfig {
            concurrency: a.concurrency.map(|c| c.max(1)),
            refresh_worker: a.refresh_worker,
            ping_interval: ping_interval(&env),
            drain_timeout: Duration::from_secs(a.drain_timeout_secs),
            ..Default::default()
        };
        let client = PlatformClient::new(p).map_err(|e| anyhow::anyhow!("HTTP client: {e}"))?;
        tracing::info!(
            "RunPod worker {} taking up to {} jobs at once",
            client.cfg.urls.worker_id,
            cfg.concurrency.map_or_else(
                || format!("{} (the engines' KV slots)", engine.serving_slots()),
                |c| c.to_string()
            )
        );
        let report = rt.block_on(higgs_worker::run(
            ctx,
            client,
            cfg,
            higgs_server::shutdown_signal(),
        ));
        tracing::info!("worker stopped: {report:?}");
        Ok(())
    };
    engine.shutdown();
    for j in joins {
        let _ = j.join();
    }
    result
}

async fn one_shot(ctx: &JobContext, text: &str) -> Result<()> {
    let v: serde_json::Value = serde_json::from_str(text)
        .context("the test input is not JSON (expected {\"input\": {...}})")?;
    let body = higgs_worker::local_api::run_test_input(ctx, &v)
        .await
        .map_err(anyhow::Error::msg)?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    if body.get("error").is_some() {
        bail!("the job failed: {}", body["error"]);
    }
    Ok(())
}

async fn local_api(a: &RunpodArgs, ctx: JobContext) -> Result<()> {
    let addr: std::net::SocketAddr = format!("{}:{}", a.host, a.port)
        .parse()
        .with_context(|| format!("bad --host/--port {}:{}", a.host, a.port))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(
        "local RunPod test API on http://{} (/run, /runsync, /status/ID, /stream/ID, /cancel/ID, /health; also under /v2/ENDPOINT_ID/)",
        listener.local_addr()?
    );
    let concurrency = a
        .concurrency
        .unwrap_or_else(|| ctx.service.engine.serving_slots());
    let app = higgs_worker::local_api::router(
        ctx,
        concurrency,
        a.api_key.clone().filter(|k| !k.is_empty()),
    );
    // The local API reads whole JSON bodies too: the same body guard as the HTTP server.
    let net = a.net.config()?;
    let app = higgs_server::guard_bodies(app, a.engine.max_body_bytes, net.body_read_timeout);
    higgs_server::serve_with(listener, app, &net, higgs_server::shutdown_signal()).await?;
    Ok(())
}
