//! Faults around the gateway (issue "[hardening]"): a JWKS endpoint that is slow, failing,
//! garbage, huge or not speaking TLS; upstreams that refuse, hang or close mid-response;
//! slow clients, 10 000 connections, and request headers at and above the limits. Real
//! processes on 127.0.0.1 only.
//!
//! For each fault: the gateway answers with the right status, keeps serving other requests,
//! and does not grow without bound (resident memory and open file descriptors of the
//! `jobgate` process are read from /proc). Figures worth a look (RSS growth, latency,
//! bytes read) are printed on stderr; run with `--nocapture` to see them.
//!
//! Every loop, sleep and read here is bounded.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::issuer::{Behaviour, Signer, TestIssuer, TestKey, github_claims, mint_with_header};
use support::{EchoUpstream, Jobgate, RawResponse, free_port, get, raw_request, wait_until};

const AUD: &str = "https://api.faults.example";

/// The request header limit of Pingora 0.9's HTTP/1 server (`MAX_HEADER_SIZE` in
/// pingora-core `protocols/http/v1/common.rs`): once more than this was read without the
/// end of the header, the request is refused with 400.
const PINGORA_MAX_HEADER_BYTES: usize = 1_048_575;
/// Pingora 0.9's limit on the number of request header lines (`MAX_HEADERS`).
const PINGORA_MAX_HEADERS: usize = 256;
/// jobgate's fetch limits (`keys::FetchLimits::default`).
const JWKS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const JWKS_MAX_BODY: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Config.
// ---------------------------------------------------------------------------------------

/// `[server]` on the given ports with one worker thread unless `extra` sets `threads`.
fn server_section(port: u16, admin_port: u16, extra: &str) -> String {
    let threads = if extra.contains("threads") {
        ""
    } else {
        "threads = 1\n"
    };
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n\
         {threads}grace_period = \"2s\"\n{extra}\n[audit]\noutput = \"off\"\n\n"
    )
}

/// An `[[issuer]]`; `extra` adds keys (`jwks_url`, …).
fn issuer_section(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[issuer]]\nname = \"{name}\"\nurl = \"{url}\"\nalgorithms = [\"RS256\", \"ES256\"]\n\
         min_refetch_interval = \"1s\"\n{extra}\n"
    )
}

fn public_route(name: &str, prefix: &str, upstream: &str, extra: &str) -> String {
    format!(
        "[[route]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"{upstream}\"\n\
         auth = false\n{extra}\n"
    )
}

/// An authenticated route for [`AUD`] that admits every verified token.
fn auth_route(name: &str, prefix: &str, upstream: &str, issuer: &str) -> String {
    format!(
        "[[route]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"{upstream}\"\n\
         issuer = \"{issuer}\"\naudience = \"{AUD}\"\n\n[[route.allow]]\n\n"
    )
}

/// Starts jobgate with `body` after a `[server]` section with `server_extra` keys.
fn start_gateway(server_extra: &str, body: &str) -> Jobgate {
    let (port, admin_port) = (free_port(), free_port());
    let config = format!("{}{body}", server_section(port, admin_port, server_extra));
    Jobgate::start_raw(&config, port, admin_port)
}

// ---------------------------------------------------------------------------------------
// Observing the gateway.
// ---------------------------------------------------------------------------------------

fn pid(gateway: &Jobgate) -> u32 {
    gateway.child.id()
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Open file descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/<pid>/fd")
        .count()
}

