//! `jobgate demo` end to end (SPEC §1): the real binary on free loopback ports. Every
//! example block it prints is run with `bash`, exactly as printed, and must give the status
//! (and refusal reason) its comment announces; the echo upstream must have received the
//! GitHub identity headers on the allowed requests; SIGINT must stop everything.
//! Every wait is bounded.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long the demo may take to print its instructions (key generation, the gateway's
/// first JWKS fetch and its retry).
const BANNER_TIMEOUT: Duration = Duration::from_secs(60);
/// The line that ends the instructions.
const LAST_LINE: &str = "Ctrl-C stops the demo.";

/// `n` distinct free loopback ports: all bound at once, then released.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("local addr").port())
        .collect()
}

fn require_curl() {
    let found = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "tests/demo.rs runs the demo's printed curl lines and needs curl on PATH (Debian: apt-get install curl)"
    );
}

/// Waits for `child` to exit, at most `limit`.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// A running `jobgate demo`, killed on drop if still running.
struct Demo {
    child: Child,
    ports: [u16; 4],
    lines: Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

impl Demo {
    /// Starts `jobgate demo` in `cwd` on free ports.
    fn start(cwd: &Path) -> Demo {
        let ports = free_ports(4);
        let mut child = Command::new(env!("CARGO_BIN_EXE_jobgate"))
            .current_dir(cwd)
            .args([
                "demo",
                "--port",
                &ports[0].to_string(),
                "--admin-port",
                &ports[1].to_string(),
                "--issuer-port",
                &ports[2].to_string(),
                "--upstream-port",
                &ports[3].to_string(),
            ])
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn jobgate demo");
        let stdout = child.stdout.take().expect("stdout");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(read) = pipe.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_str(&String::from_utf8_lossy(&buffer[..read]));
            }
        });
        Demo {
            child,
            ports: [ports[0], ports[1], ports[2], ports[3]],
            lines,
            stderr,
        }
    }

    /// The end of the demo's log, for failure messages.
    fn log_tail(&self) -> String {
        let log = self
            .stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Stdout lines up to and including [`LAST_LINE`].
    fn banner(&self) -> Vec<String> {
        let deadline = Instant::now() + BANNER_TIMEOUT;
        let mut banner = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let last = line == LAST_LINE;
                    banner.push(line);
                    if last {
                        return banner;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no complete instructions within {BANNER_TIMEOUT:?}; stdout so far:\n{}\nlog:\n{}",
                    banner.join("\n"),
                    self.log_tail()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "the demo closed stdout; stdout:\n{}\nlog:\n{}",
                    banner.join("\n"),
                    self.log_tail()
                ),
            }
        }
    }

    /// The next stdout line for which `wanted` holds, within `limit`.
    fn wait_for_line(&self, limit: Duration, wanted: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + limit;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            if wanted(&line) {
                return Some(line);
            }
        }
        None
    }

    /// SIGINT, then the exit status (bounded).
    fn interrupt(&mut self) -> Option<ExitStatus> {
        let sent = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -INT failed");
        wait_bounded(&mut self.child, Duration::from_secs(15))
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// One printed example: `# N. STATUS OUTCOME: what` and the lines up to a blank one.
#[derive(Debug)]
struct Block {
    title: String,
    status: u16,
    outcome: String,
    commands: String,
}

fn blocks(banner: &[String]) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut index = 0;
    while index < banner.len() {
        let line = &banner[index];
        index += 1;
        let Some(rest) = line.strip_prefix("# ") else {
            continue;
        };
        let Some((number, rest)) = rest.split_once(". ") else {
            continue;
        };
        if number.parse::<u32>().is_err() {
            continue;
        }
        let (status, rest) = rest.split_once(' ').expect("status after the number");
        let (outcome, _) = rest.split_once(':').expect("outcome, then a colon");
        let mut commands = Vec::new();
        while index < banner.len() && !banner[index].is_empty() {
            commands.push(banner[index].clone());
            index += 1;
        }
        blocks.push(Block {
            title: line.clone(),
            status: status.parse().expect("a status code"),
            outcome: outcome.to_string(),
            commands: commands.join("\n"),
        });
    }
    blocks
}

