//! `jobgate demo`: the gateway, an embedded OIDC issuer and an echo upstream on loopback.

use std::process::ExitCode;

/// Arguments of `jobgate demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {}

/// Runs the demo until Ctrl-C.
pub fn run(_args: DemoArgs) -> ExitCode {
    eprintln!("jobgate demo is not implemented yet");
    ExitCode::from(1)
}