/// The soft "Max open files" limit from `/proc/<who>/limits` (`who` a pid or `self`).
fn max_open_files(who: &str) -> Option<u64> {
    let limits = std::fs::read_to_string(format!("/proc/{who}/limits")).ok()?;
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[track_caller]
fn assert_alive(gateway: &mut Jobgate) {
    match gateway.child.try_wait() {
        Ok(None) => {}
        Ok(Some(status)) => panic!("jobgate exited: {status}"),
        Err(error) => panic!("cannot poll jobgate: {error}"),
    }
    let health = get(gateway.admin, "/healthz");
    assert_eq!(health.status, 200, "/healthz: {}", text(&health));
}

fn text(response: &RawResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

fn metric(gateway: &Jobgate, sample: &str) -> f64 {
    gateway.metric(sample).unwrap_or(0.0)
}

/// Waits until `jobgate_jwks_refresh_total{issuer,result="error"}` reaches `count`.
#[track_caller]
fn wait_for_fetch_errors(gateway: &Jobgate, issuer: &str, count: f64, limit: Duration) {
    let sample = format!("jobgate_jwks_refresh_total{{issuer=\"{issuer}\",result=\"error\"}}");
    let reached = wait_until(limit, || metric(gateway, &sample) >= count);
    assert!(
        reached,
        "{sample} is {} after {limit:?}",
        metric(gateway, &sample)
    );
}

/// `GET path` on the public route answers 200 from the echo upstream, within `limit`.
#[track_caller]
fn assert_public_ok(gateway: &Jobgate, path: &str, limit: Duration) {
    let started = Instant::now();
    let response = get(gateway.addr, path);
    let took = started.elapsed();
    assert_eq!(
        response.status,
        200,
        "public {path}: {} {}",
        response.status,
        text(&response)
    );
    assert!(took < limit, "public {path} took {took:?}");
}

#[track_caller]
fn assert_refusal(response: &RawResponse, status: u16, reason: &str, route: &str) {
    assert_eq!(
        response.status,
        status,
        "expected {status} {reason}, got {}: {}",
        response.status,
        text(response)
    );
    let body = response.json();
    assert_eq!(body["reason"], reason, "{body}");
    assert_eq!(body["route"], route, "{body}");
}

/// 503 `keys_unavailable` with `Retry-After`, never an `invalid_token` challenge.
#[track_caller]
fn assert_keys_unavailable(response: &RawResponse, route: &str) {
    assert_refusal(response, 503, "keys_unavailable", route);
    assert!(
        response.header("retry-after").is_some(),
        "no Retry-After on keys_unavailable"
    );
    assert!(
        !response
            .header("www-authenticate")
            .is_some_and(|value| value.contains("invalid_token")),
        "an outage looks like a bad token"
    );
}

/// `GET target` with a bearer token.
fn call(gateway: &Jobgate, target: &str, token: &str) -> RawResponse {
    raw_request(
        gateway.addr,
        "GET",
        target,
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    )
}

/// A well-formed token claiming `issuer_url`, signed by a key nobody publishes: enough to
/// reach the key lookup.
fn token_for(issuer_url: &str) -> String {
    let key = TestKey::rsa("k1");
    let claims = github_claims(issuer_url, AUD, &json!({}));
    mint_with_header(
        &json!({"alg": "RS256", "typ": "JWT", "kid": "k1"}),
        &claims,
        Signer::Key(&key),
    )
}

// ---------------------------------------------------------------------------------------
// Raw TCP servers: the faults that well-behaved HTTP servers cannot produce.
// ---------------------------------------------------------------------------------------

type Handler = dyn Fn(TcpStream, &AtomicBool) + Send + Sync;

/// A loopback TCP server running `handler` on a thread per connection. Stopped on drop;
/// every handler is bounded by socket timeouts and the stop flag.
struct RawServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RawServer {
    fn start(handler: impl Fn(TcpStream, &AtomicBool) + Send + Sync + 'static) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a raw server");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("raw server address");
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (count, stopping) = (Arc::clone(&connections), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stopping.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
                        let handler = Arc::clone(&handler);
                        let stopping = Arc::clone(&stopping);
                        std::thread::spawn(move || handler(stream, &stopping));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        RawServer {
            addr,
            connections,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads until the end of a request head (or `limit` bytes, EOF, timeout). The bytes read.
fn read_head(stream: &mut TcpStream, limit: usize) -> Vec<u8> {
    let mut head = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    while head.len() < limit {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                head.extend_from_slice(&buffer[..n]);
                let tail = head.len().saturating_sub(n + 3);
                if head[tail..].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
        }
    }
    head
}

/// Sleeps until `stop` is set, at most `limit`.
fn hold(stop: &AtomicBool, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How a raw exchange ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// The peer closed the connection.
    Closed,
    /// A read error (reset).
    Error(ErrorKind),
    /// Nothing more within the limit: the connection is still open.
    Open,
}

/// Writes `request` (a write error is tolerated: the peer may refuse mid-way), then reads
/// until the peer closes or `limit` passes.
fn exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> (Vec<u8>, End, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("write timeout");
    let _ = stream.write_all(request);
    let (bytes, end) = read_until_closed(&mut stream, started + limit);
    (bytes, end, started.elapsed())
}

fn read_until_closed(stream: &mut TcpStream, deadline: Instant) -> (Vec<u8>, End) {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (bytes, End::Open);
        }
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("read timeout");
        match stream.read(&mut buffer) {
            Ok(0) => return (bytes, End::Closed),
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (bytes, End::Open);
            }
            Err(error) => return (bytes, End::Error(error.kind())),
        }
    }
}

/// The status code of a raw response, if it has a status line.
fn status_of(bytes: &[u8]) -> Option<u16> {
    let line_end = bytes.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&bytes[..line_end]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The body of a raw response (everything after the head).
fn body_of(bytes: &[u8]) -> &[u8] {
    match bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => &bytes[at + 4..],
        None => &[],
    }
}

/// Reads one response with a `Content-Length` from a keep-alive connection; its status.
fn read_response(stream: &mut TcpStream) -> Option<u16> {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return None,
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
        }
        if bytes.len() > 64 * 1024 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|value| value.trim().parse().ok())?;
    while bytes.len() < head_end + length {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return None,
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
        }
    }
    status_of(&bytes)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------
// The JWKS endpoint.
// ---------------------------------------------------------------------------------------

/// A gateway with the authenticated route `api` (`/api`) of `issuer` (named `test`) and the
/// public route `public` (`/public`), both to `upstream`.
fn gateway_for(issuer: &TestIssuer, upstream: &EchoUpstream) -> Jobgate {
    start_gateway(
        "",
        &format!(
            "{}{}{}",
            issuer_section("test", &issuer.url(), ""),
            auth_route("api", "/api", &upstream.url(), "test"),
            public_route("public", "/public", &upstream.url(), "")
        ),
    )
}

#[test]
fn jwks_slower_than_the_fetch_timeout_at_start_is_503_not_ready_and_public_routes_serve() {
    let issuer = TestIssuer::start();
    // Far longer than the fetch timeout: an error within it proves the timeout fired.
    issuer.set_hang_duration(Duration::from_secs(30));
    issuer.set_jwks_behaviour(Behaviour::Hang);
    let upstream = EchoUpstream::start("echo");
    let started = Instant::now();
    let mut gateway = gateway_for(&issuer, &upstream);
    let token = issuer.mint_github(AUD);

    // While the first fetch hangs: nobody waits for it.
    for _ in 0..5 {
        let asked = Instant::now();
        let response = call(&gateway, "/api/x", &token);
        assert_keys_unavailable(&response, "api");
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "a request waited {:?} for the hung fetch",
            asked.elapsed()
        );
        assert_public_ok(&gateway, "/public/x", Duration::from_secs(3));
        std::thread::sleep(Duration::from_millis(100));
    }
    let ready = get(gateway.admin, "/readyz");
    assert_eq!(ready.status, 503, "{}", text(&ready));
    assert!(text(&ready).contains("test"), "{}", text(&ready));

    // The fetch gives up after its own timeout, not after the issuer's 30 s.
    wait_for_fetch_errors(&gateway, "test", 1.0, Duration::from_secs(20));
    let first_error = started.elapsed();
    eprintln!("jwks hang: first fetch error {first_error:?} after start");
    assert!(
        first_error < JWKS_FETCH_TIMEOUT + Duration::from_secs(8),
        "the hung fetch took {first_error:?} to fail"
    );
    assert!(issuer.jwks_fetches() >= 1);
    assert_keys_unavailable(&call(&gateway, "/api/x", &token), "api");
    assert_public_ok(&gateway, "/public/x", Duration::from_secs(3));
    assert_eq!(
        upstream.hits(),
        6,
        "only public requests reach the upstream"
    );
    assert_alive(&mut gateway);
}