/// Runs shell lines as a user pasting them would, with bash; returns stdout (bounded).
fn run_shell(commands: &str) -> String {
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail\n{commands}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bash");
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let status = wait_bounded(&mut child, Duration::from_secs(30));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let out = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    match status {
        Some(status) if status.success() => out,
        Some(status) => {
            panic!("{commands}\nexited with {status}; stdout:\n{out}\nstderr:\n{stderr}")
        }
        None => panic!("{commands}\ndid not finish within 30 s"),
    }
}

/// `curl -i` output: the status and the body (after the blank line).
fn parse_curl(output: &str) -> (u16, String) {
    let status = output
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("HTTP/"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response:\n{output}"));
    let body = output
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_string();
    (status, body)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|error| panic!("not JSON ({error}):\n{body}"))
}

fn echoed<'a>(echo: &'a Value, header: &str) -> Option<&'a str> {
    echo["headers"][header].as_str()
}

#[test]
fn every_printed_example_gives_its_status_and_ctrl_c_stops_the_demo() {
    require_curl();
    let mut demo = Demo::start(Path::new(env!("CARGO_MANIFEST_DIR")));
    let banner = demo.banner();
    let text = banner.join("\n");
    for port in demo.ports {
        assert!(
            text.contains(&format!("http://127.0.0.1:{port}")),
            "port {port} missing:\n{text}"
        );
    }
    assert!(text.contains("config: config/demo.toml"), "{text}");
    assert!(!text.contains("PRIVATE KEY"));

    let blocks = blocks(&banner);
    for (status, outcome) in [
        (200, "allowed"),
        (403, "policy_denied"),
        (401, "missing_token"),
    ] {
        assert!(
            blocks
                .iter()
                .any(|block| block.status == status && block.outcome == outcome),
            "no {status} {outcome} example:\n{text}"
        );
    }
    for block in &blocks {
        let output = run_shell(&block.commands);
        let (status, body) = parse_curl(&output);
        assert_eq!(
            status,
            block.status,
            "{}\n{}\n{output}\nlog:\n{}",
            block.title,
            block.commands,
            demo.log_tail()
        );
        match block.outcome.as_str() {
            "allowed" => {
                let echo = json(&body);
                let route = echoed(&echo, "x-jobgate-route").unwrap_or_default();
                assert!(
                    !route.is_empty(),
                    "{}: no X-Jobgate-Route\n{body}",
                    block.title
                );
                assert_eq!(echoed(&echo, "x-github-repository"), Some("acme/app"));
                assert_eq!(echoed(&echo, "x-github-repository-owner"), Some("acme"));
                assert_eq!(echoed(&echo, "x-github-ref"), Some("refs/heads/main"));
                assert_eq!(echoed(&echo, "x-github-environment"), Some("production"));
                assert_eq!(echoed(&echo, "x-github-run-attempt"), Some("1"));
                let job_url = echoed(&echo, "x-github-job-url").unwrap_or_default();
                assert!(
                    job_url.starts_with("https://github.com/acme/app/actions/runs/"),
                    "{body}"
                );
                assert_eq!(
                    echoed(&echo, "x-jobgate-issuer"),
                    Some(format!("http://127.0.0.1:{}", demo.ports[2]).as_str())
                );
                assert!(
                    echo["headers"].get("authorization").is_none(),
                    "the token reached the upstream: {body}"
                );
            }
            "public" => {
                let echo = json(&body);
                let headers = echo["headers"].as_object().expect("headers");
                assert!(
                    headers.keys().all(|name| !name.starts_with("x-github-")),
                    "{body}"
                );
            }
            reason => {
                assert_eq!(json(&body)["reason"], reason, "{}\n{body}", block.title);
                if reason == "rate_limited" {
                    assert!(
                        output.to_ascii_lowercase().contains("\r\nretry-after: "),
                        "{}: no Retry-After\n{output}",
                        block.title
                    );
                }
            }
        }
    }

    // The metrics line prints the counters of the requests just made.
    let metrics_at = banner
        .iter()
        .position(|line| line.starts_with("# Metrics"))
        .expect("a metrics line");
    let metrics = run_shell(&banner[metrics_at + 1]);
    assert!(
        metrics
            .lines()
            .any(|line| line.contains("outcome=\"allowed\"") && line.contains("route=\"deploy\"")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|line| line.contains("outcome=\"denied\"")),
        "{metrics}"
    );

    // The audit log follows the instructions on stdout.
    let audit = demo.wait_for_line(Duration::from_secs(10), |line| {
        serde_json::from_str::<Value>(line).is_ok_and(|entry| entry["outcome"] == "allowed")
    });
    assert!(audit.is_some(), "no audit line for the allowed request");

    let status = demo.interrupt();
    assert!(
        status.is_some_and(|status| status.success()),
        "after SIGINT: {status:?}\nlog:\n{}",
        demo.log_tail()
    );
}

