//! `jobgate revoke` (SPEC §1, §9): a client of the running gateway's `/revocations` admin API.
//! It reads the same config as `serve` for the admin address and the token file, so an
//! operator names the config and nothing else.
//!
//! Exit status: 0 done; 1 when the gateway refused or could not be reached (its message is
//! printed); 2 for bad usage or a config without the admin API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::clock;
use crate::config::AdminToken;
use crate::config::duration::parse_duration;
use crate::policy::revocation::runtime::rfc3339_seconds;

const EXIT_RUNTIME: u8 = 1;
const EXIT_BAD_USAGE: u8 = 2;

/// A request that does not finish within this has failed: the admin API answers at once.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Arguments of `jobgate revoke`.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("action").required(true).args(["claim", "list", "delete"])
))]
pub struct RevokeArgs {
    /// The gateway's config file: where its admin listener is and its admin token file.
    #[arg(short, long, default_value = "config/jobgate.toml")]
    pub config: PathBuf,
    /// A condition on a claim, e.g. check_run_id=52711234567 or repository=acme/*; all must
    /// match. Repeat a name for a list (any of its values). Values are globs, sent as text.
    #[arg(long, value_name = "NAME=VALUE")]
    pub claim: Vec<String>,
    /// Why, for the audit trail and `--list`.
    #[arg(long, requires = "claim", conflicts_with_all = ["list", "delete"])]
    pub reason: Option<String>,
    /// Lift the entry after this long, e.g. 2h or 7d (default: until deleted).
    #[arg(
        long = "for",
        value_name = "DURATION",
        requires = "claim",
        conflicts_with_all = ["list", "delete"]
    )]
    pub for_duration: Option<String>,
    /// Print every entry in force, from the file and runtime.
    #[arg(long)]
    pub list: bool,
    /// Delete a runtime entry by id.
    #[arg(long, value_name = "ID")]
    pub delete: Option<String>,
}

/// What went wrong, and with which exit status.
struct Failure {
    status: u8,
    message: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        status: EXIT_BAD_USAGE,
        message: message.into(),
    }
}

fn runtime(message: impl Into<String>) -> Failure {
    Failure {
        status: EXIT_RUNTIME,
        message: message.into(),
    }
}

pub fn run(args: RevokeArgs) -> ExitCode {
    match revoke(&args) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("jobgate revoke: {}", failure.message);
            ExitCode::from(failure.status)
        }
    }
}

/// The `POST` body for `--claim`, `--reason` and `--for`. `now`: Unix seconds.
pub fn entry_body(args: &RevokeArgs, now: i64) -> Result<Value, String> {
    let mut body = Map::new();
    for claim in &args.claim {
        let Some((name, value)) = claim.split_once('=').filter(|(name, _)| !name.is_empty()) else {
            return Err(format!(
                "--claim {claim:?}: write NAME=VALUE, e.g. --claim check_run_id=52711234567"
            ));
        };
        if name == "reason" || name == "until" {
            return Err(format!(
                "--claim {name}=…: `{name}` is not a claim the API can match; use --reason or \
                 --for"
            ));
        }
        // Always text: GitHub sends numbers as strings, and a glob matches either way.
        let value = Value::String(value.to_owned());
        match body.get_mut(name) {
            None => {
                body.insert(name.to_owned(), value);
            }
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
        }
    }
    if let Some(reason) = &args.reason {
        body.insert("reason".into(), Value::String(reason.clone()));
    }
    if let Some(text) = &args.for_duration {
        let duration = parse_duration(text).map_err(|e| format!("--for {text:?}: {e}"))?;
        if duration.is_zero() {
            return Err("--for must be longer than zero".to_owned());
        }
        let seconds = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
        // Round a sub-second duration up, so the entry never expires before it was asked to.
        let seconds = seconds.saturating_add(i64::from(duration.subsec_nanos() > 0));
        body.insert(
            "until".into(),
            Value::String(rfc3339_seconds(now.saturating_add(seconds))),
        );
    }
    Ok(Value::Object(body))
}

/// Where to reach an admin listener bound to `listen`: an unspecified address (`0.0.0.0`,
/// `[::]`) is reached on loopback.
fn admin_address(listen: &str) -> Result<SocketAddr, String> {
    let mut addr: SocketAddr = listen
        .parse()
        .map_err(|_| format!("admin_listen {listen:?} is not an address and port"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(addr)
}

fn revoke(args: &RevokeArgs) -> Result<String, Failure> {
    let config = crate::config::load(&args.config).map_err(|error| usage(error.to_string()))?;
    let Some(token) = &config.server.admin_token else {
        return Err(usage(format!(
            "{}: `[server] admin_token_file` is not set, so the gateway's revocation API is off",
            args.config.display()
        )));
    };
    let secret = AdminToken::read_file(&token.path)
        .map_err(|problem| usage(format!("{}: {problem}", token.path.display())))?;
    let addr = admin_address(&config.server.admin_listen).map_err(usage)?;
    let base = format!("http://{addr}/revocations");
    let (method, url, body) = if args.list {
        (reqwest::Method::GET, base, None)
    } else if let Some(id) = &args.delete {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(usage(format!(
                "--delete {id:?}: an id is letters, digits and '-' (see --list)"
            )));
        }
        (reqwest::Method::DELETE, format!("{base}/{id}"), None)
    } else {
        let body = entry_body(args, clock::unix_now()).map_err(usage)?;
        (reqwest::Method::POST, base, Some(body.to_string()))
    };
    let (status, text) = call(method, &url, &secret, body)
        .map_err(|error| runtime(format!("cannot reach the gateway at {addr}: {error}")))?;
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|json| json.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned());
        return Err(runtime(format!(
            "the gateway refused ({status}): {message}"
        )));
    }
    if args.list {
        let entries: Vec<Value> = serde_json::from_str(&text)
            .map_err(|e| runtime(format!("the gateway's list is not JSON: {e}")))?;
        Ok(render_list(&entries))
    } else if let Some(id) = &args.delete {
        Ok(format!("deleted {id}\n"))
    } else {
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| runtime(format!("the gateway's answer is not JSON: {e}")))?;
        let id = json
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| runtime(format!("the gateway's answer has no id: {text}")))?;
        Ok(format!("{id}\n"))
    }
}