/// The JWKS answers with `behaviour` from the start: 503 and not ready, public routes
/// serve, requests cause no fetches, and healing brings the keys without a restart.
fn jwks_broken_at_start(behaviour: Behaviour) {
    let issuer = TestIssuer::start();
    issuer.set_jwks_behaviour(behaviour);
    let upstream = EchoUpstream::start("echo");
    let mut gateway = gateway_for(&issuer, &upstream);
    let token = issuer.mint_github(AUD);
    wait_for_fetch_errors(&gateway, "test", 1.0, Duration::from_secs(10));
    let ready = get(gateway.admin, "/readyz");
    assert_eq!(ready.status, 503, "{}", text(&ready));
    assert!(text(&ready).contains("test"), "{}", text(&ready));

    let fetches = issuer.jwks_fetches();
    let rss_before = rss_kib(pid(&gateway));
    for round in 0..40 {
        let asked = Instant::now();
        assert_keys_unavailable(&call(&gateway, "/api/x", &token), "api");
        assert!(asked.elapsed() < Duration::from_secs(3), "round {round}");
        if round % 10 == 0 {
            assert_public_ok(&gateway, "/public/x", Duration::from_secs(3));
        }
    }
    // Without keys there is no refetch to ask for: only the backoff schedule fetches.
    let during = issuer.jwks_fetches() - fetches;
    assert!(during <= 3, "{during} JWKS fetches during 40 requests");
    let rss_after = rss_kib(pid(&gateway));
    eprintln!(
        "jwks {behaviour:?}: {during} fetches during 40 refused requests, RSS {:.1} -> {:.1} MiB",
        mib(rss_before),
        mib(rss_after)
    );
    assert!(
        rss_after < rss_before + 16 * 1024,
        "RSS grew by {} KiB",
        rss_after - rss_before
    );

    issuer.heal();
    let healed = wait_until(Duration::from_secs(30), || {
        get(gateway.admin, "/readyz").status == 200
    });
    assert!(healed, "not ready 30 s after the JWKS healed");
    let response = call(&gateway, "/api/x", &token);
    assert_eq!(response.status, 200, "{}", text(&response));
    assert_alive(&mut gateway);
}

#[test]
fn jwks_returning_500_at_start_is_503_until_it_heals() {
    jwks_broken_at_start(Behaviour::Fail);
}

#[test]
fn jwks_returning_garbage_at_start_is_503_until_it_heals() {
    jwks_broken_at_start(Behaviour::Garbage);
}

/// How [`huge_jwks`] sends its body.
#[derive(Clone, Copy)]
enum Huge {
    /// Announced with a `Content-Length` of this many bytes.
    Declared(usize),
    /// Chunked, no length, this many bytes unless the client hangs up.
    Streamed(usize),
}

/// A JWKS endpoint answering every request with a huge body; records how many body bytes
/// each connection managed to write before the client hung up.
fn huge_jwks(mode: Huge, written: Arc<Mutex<Vec<usize>>>) -> RawServer {
    RawServer::start(move |mut stream, stop| {
        let _ = read_head(&mut stream, 64 * 1024);
        let head = match mode {
            Huge::Declared(size) => format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {size}\r\n\r\n"
            ),
            Huge::Streamed(_) => String::from(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
            ),
        };
        if stream.write_all(head.as_bytes()).is_err() {
            return;
        }
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        let total = match mode {
            Huge::Declared(size) | Huge::Streamed(size) => size,
        };
        while sent < total && !stop.load(Ordering::SeqCst) {
            let ok = match mode {
                Huge::Declared(_) => stream.write_all(&chunk).is_ok(),
                Huge::Streamed(_) => stream
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .and_then(|()| stream.write_all(&chunk))
                    .and_then(|()| stream.write_all(b"\r\n"))
                    .is_ok(),
            };
            if !ok {
                break;
            }
            sent += chunk.len();
        }
        written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sent);
    })
}

