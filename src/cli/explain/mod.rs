//! `jobgate explain`: why a token would be allowed or denied on a request (SPEC §1).
//!
//! An operator debugging a 401 or 403 has a token, a method and a URL; this module replays
//! what `serve` does with them (SPEC §3: path, route, token checks, revocation, deny rules,
//! allow rules, identity headers) and reports every step instead of stopping at the first
//! refusal. It runs offline: the signature is NOT checked and the issuer is never contacted,
//! so everything after decoding describes what the token *claims*; the output says so first.
//!
//! The work is split in three so each part is testable without the binary: [`decode_token`]
//! and [`RequestTarget::parse`] read the inputs, [`explain_request`] builds an
//! [`Explanation`] from the compiled config by calling the gateway's own routing, policy,
//! revocation and identity code, and [`render_text`] / [`render_json`] format it. One file
//! each: `input`, `replay` (with the data it fills in, `report`) and `render`.

pub mod input;
pub mod render;
pub mod replay;
pub mod report;
#[cfg(test)]
mod tests;

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

pub use input::{DecodedToken, RequestTarget, RevocationSource, decode_token};
pub use render::{SIGNATURE_WARNING, render_json, render_text};
pub use replay::explain_request;
pub use report::{Check, Decision, Explanation, Verdict};

/// Exit status for a bad config, bad usage or a token that cannot be decoded (SPEC §1).
const EXIT_BAD_INPUT: u8 = 2;

/// Arguments of `jobgate explain`.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The config file.
    #[arg(short, long, default_value = "config/jobgate.toml")]
    pub config: PathBuf,
    /// The token (a JWT; a leading "Bearer " is ignored), or "-" to read it from stdin so it
    /// stays out of shell history and the process list. Its signature is NOT checked.
    #[arg(long)]
    pub token: String,
    /// The request method (case-insensitive).
    #[arg(long, default_value = "GET")]
    pub method: String,
    /// The request URL, e.g. https://deploy.internal.example/v1/deploy, or a path such as
    /// /v1/deploy for routes without a host.
    #[arg(long)]
    pub url: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Check exp, nbf, iat and revocation expiry at this instant (Unix seconds) instead of
    /// now, e.g. to replay a refusal from an audit line.
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub now: Option<u64>,
}

/// Runs the command: 0 whenever an explanation was printed, whatever it decided; 2 for a
/// config, usage or token problem, with the reason on stderr.
pub fn run(args: ExplainArgs) -> ExitCode {
    match explain_args(&args) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// Everything `run` does but the printing, so that errors are values.
fn explain_args(args: &ExplainArgs) -> Result<String, String> {
    let config = crate::config::load(&args.config).map_err(|error| error.to_string())?;
    let target = RequestTarget::parse(&args.method, &args.url)?;
    let token = if args.token == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|error| {
                format!("jobgate explain: cannot read the token from stdin: {error}")
            })?;
        text
    } else {
        args.token.clone()
    };
    let token = decode_token(&token).map_err(|error| format!("jobgate explain: {error}"))?;
    let now = args
        .now
        .unwrap_or_else(|| u64::try_from(crate::clock::unix_now()).unwrap_or(0));
    let revocations = RevocationSource::load(&config);
    let explanation = explain_request(&config, &token, &target, &revocations, now);
    Ok(if args.json {
        let mut text = render_json(&explanation).to_string();
        text.push('\n');
        text
    } else {
        render_text(&explanation)
    })
}
