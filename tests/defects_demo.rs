//! Issue #11, defect 3: `jobgate demo` starts its issuer before the gateway's first JWKS
//! fetch, so that fetch succeeds: no "JWKS refresh failed … Connection refused" warning in
//! the log before the instructions, and no apology for one. The real binary on free
//! loopback ports; every wait is bounded.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The line that ends the instructions.
const LAST_LINE: &str = "Ctrl-C stops the demo.";
const BANNER_TIMEOUT: Duration = Duration::from_secs(60);

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

#[test]
fn the_first_jwks_fetch_succeeds_and_nothing_needs_an_apology() {
    let ports = free_ports(4);
    let mut child = Command::new(env!("CARGO_BIN_EXE_jobgate"))
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
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

    let deadline = Instant::now() + BANNER_TIMEOUT;
    let mut banner = Vec::new();
    let complete = loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                let last = line == LAST_LINE;
                banner.push(line);
                if last {
                    break true;
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break false,
        }
    };
    // The log up to the ready line: the instructions are printed only once the gateway has
    // the issuer's keys, so any failed first fetch is logged by now.
    let log = stderr
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let metrics = complete.then(|| {
        let page = support::get(SocketAddr::from(([127, 0, 0, 1], ports[1])), "/metrics");
        String::from_utf8_lossy(&page.body).into_owned()
    });
    let _ = child.kill();
    let _ = child.wait();

    let text = banner.join("\n");
    assert!(
        complete,
        "no complete instructions; stdout:\n{text}\nlog:\n{log}"
    );
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
    let metrics = metrics.unwrap_or_default();
    assert!(
        metrics.contains(r#"jobgate_jwks_refresh_total{issuer="demo",result="error"} 0"#),
        "a failed JWKS fetch:\n{metrics}"
    );
}
