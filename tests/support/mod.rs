//! Real parts for integration tests: an echo upstream over HTTP on 127.0.0.1, the real
//! `jobgate` binary started on free loopback ports, and a raw HTTP/1.1 client that sends
//! exactly the bytes a test asks for (no path normalisation, duplicate headers allowed).
//! [`world::World`] puts them together with a test issuer; most tests start there.
#![allow(dead_code)]

pub mod expect;
pub mod issuer;
pub mod metrics;
pub mod pki;
pub mod raw;
pub mod world;

/// Calls `done` every 50 ms until it holds; false once `limit` has passed without it.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use issuer::http::HttpServer;

/// Sends with `send` every 50 ms until `done` holds for the answer, at most `limit`: the
/// answer for which it held, or the last one.
pub fn resend_until(
    limit: Duration,
    mut send: impl FnMut() -> RawResponse,
    done: impl Fn(&RawResponse) -> bool,
) -> Result<RawResponse, RawResponse> {
    let mut last = None;
    let held = wait_until(limit, || {
        let response = send();
        let held = done(&response);
        last = Some(response);
        held
    });
    let last = last.expect("wait_until asks at least once");
    if held { Ok(last) } else { Err(last) }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}

/// `N` distinct ports that were free a moment ago on 127.0.0.1: bound all at once, then
/// released. (Two calls of [`free_port`] may return the same port.)
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: [TcpListener; N] = std::array::from_fn(|_| {
        TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port")
    });
    listeners.map(|listener| listener.local_addr().expect("local address").port())
}

/// An HTTP upstream that answers every request with a JSON echo of it, and `x-upstream:
/// name`; a path under `/slow` is answered after 1.5 s.
pub struct EchoUpstream {
    pub addr: SocketAddr,
    pub name: String,
    hits: Arc<AtomicUsize>,
    _server: HttpServer,
}

impl EchoUpstream {
    pub fn start(name: &str) -> EchoUpstream {
        let hits = Arc::new(AtomicUsize::new(0));
        let (upstream_name, counter) = (name.to_string(), Arc::clone(&hits));
        let server = HttpServer::start("echo-upstream", move |request, _| {
            let name = upstream_name.clone();
            let counter = Arc::clone(&counter);
            async move { echo(request, &name, &counter).await }
        });
        EchoUpstream {
            addr: server.addr(),
            name: name.to_string(),
            hits,
            _server: server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn echo(
    request: hyper::Request<hyper::body::Incoming>,
    name: &str,
    hits: &AtomicUsize,
) -> hyper::Response<Full<Bytes>> {
    hits.fetch_add(1, Ordering::SeqCst);
    if request.uri().path().starts_with("/slow") {
        // A slow upstream, for drain and timeout tests.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    }
    let method = request.method().to_string();
    let uri = request.uri().to_string();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in request.headers() {
        headers
            .entry(key.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let body = request
        .into_body()
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let echo = serde_json::json!({
        "upstream": name,
        "method": method,
        "uri": uri,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    hyper::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("x-upstream", name)
        .body(Full::new(Bytes::from(echo.to_string())))
        .expect("valid response")
}

/// A response as the raw client read it.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The body as text (lossy), for messages and "does not contain" checks.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "body is not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The headers the echo upstream received (lower-case name → values).
    pub fn echoed_header(&self, name: &str) -> Option<Vec<String>> {
        let json = self.json();
        json["headers"][name].as_array().map(|values| {
            values
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
    }
}

/// Sends one HTTP/1.1 request (with `Connection: close`) exactly as given and reads the
/// whole response. `headers` are sent in order, duplicates included.
pub fn raw_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> RawResponse {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let mut request = format!("{method} {target} HTTP/1.1\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request.push_str("Host: localhost\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("write request");
    stream.write_all(body).expect("write body");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> RawResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        data = &data[line_end + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

/// A `GET` with no extra headers.
pub fn get(addr: SocketAddr, target: &str) -> RawResponse {
    raw_request(addr, "GET", target, &[], b"")
}

/// The real `jobgate serve` on loopback ports, stopped (kill) on drop. Tests reach it
/// through [`world::World`], which writes its config.
pub struct Jobgate {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl Jobgate {
    /// Starts jobgate with a complete config text whose ports the caller chose, and `env`
    /// added to its environment, and waits (at most 20 s) until both ports accept
    /// connections.
    pub fn start(
        config_text: &str,
        port: u16,
        admin_port: u16,
        env: &[(String, String)],
    ) -> Jobgate {
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("jobgate.toml");
        std::fs::write(&config_path, config_text).expect("write config");
        let child = Command::new(env!("CARGO_BIN_EXE_jobgate"))
            .arg("serve")
            .arg("-c")
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(name, value)| (name, value)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn jobgate");
        let mut jobgate = Jobgate {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            dir,
            config_path,
        };
        jobgate.wait_until_listening(config_text);
        jobgate
    }

    /// A process that exits at once (a config error, a port taken meanwhile) fails here with
    /// its status and config rather than after the whole 20 s.
    fn wait_until_listening(&mut self, config_text: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "jobgate exited ({status}) before listening; its log is above. Config:\n{config_text}"
                );
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok()
                && TcpStream::connect_timeout(&self.admin, Duration::from_millis(200)).is_ok()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "jobgate did not start listening on {} within 20 s",
            self.addr
        );
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit and returns its status code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Jobgate {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Runs `jobgate` with arguments and returns (exit code, stdout, stderr).
pub fn run_jobgate(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_jobgate"))
        .args(args)
        .output()
        .expect("run jobgate");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