#[test]
fn jwks_body_larger_than_the_limit_is_refused_and_memory_stays_bounded() {
    let declared_writes = Arc::new(Mutex::new(Vec::new()));
    let streamed_writes = Arc::new(Mutex::new(Vec::new()));
    let declared = huge_jwks(
        Huge::Declared(64 * JWKS_MAX_BODY),
        Arc::clone(&declared_writes),
    );
    let streamed = huge_jwks(
        Huge::Streamed(64 * JWKS_MAX_BODY),
        Arc::clone(&streamed_writes),
    );
    let upstream = EchoUpstream::start("echo");
    let jwks_url = |server: &RawServer| format!("jwks_url = \"{}/jwks\"\n", server.url());
    let mut gateway = start_gateway(
        "",
        &format!(
            "{}{}{}{}{}",
            issuer_section("declared", &declared.url(), &jwks_url(&declared)),
            issuer_section("streamed", &streamed.url(), &jwks_url(&streamed)),
            auth_route("declared", "/declared", &upstream.url(), "declared"),
            auth_route("streamed", "/streamed", &upstream.url(), "streamed"),
            public_route("public", "/public", &upstream.url(), "")
        ),
    );
    let pid = pid(&gateway);
    wait_for_fetch_errors(&gateway, "declared", 1.0, Duration::from_secs(15));
    wait_for_fetch_errors(&gateway, "streamed", 1.0, Duration::from_secs(15));
    let rss_first = rss_kib(pid);
    // Retries back off 1 s, 2 s: two more failed fetches each.
    wait_for_fetch_errors(&gateway, "declared", 3.0, Duration::from_secs(20));
    wait_for_fetch_errors(&gateway, "streamed", 3.0, Duration::from_secs(20));
    let rss_later = rss_kib(pid);
    let streamed_max = streamed_writes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .copied()
        .max()
        .unwrap_or(0);
    let declared_max = declared_writes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .copied()
        .max()
        .unwrap_or(0);
    eprintln!(
        "huge JWKS: RSS after the first failed fetches {:.1} MiB, after three {:.1} MiB; \
         the most one connection could write before jobgate hung up: streamed {:.1} MiB, \
         declared {:.1} MiB (of 64 MiB offered)",
        mib(rss_first),
        mib(rss_later),
        streamed_max as f64 / 1_048_576.0,
        declared_max as f64 / 1_048_576.0
    );
    assert!(
        rss_later < rss_first + 16 * 1024,
        "RSS grew from {rss_first} KiB to {rss_later} KiB over failed huge fetches"
    );
    assert!(rss_later < 256 * 1024, "RSS {rss_later} KiB");
    // jobgate stopped reading: the 64 MiB never got through (socket buffers hold a few MiB).
    assert!(
        streamed_max < 32 * JWKS_MAX_BODY,
        "a streamed JWKS connection wrote {streamed_max} bytes"
    );
    assert!(
        declared_max < 32 * JWKS_MAX_BODY,
        "a declared JWKS connection wrote {declared_max} bytes"
    );
    let ready = get(gateway.admin, "/readyz");
    assert_eq!(ready.status, 503);
    assert!(text(&ready).contains("declared") && text(&ready).contains("streamed"));
    assert_keys_unavailable(
        &call(&gateway, "/declared/x", &token_for(&declared.url())),
        "declared",
    );
    assert_keys_unavailable(
        &call(&gateway, "/streamed/x", &token_for(&streamed.url())),
        "streamed",
    );
    assert_public_ok(&gateway, "/public/x", Duration::from_secs(3));
    assert_alive(&mut gateway);
}

#[test]
fn tls_failure_to_the_issuer_is_503_and_the_gateway_keeps_serving() {
    // An https:// issuer whose server speaks plain HTTP, and one that closes at once.
    let plain = RawServer::start(|mut stream, _| {
        let mut hello = [0u8; 1024];
        let _ = stream.read(&mut hello);
        let _ = stream.write_all(
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 8\r\nconnection: close\r\n\r\nnot TLS\n",
        );
    });
    let closing = RawServer::start(|stream, _| drop(stream));
    let upstream = EchoUpstream::start("echo");
    let https = |server: &RawServer| format!("https://{}", server.addr);
    let mut gateway = start_gateway(
        "",
        &format!(
            "{}{}{}{}{}",
            issuer_section("plain", &https(&plain), ""),
            issuer_section("closing", &https(&closing), ""),
            auth_route("plain", "/plain", &upstream.url(), "plain"),
            auth_route("closing", "/closing", &upstream.url(), "closing"),
            public_route("public", "/public", &upstream.url(), "")
        ),
    );
    wait_for_fetch_errors(&gateway, "plain", 2.0, Duration::from_secs(15));
    wait_for_fetch_errors(&gateway, "closing", 2.0, Duration::from_secs(15));
    assert!(plain.connections() >= 2, "the plain server was never tried");
    assert!(
        closing.connections() >= 2,
        "the closing server was never tried"
    );
    let ready = get(gateway.admin, "/readyz");
    assert_eq!(ready.status, 503);
    assert!(text(&ready).contains("plain") && text(&ready).contains("closing"));
    for _ in 0..5 {
        assert_keys_unavailable(
            &call(&gateway, "/plain/x", &token_for(&https(&plain))),
            "plain",
        );
        assert_keys_unavailable(
            &call(&gateway, "/closing/x", &token_for(&https(&closing))),
            "closing",
        );
        assert_public_ok(&gateway, "/public/x", Duration::from_secs(3));
    }
    assert_eq!(upstream.hits(), 5);
    assert_alive(&mut gateway);
}

// ---------------------------------------------------------------------------------------
// Upstreams.
// ---------------------------------------------------------------------------------------

#[test]
fn upstream_refusing_connections_is_502_on_public_and_authenticated_routes() {
    let issuer = TestIssuer::start();
    let upstream = EchoUpstream::start("echo");
    // A port that was free a moment ago and that nobody listens on.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut gateway = start_gateway(
        "",
        &format!(
            "{}{}{}{}",
            issuer_section("test", &issuer.url(), ""),
            public_route("dead", "/dead", &dead, ""),
            auth_route("dead-auth", "/secure", &dead, "test"),
            public_route("public", "/public", &upstream.url(), "")
        ),
    );
    assert!(wait_until(Duration::from_secs(20), || {
        get(gateway.admin, "/readyz").status == 200
    }));
    let token = issuer.mint_github(AUD);
    let pid = pid(&gateway);
    let fds_before = open_fds(pid);
    for _ in 0..25 {
        let asked = Instant::now();
        assert_refusal(
            &get(gateway.addr, "/dead/x"),
            502,
            "upstream_unreachable",
            "dead",
        );
        assert_refusal(
            &call(&gateway, "/secure/x", &token),
            502,
            "upstream_unreachable",
            "dead-auth",
        );
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "took {:?}",
            asked.elapsed()
        );
    }
    assert_public_ok(&gateway, "/public/x", Duration::from_secs(3));
    let sample = "jobgate_requests_total{outcome=\"upstream_error\",route=\"dead\"}";
    assert!(wait_until(Duration::from_secs(5), || metric(
        &gateway, sample
    ) >= 25.0));
    let fds_after = open_fds(pid);
    eprintln!("refused upstream: jobgate fds {fds_before} -> {fds_after} after 50 failures");
    assert!(
        fds_after <= fds_before + 10,
        "fds {fds_before} -> {fds_after}"
    );
    assert_alive(&mut gateway);
}

