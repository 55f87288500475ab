//! What the demo prints: copy-paste `curl` examples with the status each gives, printed once
//! the issuer answers and the gateway has its keys.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::issuer::DISCOVERY_PATH;
use super::layout::DemoPorts;

/// How long the demo waits for the gateway to have the issuer's keys before printing the
/// examples anyway, with a warning. The key store retries after about 1 s.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// One printed example: a request and the status it gives.
#[derive(Debug, Clone, Copy)]
pub(super) struct Example {
    pub(super) status: u16,
    /// The outcome word after the status: a refusal reason, or `allowed` / `public`.
    pub(super) outcome: &'static str,
    pub(super) what: &'static str,
    /// The token endpoint's query (`audience=…&<claim>=<value>`); `None`: no token sent.
    pub(super) token_query: Option<&'static str>,
    /// Fetch the token the way a workflow step does, through `$ACTIONS_ID_TOKEN_REQUEST_URL`.
    pub(super) workflow_style: bool,
    /// The gateway path requested.
    pub(super) path: &'static str,
    /// Times the same request is sent first, silently (to spend a rate limit).
    pub(super) sent_before: u32,
}

/// The examples, in the order printed. `tests/demo.rs` runs each printed block and checks
/// the status and reason; a unit test checks them against the config without a server.
pub(super) const EXAMPLES: [Example; 8] = [
    Example {
        status: 200,
        outcome: "allowed",
        what: "acme/app's deploy job on main, environment production; the echo upstream shows the X-GitHub-* headers jobgate added",
        token_query: Some("audience=jobgate-demo"),
        workflow_style: false,
        path: "/deploy/app",
        sent_before: 0,
    },
    Example {
        status: 403,
        outcome: "policy_denied",
        what: "the same job in evil/app: the allow rule pins repository_owner acme and its id",
        token_query: Some("audience=jobgate-demo&repository=evil/app"),
        workflow_style: false,
        path: "/deploy/app",
        sent_before: 0,
    },
    Example {
        status: 403,
        outcome: "policy_denied",
        what: "acme/app on a self-hosted runner: the deny rule runner_environment = \"self-hosted\" wins",
        token_query: Some("audience=jobgate-demo&runner_environment=self-hosted"),
        workflow_style: false,
        path: "/deploy/app",
        sent_before: 0,
    },
    Example {
        status: 401,
        outcome: "missing_token",
        what: "no token at all",
        token_query: None,
        workflow_style: false,
        path: "/deploy/app",
        sent_before: 0,
    },
    Example {
        status: 401,
        outcome: "wrong_audience",
        what: "a valid token minted for another service",
        token_query: Some("audience=https://github.com/acme"),
        workflow_style: false,
        path: "/deploy/app",
        sent_before: 0,
    },
    Example {
        status: 200,
        outcome: "allowed",
        what: "a workflow step's own token request, unchanged, with $ACTIONS_ID_TOKEN_REQUEST_URL pointing at the demo issuer",
        token_query: Some("audience=jobgate-demo"),
        workflow_style: true,
        path: "/artifacts/build.tar",
        sent_before: 0,
    },
    Example {
        status: 200,
        outcome: "public",
        what: "no token needed on a public route",
        token_query: None,
        workflow_style: false,
        path: "/public/hello",
        sent_before: 0,
    },
    Example {
        status: 429,
        outcome: "rate_limited",
        what: "one job's sixth deploy within a minute: /deploy admits 5 a minute per check_run_id (Retry-After says when the next one fits)",
        token_query: Some("audience=jobgate-demo&check_run_id=42170099999"),
        workflow_style: false,
        path: "/deploy/app",
        sent_before: 5,
    },
];

/// The `sed` that extracts `.value` from the token endpoint's JSON, so no `jq` is needed.
const EXTRACT_VALUE: &str = r#"sed -E 's/.*"value":"([^"]+)".*/\1/'"#;

/// The shell lines of one example.
fn example_commands(example: &Example, ports: DemoPorts) -> Vec<String> {
    let issuer = ports.issuer_url();
    let gateway = format!("http://127.0.0.1:{}{}", ports.proxy, example.path);
    let mut lines = Vec::new();
    match example.token_query {
        None => lines.push(format!("curl -i {gateway}")),
        Some(query) => {
            if example.workflow_style {
                lines.push(format!(
                    "export ACTIONS_ID_TOKEN_REQUEST_URL='{issuer}/token?api-version=2.0' ACTIONS_ID_TOKEN_REQUEST_TOKEN=demo"
                ));
                lines.push(format!(
                    "TOKEN=$(curl -s -H \"Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN\" \"$ACTIONS_ID_TOKEN_REQUEST_URL&{query}\" | {EXTRACT_VALUE})"
                ));
            } else {
                lines.push(format!(
                    "TOKEN=$(curl -s '{issuer}/token?{query}' | {EXTRACT_VALUE})"
                ));
            }
            if example.sent_before > 0 {
                lines.push(format!(
                    "for i in $(seq {}); do curl -s -o /dev/null -H \"Authorization: Bearer $TOKEN\" {gateway}; done",
                    example.sent_before
                ));
            }
            lines.push(format!(
                "curl -i -H \"Authorization: Bearer $TOKEN\" {gateway}"
            ));
        }
    }
    lines
}

