//! `higgs-serve`: the binary. Flags (and their environment variables) are parsed here and turned
//! into typed configs for the library crates; nothing below this crate reads the environment.

mod commands;
mod demo;
mod device;
mod options;

use clap::{Parser, Subcommand};

/// `higgs-serve --version`: the package version and the commit it was built from (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("HIGGS_GIT_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "higgs-serve",
    version = VERSION,
    about = "Rust-native inference and serving for Higgs Audio v2"
)]
struct Cli {
    /// Log lines as text (colours only on a terminal) or as one JSON object per line (for log
    /// shippers). The level comes from RUST_LOG (default info).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "HIGGS_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    /// Without a command: `runpod` when RUNPOD_WEBHOOK_GET_JOB is set (the RunPod worker), else help.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// The HTTP server: OpenAI-compatible speech and chat, native /generate, voices, health, metrics.
    Serve(commands::serve::ServeArgs),
    /// The RunPod Serverless worker (job queue protocol), its local test API (--rp-serve-api), or
    /// one job (--test-input).
    Runpod(commands::runpod::RunpodArgs),
    /// Download the model and audio tokenizer repositories (e.g. onto a network volume).
    Download(commands::download::DownloadArgs),
    /// Text in, speech out (the reference CLI's pipeline).
    Synth(commands::synth::SynthArgs),
    /// Benchmark the batching engine in-process with concurrent requests.
    Bench(commands::bench::BenchArgs),
    /// Audio tokenizer: encode audio to codes, decode codes to audio.
    #[command(subcommand)]
    Codec(commands::codec::CodecCommand),
    /// Developer tools: random checkpoints, micro-benchmarks.
    #[command(subcommand)]
    Dev(commands::dev::DevCommand),
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The default filter: info, but the audio decoders' own complaints about a client's bad upload
/// (symphonia logs them as errors) only when RUST_LOG asks for them; the request's error says it.
const DEFAULT_LOG_FILTER: &str = "info,symphonia=off";

fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG_FILTER));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).init(),
        // The request span's fields (request_id, method, path) go into each line's `span`.
        LogFormat::Json => fmt
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

fn main() -> anyhow::Result<()> {
    unset_empty_flag_env();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let command = match cli.command {
        Some(c) => c,
        // RunPod starts the image's command; with the platform's environment that is the worker.
        None if std::env::var_os("RUNPOD_WEBHOOK_GET_JOB").is_some_and(|v| !v.is_empty()) => {
            Cli::parse_from(["higgs-serve", "runpod"])
                .command
                .ok_or_else(|| anyhow::anyhow!("parsing `runpod` gave no command"))?
        }
        None => {
            let _ = <Cli as clap::CommandFactory>::command().print_help();
            std::process::exit(2);
        }
    };
    match command {
        Command::Serve(a) => commands::serve::run(a),
        Command::Runpod(a) => commands::runpod::run(a),
        Command::Download(a) => commands::download::run(a),
        Command::Synth(a) => commands::synth::run(a),
        Command::Bench(a) => commands::bench::run(a),
        Command::Codec(c) => commands::codec::run(c),
        Command::Dev(c) => commands::dev::run(c),
    }
}

/// An empty variable means "not set" for our flags (RunPod's console and Hub send blank inputs as
/// empty strings); clap would refuse it as a missing value. Runs first, before any thread exists.
fn unset_empty_flag_env() {
    fn walk(c: &clap::Command, out: &mut Vec<String>) {
        for a in c.get_arguments() {
            if let Some(e) = a.get_env() {
                out.push(e.to_string_lossy().into_owned());
            }
        }
        for sub in c.get_subcommands() {
            walk(sub, out);
        }
    }
    let mut names = Vec::new();
    walk(&<Cli as clap::CommandFactory>::command(), &mut names);
    for n in names {
        if std::env::var_os(&n).is_some_and(|v| v.is_empty()) {
            std::env::remove_var(&n);
        }
    }
}