#[test]
fn upstream_that_never_answers_is_502_after_the_route_timeout_and_others_are_unaffected() {
    let hanging = RawServer::start(|mut stream, stop| {
        let _ = read_head(&mut stream, 64 * 1024);
        hold(stop, Duration::from_secs(30));
    });
    let upstream = EchoUpstream::start("echo");
    let mut gateway = start_gateway(
        "",
        &format!(
            "{}{}",
            public_route("hang", "/hang", &hanging.url(), "timeout = \"1s\"\n"),
            public_route("public", "/public", &upstream.url(), "")
        ),
    );
    let pid = pid(&gateway);
    let fds_before = open_fds(pid);
    let addr = gateway.addr;
    let waiting: Vec<_> = (0..5)
        .map(|_| {
            std::thread::spawn(move || {
                let asked = Instant::now();
                let response = get(addr, "/hang/x");
                (response, asked.elapsed())
            })
        })
        .collect();
    // Meanwhile the other route answers at once.
    for _ in 0..10 {
        assert_public_ok(&gateway, "/public/x", Duration::from_secs(2));
        std::thread::sleep(Duration::from_millis(50));
    }
    for handle in waiting {
        let (response, took) = handle.join().expect("a /hang request thread");
        assert_refusal(&response, 502, "upstream_unreachable", "hang");
        eprintln!("hanging upstream: 502 after {took:?} (route timeout 1 s)");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(10),
            "502 after {took:?}"
        );
    }
    assert!(hanging.connections() >= 5);
    // The connections to the silent upstream are let go.
    let released = wait_until(Duration::from_secs(5), || open_fds(pid) <= fds_before + 2);
    let fds_after = open_fds(pid);
    eprintln!("hanging upstream: jobgate fds {fds_before} -> {fds_after}");
    assert!(released, "fds {fds_before} -> {fds_after}");
    assert_alive(&mut gateway);
}

#[test]
fn upstream_closing_mid_response_ends_the_client_response_without_a_hang() {
    let truncating = RawServer::start(|mut stream, _| {
        let _ = read_head(&mut stream, 64 * 1024);
        let _ = stream.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000\r\n\r\n0123456789",
        );
        let _ = stream.flush();
        // Dropped: the connection closes with 990 bytes missing.
    });
    let upstream = EchoUpstream::start("echo");
    let mut gateway = start_gateway(
        "",
        &format!(
            "{}{}",
            public_route("trunc", "/trunc", &truncating.url(), "timeout = \"5s\"\n"),
            public_route("public", "/public", &upstream.url(), "")
        ),
    );
    for round in 0..5 {
        let (bytes, end, took) = exchange(
            gateway.addr,
            b"GET /trunc/x HTTP/1.1\r\nhost: localhost\r\n\r\n",
            Duration::from_secs(15),
        );
        let status = status_of(&bytes);
        let body = body_of(&bytes);
        eprintln!(
            "truncated upstream, round {round}: status {status:?}, {} body bytes, {end:?} after {took:?}",
            body.len()
        );
        assert_ne!(end, End::Open, "the client was left hanging");
        assert!(took < Duration::from_secs(10), "took {took:?}");
        match status {
            // The head was already forwarded: the client sees a short body and the close.
            Some(200) => assert!(
                body.len() < 1000,
                "a complete body from a truncated upstream"
            ),
            // Or the gateway answered for the failure itself.
            Some(502) => {}
            other => panic!(
                "unexpected status {other:?}: {}",
                String::from_utf8_lossy(&bytes)
            ),
        }
        assert_public_ok(&gateway, "/public/x", Duration::from_secs(3));
    }
    assert_eq!(truncating.connections(), 5);
    assert_alive(&mut gateway);
}

// ---------------------------------------------------------------------------------------
// Clients.
// ---------------------------------------------------------------------------------------