#[test]
fn demo_runs_from_any_directory_with_the_built_in_config() {
    require_curl();
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let mut demo = Demo::start(elsewhere.path());
    let banner = demo.banner();
    let text = banner.join("\n");
    assert!(text.contains("the copy built into jobgate"), "{text}");
    let first = blocks(&banner)
        .into_iter()
        .find(|block| block.status == 200 && block.outcome == "allowed")
        .expect("an allowed example");
    let (status, body) = parse_curl(&run_shell(&first.commands));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        echoed(&json(&body), "x-github-repository"),
        Some("acme/app")
    );
    let status = demo.interrupt();
    assert!(status.is_some_and(|status| status.success()), "{status:?}");
    // The effective config's private copy is gone with the process.
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| {
                    entry
                        .file_name()
                        .to_string_lossy()
                        .starts_with(&format!("jobgate-demo-{}-", demo.child.id()))
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_port_in_use_is_a_clear_message_and_exit_1() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let others = free_ports(3);
    let mut child = Command::new(env!("CARGO_BIN_EXE_jobgate"))
        .args([
            "demo",
            "--port",
            &others[0].to_string(),
            "--admin-port",
            &others[1].to_string(),
            "--issuer-port",
            &port.to_string(),
            "--upstream-port",
            &others[2].to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = wait_bounded(&mut child, Duration::from_secs(20));
    if status.is_none() {
        let _ = child.kill();
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert_eq!(status.and_then(|status| status.code()), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("port {port} is in use; pass --issuer-port ")),
        "{stderr}"
    );
    drop(taken);
}

#[test]
fn the_same_port_twice_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_jobgate"))
        .args(["demo", "--port", "18123", "--upstream-port", "18123"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--port and --upstream-port are both 18123"),
        "{stderr}"
    );
}

#[test]
fn demo_config_passes_check_without_warnings() {
    let output = Command::new(env!("CARGO_BIN_EXE_jobgate"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["check", "-c", "config/demo.toml"])
        .output()
        .expect("run jobgate check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("3 route(s), 1 issuer(s), 0 warning(s)"),
        "{stdout}"
    );
}

/// Issue #11, defect 3: the demo starts its issuer before the gateway's first JWKS fetch,
/// so that fetch succeeds: no "JWKS refresh failed … Connection refused" warning in the log
/// before the instructions, and no apology for one.
#[test]
fn the_first_jwks_fetch_succeeds_and_nothing_needs_an_apology() {
    let demo = Demo::start(Path::new(env!("CARGO_MANIFEST_DIR")));
    let text = demo.banner().join("\n");
    // The instructions are printed only once the gateway has the issuer's keys, so any
    // failed first fetch is logged by now.
    let log = demo
        .stderr
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert!(log.contains("jobgate serving"), "{log}");
    for unwanted in ["JWKS refresh failed", "Connection refused"] {
        assert!(!log.contains(unwanted), "{unwanted:?} in the log:\n{log}");
    }
    for apology in [
        "is expected",
        "Connection refused",
        "JWKS refresh failed",
        "retried",
    ] {
        assert!(
            !text.contains(apology),
            "{apology:?} in the instructions:\n{text}"
        );
    }
    assert!(
        !text.contains("does not have the issuer's keys"),
        "the gateway was not ready:\n{text}"
    );
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], demo.ports[1]));
    let metrics = raw_get_body(admin, "/metrics");
    assert!(
        metrics.contains(r#"jobgate_jwks_refresh_total{issuer="demo",result="error"} 0"#),
        "a failed JWKS fetch:\n{metrics}"
    );
}

/// The body of `GET target` on a loopback listener (HTTP/1.0, so the server closes).
fn raw_get_body(addr: std::net::SocketAddr, target: &str) -> String {
    use std::io::Write as _;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the admin listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(stream, "GET {target} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}
