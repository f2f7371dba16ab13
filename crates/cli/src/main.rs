//! `higgs-serve`: the binary. Flags (and their environment variables) are parsed here and turned
//! into typed configs for the library crates; nothing below this crate reads the environment.

mod commands;
mod device;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "higgs-serve",
    version,
    about = "Rust-native inference and serving for Higgs Audio v2"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Developer tools: random checkpoints, micro-benchmarks.
    #[command(subcommand)]
    Dev(commands::dev::DevCommand),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Dev(c) => commands::dev::run(c),
    }
}