/// One HTTP exchange with the admin API: status and body text.
fn call(
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<String>,
) -> Result<(reqwest::StatusCode, String), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        // No proxy: the admin listener is this host's or the operator's own network, and
        // an HTTP_PROXY must never see the admin token.
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        let mut request = client.request(method, url).bearer_auth(token);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = request.send().await.map_err(|e| without_url(&e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| without_url(&e))?;
        Ok((status, text))
    })
}

/// reqwest's error with its cause chain (the URL is already in our message).
fn without_url(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The entries as aligned columns: id, source, until, reason, then the conditions.
pub fn render_list(entries: &[Value]) -> String {
    if entries.is_empty() {
        return "no revocations in force\n".to_owned();
    }
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|entry| {
            let text = |key: &str| {
                entry
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned()
            };
            let conditions = entry
                .get("conditions")
                .and_then(Value::as_object)
                .map(|conditions| {
                    conditions
                        .iter()
                        .map(|(claim, value)| format!("{claim}={value}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let until = entry
                .get("until")
                .and_then(Value::as_str)
                .unwrap_or("-")
                .to_owned();
            let reason = text("reason");
            [
                text("id"),
                text("source"),
                until,
                if reason.is_empty() {
                    "-".into()
                } else {
                    format!("{reason:?}")
                },
                conditions,
            ]
        })
        .collect();
    let header = ["ID", "SOURCE", "UNTIL", "REASON", "CONDITIONS"].map(str::to_owned);
    let mut widths = header.clone().map(|cell| cell.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (index, cell) in row.iter().enumerate() {
            if index + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  ", width = widths[index]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: RevokeArgs,
    }

    fn parse(argv: &[&str]) -> Result<RevokeArgs, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("revoke").chain(argv.iter().copied()))
            .map(|wrapper| wrapper.args)
    }

    #[test]
    fn repeated_claims_make_a_list_and_numbers_stay_text() {
        let args = parse(&[
            "--claim",
            "check_run_id=527",
            "--claim",
            "ref=refs/heads/main",
            "--claim",
            "ref=refs/tags/v*",
            "--claim",
            "ref=x=y",
            "--reason",
            "leak",
            "--for",
            "2h",
        ])
        .expect("valid");
        let body = entry_body(&args, 1_798_675_200).expect("body");
        assert_eq!(
            body,
            serde_json::json!({
                "check_run_id": "527",
                "ref": ["refs/heads/main", "refs/tags/v*", "x=y"],
                "reason": "leak",
                "until": "2026-12-31T02:00:00Z",
            })
        );
    }

    #[test]
    fn bad_usage_is_refused() {
        assert!(parse(&[]).is_err(), "an action is required");
        assert!(parse(&["--list", "--delete", "x"]).is_err());
        assert!(parse(&["--list", "--claim", "a=b"]).is_err());
        assert!(parse(&["--list", "--reason", "x"]).is_err());
        assert!(parse(&["--delete", "x", "--for", "1h"]).is_err());
        for claim in ["novalue", "=x", "reason=x", "until=x"] {
            let args = parse(&["--claim", claim]).expect("parses");
            assert!(entry_body(&args, 0).is_err(), "{claim}");
        }
        let args = parse(&["--claim", "a=b", "--for", "90"]).expect("parses");
        assert!(entry_body(&args, 0).is_err());
    }

    #[test]
    fn unspecified_admin_addresses_are_reached_on_loopback() {
        assert_eq!(
            admin_address("0.0.0.0:9090").expect("addr"),
            "127.0.0.1:9090".parse().expect("addr")
        );
        assert_eq!(
            admin_address("[::]:9090").expect("addr"),
            "[::1]:9090".parse().expect("addr")
        );
        assert_eq!(
            admin_address("10.0.0.1:9090").expect("addr"),
            "10.0.0.1:9090".parse().expect("addr")
        );
    }

    #[test]
    fn the_list_is_aligned_columns() {
        let text = render_list(&[
            serde_json::json!({"id": "file-1", "source": "file", "conditions": {"run_id": "42"}, "reason": "", "until": null}),
            serde_json::json!({"id": "0123456789abcdef", "source": "runtime", "conditions": {"ref": ["a", "b"]}, "reason": "leak", "until": "2026-12-31T00:00:00Z"}),
        ]);
        assert_eq!(
            text,
            "ID                SOURCE   UNTIL                 REASON  CONDITIONS\n\
             file-1            file     -                     -       run_id=\"42\"\n\
             0123456789abcdef  runtime  2026-12-31T00:00:00Z  \"leak\"  ref=[\"a\",\"b\"]\n"
        );
        assert_eq!(render_list(&[]), "no revocations in force\n");
    }
}
