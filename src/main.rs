//! The `jobgate` command line (SPEC §1).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// glibc's malloc was 12–15 % of the proxy's CPU under load: Pingora allocates and frees
/// per request. jemalloc's thread caches cut user-space instructions per request by ~10 %
/// (public route) and ~12 % (authenticated route) under callgrind, and hold an idle client
/// connection in less memory (45 KB vs 61 KB RSS). mimalloc saved as many instructions but
/// doubled the RSS per idle connection (104 KB) and at idle (43 MiB): see benches/load/README.md.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit status for a bad config or bad usage (SPEC §1).
const EXIT_BAD_CONFIG: u8 = 2;
/// Exit status for a runtime failure.
const EXIT_RUNTIME: u8 = 1;

#[derive(Parser)]
#[command(
    name = "jobgate",
    version,
    about = "Authentication gateway for GitHub Actions OIDC tokens"
)]
struct Cli {
    /// The log format on stderr: `text`, or `json` (one object per line) for log pipelines.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The config file.
        #[arg(short, long, default_value = "config/jobgate.toml")]
        config: PathBuf,
        /// Also reload when the config file changes (SIGHUP always reloads).
        #[arg(long)]
        watch: bool,
    },
    /// Run the gateway, an embedded OIDC issuer and an echo upstream on loopback, offline.
    Demo(jobgate::cli::demo::DemoArgs),
    /// Show which route a request matches and, rule by rule, why its token would be
    /// allowed or denied. The signature is NOT checked.
    Explain(jobgate::cli::explain::ExplainArgs),
    /// Add, list or delete runtime revocations on the running gateway that a config
    /// describes, through its admin API.
    Revoke(jobgate::cli::revoke::RevokeArgs),
    /// Validate a config without touching the network.
    Check {
        /// The config file.
        #[arg(short, long, default_value = "config/jobgate.toml")]
        config: PathBuf,
    },
}

/// Colour codes are for a person at a terminal: in a file or a pipe they are noise.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.with_ansi(false).json().init(),
    }
}

fn main() -> ExitCode {
    // jemalloc returns freed pages to the OS only while the process allocates; a gateway
    // that goes quiet after a burst of connections would hold that memory. A background
    // thread purges on its own (after jemalloc's 10 s decay). Best effort: if it cannot
    // start, memory is still bounded, just returned later.
    let _ = tikv_jemalloc_ctl::background_thread::write(true);
    // One rustls provider for the whole process, chosen before anything uses TLS: redis
    // (rediss://) and Pingora's listener and upstream connector build their configs from
    // the process default, which Pingora would otherwise set to ring on first use. aws-lc-rs
    // is what jsonwebtoken and reqwest already use. Err only means one is already set.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(EXIT_BAD_CONFIG)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Demo(args) => {
            init_logging(cli.log_format);
            jobgate::cli::demo::run(args)
        }
        Command::Explain(args) => jobgate::cli::explain::run(args),
        Command::Revoke(args) => jobgate::cli::revoke::run(args),
        Command::Check { config } => match jobgate::config::load(&config) {
            Ok(loaded) => {
                print!("{}", jobgate::cli::check::summary(&loaded));
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("{error}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
        Command::Serve { config, watch } => {
            init_logging(cli.log_format);
            let loaded = match jobgate::config::load(&config) {
                Ok(loaded) => loaded,
                Err(error) => {
                    eprintln!("{error}");
                    return ExitCode::from(EXIT_BAD_CONFIG);
                }
            };
            match jobgate::ops::server::serve(loaded, &config, watch) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("jobgate: {error}");
                    ExitCode::from(EXIT_RUNTIME)
                }
            }
        }
    }
}