// KNOWN GAP (reported to the lead): jobgate sets no request-header timeout. Pingora 0.9's
// HTTP/1 server applies a 60 s timeout to each read of a new connection (and none at all to
// the header read of a reused keep-alive connection), never a deadline for the whole
// header, and `MAX_HEADER_SIZE` (1 MiB) is the only bound. A client sending one header byte
// every < 60 s therefore keeps its connection, task and buffer until it has sent 1 MiB
// (~29 hours at 10 bytes/s). This test checks what matters today — other clients are
// served quickly, memory stays bounded, slow requests complete when they finish — and
// prints how many slow connections are still open.
#[test]
fn slowloris_clients_do_not_starve_others() {
    const SLOW: usize = 200;
    const ROUNDS: usize = 50;
    let upstream = EchoUpstream::start("echo");
    let mut gateway = start_gateway("", &public_route("public", "/public", &upstream.url(), ""));
    let pid = pid(&gateway);
    let rss_before = rss_kib(pid);
    let fds_before = open_fds(pid);
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let mut stream = TcpStream::connect_timeout(&gateway.addr, Duration::from_secs(5))
                .expect("connect a slow client");
            stream
                .set_write_timeout(Some(Duration::from_secs(5)))
                .expect("write timeout");
            stream
                .write_all(b"GET /public/slow HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                .expect("request line");
            stream
        })
        .collect();

    // Normal clients, every 100 ms while the slow ones drip.
    let addr = gateway.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = Arc::clone(&stop);
    let normal = std::thread::spawn(move || {
        let mut latencies = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !stopping.load(Ordering::SeqCst) && Instant::now() < deadline {
            let asked = Instant::now();
            let response = get(addr, "/public/fast");
            latencies.push((response.status, asked.elapsed()));
            std::thread::sleep(Duration::from_millis(100));
        }
        latencies
    });
    let mut write_errors = 0;
    for _ in 0..ROUNDS {
        for stream in &mut slow {
            if stream.write_all(b"a").is_err() {
                write_errors += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::SeqCst);
    let latencies = normal.join().expect("the normal client thread");
    let rss_during = rss_kib(pid);
    let fds_during = open_fds(pid);

    // What became of the slow connections: still waiting, closed, or answered?
    let (mut open, mut closed, mut answered) = (0, 0, 0);
    for stream in &mut slow {
        let (bytes, end) = read_until_closed(stream, Instant::now() + Duration::from_millis(5));
        match (bytes.is_empty(), end) {
            (false, _) => answered += 1,
            (true, End::Open) => open += 1,
            (true, _) => closed += 1,
        }
    }
    // Finishing the header gets each open one served.
    let mut served = 0;
    for stream in &mut slow {
        if stream.write_all(b"\r\n\r\n").is_ok() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            if read_response(stream) == Some(200) {
                served += 1;
            }
        }
    }
    let mut sorted: Vec<Duration> = latencies.iter().map(|(_, took)| *took).collect();
    sorted.sort();
    let worst = sorted.last().copied().unwrap_or_default();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
    eprintln!(
        "slowloris: {SLOW} clients x {ROUNDS} bytes at 10 bytes/s; {} normal requests, median \
         {median:?}, worst {worst:?}; after {:.1} s the slow ones were: {open} still open, \
         {closed} closed by jobgate, {answered} answered; {write_errors} write errors; \
         {served} served once finished; jobgate RSS {:.1} -> {:.1} MiB, fds {fds_before} -> {fds_during}",
        latencies.len(),
        ROUNDS as f64 / 10.0,
        mib(rss_before),
        mib(rss_during)
    );
    assert!(
        latencies.len() >= 10,
        "only {} normal requests",
        latencies.len()
    );
    assert!(
        latencies.iter().all(|(status, _)| *status == 200),
        "{latencies:?}"
    );
    assert!(
        worst < Duration::from_secs(5),
        "a normal request took {worst:?}"
    );
    assert!(
        rss_during < rss_before + 64 * 1024,
        "RSS {rss_before} -> {rss_during} KiB"
    );
    assert_eq!(open + closed + answered, SLOW);
    assert_eq!(served, open, "a slow request that finished was not served");
    drop(slow);
    assert_public_ok(&gateway, "/public/after", Duration::from_secs(3));
    assert_alive(&mut gateway);
}

/// Opens `count` connections to `addr`, in batches, each carrying one keep-alive request
/// answered 200, and returns them open and idle.
fn open_keep_alive(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    const BATCH: usize = 500;
    let request = b"GET /public/keep HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let mut held: Vec<TcpStream> = Vec::with_capacity(count);
    while held.len() < count {
        let mut batch: Vec<TcpStream> = (0..BATCH.min(count - held.len()))
            .map(|_| {
                let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                    .expect("connect (is the listen backlog full?)");
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .expect("read timeout");
                stream
                    .set_write_timeout(Some(Duration::from_secs(5)))
                    .expect("write timeout");
                stream
                    .write_all(request)
                    .expect("send a keep-alive request");
                stream
            })
            .collect();
        for stream in &mut batch {
            assert_eq!(
                read_response(stream),
                Some(200),
                "after {} connections",
                held.len()
            );
        }
        held.extend(batch);
    }
    held
}

#[test]
fn ten_thousand_idle_keep_alive_connections_are_held_and_others_still_served() {
    const CONNECTIONS: usize = 10_000;
    let own_limit = max_open_files("self").unwrap_or(0);
    if own_limit < 20_000 {
        eprintln!(
            "SKIPPED ten_thousand_idle_keep_alive_connections: the test process may open \
             {own_limit} files (needs 20 000: run `ulimit -n 20000` first)"
        );
        return;
    }
    let upstream = EchoUpstream::start("echo");
    let mut gateway = start_gateway("", &public_route("public", "/public", &upstream.url(), ""));
    let pid = pid(&gateway);
    let gateway_limit = max_open_files(&pid.to_string()).unwrap_or(0);
    if gateway_limit < (CONNECTIONS + 1_000) as u64 {
        eprintln!(
            "SKIPPED ten_thousand_idle_keep_alive_connections: jobgate may open {gateway_limit} \
             files (needs {})",
            CONNECTIONS + 1_000
        );
        return;
    }
    for _ in 0..20 {
        assert_public_ok(&gateway, "/public/warm", Duration::from_secs(3));
    }
    let rss_before = rss_kib(pid);
    let fds_before = open_fds(pid);
    let started = Instant::now();
    let mut held = open_keep_alive(gateway.addr, CONNECTIONS);
    let opened = started.elapsed();
    let rss_held = rss_kib(pid);
    let fds_held = open_fds(pid);

    // Others are still served, on new connections and on held ones.
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let asked = Instant::now();
        assert_public_ok(&gateway, "/public/new", Duration::from_secs(5));
        worst = worst.max(asked.elapsed());
    }
    let request = b"GET /public/again HTTP/1.1\r\nHost: localhost\r\n\r\n";
    for stream in held.iter_mut().step_by(CONNECTIONS / 100) {
        stream.write_all(request).expect("reuse a held connection");
        assert_eq!(
            read_response(stream),
            Some(200),
            "a held connection was dropped"
        );
    }
    let per_connection = (rss_held.saturating_sub(rss_before) * 1024) / CONNECTIONS as u64;
    eprintln!(
        "10k connections: opened and used in {opened:?}; jobgate RSS {:.1} -> {:.1} MiB \
         (~{per_connection} bytes per idle connection), fds {fds_before} -> {fds_held}; \
         worst new request while held {worst:?}",
        mib(rss_before),
        mib(rss_held)
    );
    assert!(
        fds_held >= fds_before + CONNECTIONS,
        "jobgate holds {fds_held} fds"
    );
    // Measured 42–45 KB with jemalloc (54–58 KB with glibc malloc, 104 KB with mimalloc); the bound leaves
    // room for a noisy machine while still catching a doubling.
    assert!(
        per_connection < 96 * 1024,
        "{per_connection} bytes of RSS per idle connection"
    );

    // Released, the descriptors go back (pooled upstream connections may stay).
    drop(held);
    let closing = Instant::now();
    let released = wait_until(Duration::from_secs(20), || open_fds(pid) < fds_before + 300);
    let fds_released = open_fds(pid);
    eprintln!(
        "10k connections: released after {:?}, fds {fds_released}, RSS {:.1} MiB (the \
         allocator keeps it)",
        closing.elapsed(),
        mib(rss_kib(pid))
    );
    assert!(released, "jobgate still holds {fds_released} fds");
    assert_public_ok(&gateway, "/public/after", Duration::from_secs(3));
    assert_alive(&mut gateway);
}

