//! `jobgate explain`: why a token would be allowed or denied on a request (SPEC §1).

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `jobgate explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The config file.
    #[arg(short, long, default_value = "config/jobgate.toml")]
    pub config: PathBuf,
    /// The token (a JWT); its signature is NOT checked.
    #[arg(long)]
    pub token: String,
    /// The request method.
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// The request URL, e.g. https://deploy.internal.example/v1/deploy
    #[arg(long)]
    pub url: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(_args: ExplainArgs) -> ExitCode {
    eprintln!("jobgate explain is not implemented yet");
    ExitCode::from(1)
}