/// Everything the demo prints once it is ready. The private key is never part of it.
pub(super) fn instructions(
    ports: DemoPorts,
    config_label: &str,
    kid: &str,
    live_reload: bool,
) -> String {
    let mut out = String::new();
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    let _ = writeln!(
        out,
        "jobgate demo: gateway, OIDC issuer and echo upstream on loopback; Ctrl-C stops all three.\n"
    );
    let _ = writeln!(
        out,
        "  gateway        {}  config: {config_label}",
        url(ports.proxy)
    );
    let _ = writeln!(
        out,
        "  admin          {}  /metrics /healthz /readyz (200: the gateway has the issuer's keys)",
        url(ports.admin)
    );
    let _ = writeln!(
        out,
        "  OIDC issuer    {}  fresh RSA-2048 key (kid {}…), GET /token?audience=…&<claim>=<value>",
        url(ports.issuer),
        kid.get(..12).unwrap_or(kid)
    );
    let _ = writeln!(
        out,
        "  echo upstream  {}  answers with the method, path and headers it received\n",
        url(ports.upstream)
    );
    let _ = writeln!(out, "Routes:");
    let _ = writeln!(
        out,
        "  /deploy     acme/app (owner and repository pinned by name and id), main, production; self-hosted runners denied;\n              each job (check_run_id) at most 5 requests a minute"
    );
    let _ = writeln!(
        out,
        "  /artifacts  any acme repository; pull_request jobs denied"
    );
    let _ = writeln!(out, "  /public     no token\n");
    let _ = writeln!(
        out,
        "The token endpoint mints a GitHub Actions token of acme/app's deploy job; query parameters\n\
         override its claims (repository=evil/app also changes the owner, ids and sub it implies).\n\
         Paste these into another terminal; each comment says the status it gives:\n"
    );
    for (index, example) in EXAMPLES.iter().enumerate() {
        let _ = writeln!(
            out,
            "# {}. {} {}: {}",
            index + 1,
            example.status,
            example.outcome,
            example.what
        );
        for line in example_commands(example, ports) {
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
    }
    let _ = writeln!(out, "# Metrics (Prometheus text) on the admin listener:");
    let _ = writeln!(
        out,
        "curl -s {}/metrics | grep '^jobgate_requests_total'\n",
        url(ports.admin)
    );
    let _ = writeln!(
        out,
        "The audit log (one JSON line per authenticated request) follows below."
    );
    if live_reload {
        let _ = writeln!(
            out,
            "Edit {config_label} and the gateway reloads it within a second."
        );
    }
    let _ = writeln!(out, "Ctrl-C stops the demo.");
    out
}

/// Prints the instructions once the issuer answers and the gateway has its keys, so the
/// first pasted line already works; prints them anyway after [`READY_TIMEOUT`], saying so.
pub(super) fn announce_when_ready(ports: DemoPorts, banner: &str) {
    let issuer = DemoPorts::address(ports.issuer);
    let admin = DemoPorts::address(ports.admin);
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut ready = false;
    while Instant::now() < deadline {
        if http_status(issuer, DISCOVERY_PATH) == Some(200)
            && http_status(admin, "/readyz") == Some(200)
        {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut stdout = std::io::stdout().lock();
    if !ready {
        let _ = writeln!(
            stdout,
            "warning: the gateway does not have the issuer's keys yet; authenticated requests get 503 until\n\
             http://127.0.0.1:{}/readyz says ready (see the log above).\n",
            ports.admin
        );
    }
    let _ = stdout.write_all(banner.as_bytes());
    let _ = stdout.flush();
}

/// The status of `GET path` on a loopback service; `None` when it does not answer (yet).
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    let head = std::str::from_utf8(&head[..read]).ok()?;
    head.strip_prefix("HTTP/1.1 ")
        .or_else(|| head.strip_prefix("HTTP/1.0 "))?
        .get(..3)?
        .parse()
        .ok()
}