/// Runs for about a minute: `cargo test --test faults -- --ignored waves`.
#[test]
#[ignore = "slow (three waves of 10 000 connections, ~60 s); run it by name with --ignored"]
fn repeated_waves_of_ten_thousand_connections_plateau() {
    const CONNECTIONS: usize = 10_000;
    if max_open_files("self").unwrap_or(0) < 20_000 {
        eprintln!("SKIPPED: the test process may not open 20 000 files");
        return;
    }
    let upstream = EchoUpstream::start("echo");
    let mut gateway = start_gateway("", &public_route("public", "/public", &upstream.url(), ""));
    let pid = pid(&gateway);
    let mut peaks = Vec::new();
    for wave in 0..3 {
        let started = Instant::now();
        let held = open_keep_alive(gateway.addr, CONNECTIONS);
        peaks.push(rss_kib(pid));
        drop(held);
        eprintln!(
            "wave {wave}: 10k connections in {:?}, RSS at the peak {:.1} MiB",
            started.elapsed(),
            mib(peaks[wave])
        );
        assert!(wait_until(Duration::from_secs(15), || open_fds(pid) < 1_100));
    }
    // glibc keeps freed memory, and the second wave does not reuse all of the first's (it
    // peaks near twice as high); after that the footprint is flat, not cumulative.
    assert!(
        peaks[2] < peaks[1] + peaks[1] / 10,
        "RSS peaks per wave: {peaks:?} KiB"
    );
    assert_public_ok(&gateway, "/public/after", Duration::from_secs(3));
    assert_alive(&mut gateway);
}

/// Runs for about 70 s: `cargo test --test faults -- --ignored idle_connections`.
#[test]
#[ignore = "slow (~70 s): run it by name with --ignored"]
fn idle_connections_are_closed_within_seventy_seconds() {
    let upstream = EchoUpstream::start("echo");
    let mut gateway = start_gateway("", &public_route("public", "/public", &upstream.url(), ""));
    let pid = pid(&gateway);
    // One connection that never sends anything, one idle after a request.
    let mut silent =
        TcpStream::connect_timeout(&gateway.addr, Duration::from_secs(5)).expect("connect");
    let mut reused = open_keep_alive(gateway.addr, 1).remove(0);
    let fds_idle = open_fds(pid);
    std::thread::sleep(Duration::from_secs(70));
    let (_, silent_end) =
        read_until_closed(&mut silent, Instant::now() + Duration::from_millis(50));
    let (_, reused_end) =
        read_until_closed(&mut reused, Instant::now() + Duration::from_millis(50));
    eprintln!(
        "after 70 s idle: the silent connection is {silent_end:?}, the one idle after a \
         request is {reused_end:?}; jobgate fds {fds_idle} -> {}",
        open_fds(pid)
    );
    assert_ne!(silent_end, End::Open, "a connection that never sent a byte");
    assert_ne!(
        reused_end,
        End::Open,
        "a keep-alive connection idle after one request"
    );
    assert_alive(&mut gateway);
}

// ---------------------------------------------------------------------------------------
// Limits on what a request may carry.
// ---------------------------------------------------------------------------------------

/// An upstream with no header limit of its own: answers 200 with the size of the request
/// head it received.
fn head_measuring_upstream() -> RawServer {
    RawServer::start(|mut stream, _| {
        let head = read_head(&mut stream, 8 * 1024 * 1024);
        let body = head.len().to_string();
        let _ = stream.write_all(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    })
}

/// A request to `/big/x` with `headers` extra header lines, each `name: value`.
fn request_with(headers: &[(String, String)]) -> Vec<u8> {
    let mut request = String::from("GET /big/x HTTP/1.1\r\nHost: localhost\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    request.into_bytes()
}

#[test]
fn request_headers_at_and_above_the_size_and_count_limits() {
    let measuring = head_measuring_upstream();
    let echo = EchoUpstream::start("echo");
    let mut gateway = start_gateway(
        "",
        &format!(
            "{}{}",
            public_route("big", "/big", &measuring.url(), ""),
            public_route("public", "/public", &echo.url(), "")
        ),
    );
    let pid = pid(&gateway);
    let rss_before = rss_kib(pid);
    let framing = request_with(&[("X-Big".into(), String::new())]).len();

    // Just under the size limit: proxied whole.
    let value = "a".repeat(PINGORA_MAX_HEADER_BYTES - framing - 1024);
    let request = request_with(&[("X-Big".into(), value.clone())]);
    let (bytes, _, took) = exchange(gateway.addr, &request, Duration::from_secs(20));
    eprintln!(
        "header of {} bytes (limit {PINGORA_MAX_HEADER_BYTES}): status {:?} after {took:?}",
        request.len(),
        status_of(&bytes)
    );
    assert_eq!(
        status_of(&bytes),
        Some(200),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let received: usize = String::from_utf8_lossy(body_of(&bytes))
        .parse()
        .expect("the upstream's byte count");
    assert!(received > value.len(), "the upstream got {received} bytes");
    assert_eq!(measuring.connections(), 1);

    // Just above it, and far above it: 400 or a reset, never proxied, never a crash.
    for size in [
        PINGORA_MAX_HEADER_BYTES + 4096,
        4 * PINGORA_MAX_HEADER_BYTES,
    ] {
        let value = "a".repeat(size - framing);
        let request = request_with(&[("X-Big".into(), value)]);
        let (bytes, end, took) = exchange(gateway.addr, &request, Duration::from_secs(20));
        eprintln!(
            "header of {} bytes: status {:?}, {end:?} after {took:?}",
            request.len(),
            status_of(&bytes)
        );
        assert_ne!(end, End::Open, "the connection was left open");
        match status_of(&bytes) {
            Some(status) => assert!((400..500).contains(&status), "status {status}"),
            None => assert!(
                matches!(end, End::Error(_) | End::Closed),
                "neither a 4xx nor a close"
            ),
        }
        assert_eq!(
            measuring.connections(),
            1,
            "an oversized header was proxied"
        );
        assert_public_ok(&gateway, "/public/x", Duration::from_secs(3));
    }

    // The number of header lines: Host + Connection + the rest.
    let lines = |count: usize| -> Vec<(String, String)> {
        (0..count)
            .map(|i| (format!("X-H{i}"), "v".into()))
            .collect()
    };
    let at_limit = request_with(&lines(PINGORA_MAX_HEADERS - 2));
    let (bytes, _, _) = exchange(gateway.addr, &at_limit, Duration::from_secs(10));
    assert_eq!(
        status_of(&bytes),
        Some(200),
        "{PINGORA_MAX_HEADERS} header lines"
    );
    assert_eq!(measuring.connections(), 2);
    let above = request_with(&lines(PINGORA_MAX_HEADERS - 1));
    let (bytes, end, _) = exchange(gateway.addr, &above, Duration::from_secs(10));
    eprintln!(
        "{} header lines: status {:?}, {end:?}",
        PINGORA_MAX_HEADERS + 1,
        status_of(&bytes)
    );
    assert_eq!(
        status_of(&bytes),
        Some(400),
        "{} header lines",
        PINGORA_MAX_HEADERS + 1
    );
    assert_eq!(measuring.connections(), 2);

    let rss_after = rss_kib(pid);
    eprintln!(
        "header limits: jobgate RSS {:.1} -> {:.1} MiB",
        mib(rss_before),
        mib(rss_after)
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS {rss_before} -> {rss_after} KiB"
    );
    assert_alive(&mut gateway);
}

/// A token of exactly `length` bytes from `issuer`, valid, padded with a claim (and, for
/// lengths base64 cannot reach with the claim alone, a header member).
fn token_of_length(issuer: &TestIssuer, length: usize) -> String {
    let key = issuer.signing_key();
    let b64_len = |bytes: usize| (bytes * 4).div_ceil(3);
    let base = issuer.github_claims_with(AUD, json!({"pad": ""}));
    let base_len = base.to_string().len();
    for header_pad in 0..4 {
        let header: Value =
            json!({"alg": "RS256", "typ": "JWT", "kid": key.kid(), "x": "y".repeat(header_pad)});
        // An RSA-2048 signature is 342 base64url characters.
        let fixed = b64_len(header.to_string().len()) + 2 + 342;
        let Some(room) = length.checked_sub(fixed) else {
            continue;
        };
        let Some(pad) = (0..=room).find(|pad| b64_len(base_len + pad) == room) else {
            continue;
        };
        let mut claims = base.clone();
        claims["pad"] = json!("p".repeat(pad));
        let token = mint_with_header(&header, &claims, Signer::Key(&key));
        assert_eq!(token.len(), length);
        return token;
    }
    panic!("no token of exactly {length} bytes");
}

#[test]
fn token_at_and_above_the_default_max_token_bytes() {
    const DEFAULT_MAX_TOKEN_BYTES: usize = 16_384;
    let issuer = TestIssuer::start();
    let upstream = EchoUpstream::start("echo");
    let mut gateway = gateway_for(&issuer, &upstream);
    assert!(wait_until(Duration::from_secs(20), || {
        get(gateway.admin, "/readyz").status == 200
    }));
    let at_limit = token_of_length(&issuer, DEFAULT_MAX_TOKEN_BYTES);
    let response = call(&gateway, "/api/x", &at_limit);
    assert_eq!(response.status, 200, "{}", text(&response));
    let over = token_of_length(&issuer, DEFAULT_MAX_TOKEN_BYTES + 1);
    let response = call(&gateway, "/api/x", &over);
    assert_refusal(&response, 401, "token_too_large", "api");
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\", error_description=\"token_too_large\"")
    );
    // Near the header limit: refused by length, fast, without parsing.
    let huge = "a".repeat(PINGORA_MAX_HEADER_BYTES - 4096);
    let asked = Instant::now();
    let response = call(&gateway, "/api/x", &huge);
    assert_refusal(&response, 401, "token_too_large", "api");
    assert!(asked.elapsed() < Duration::from_secs(5));
    assert!(!text(&response).contains("aaaaaaaa"), "the token is echoed");
    assert_eq!(upstream.hits(), 1);
    assert_alive(&mut gateway);
}
