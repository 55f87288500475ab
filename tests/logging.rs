//! Issue #11, defect 2: the real `jobgate serve` with stderr piped (as under systemd, a
//! container runtime or `2>file`) writes no ANSI colour codes, and with `--log-format json`
//! writes one JSON object per line. Every wait is bounded.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::free_port;

/// The info line `serve` logs once its listeners are configured.
const SERVING: &str = "jobgate serving";

/// Runs `jobgate <args> -c <config>` (`args` include `serve`) with stderr piped until it logs [`SERVING`]
/// (at most 20 s), then kills it. Returns the stderr lines read by then.
fn serve_log(args: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let config_path = dir.path().join("jobgate.toml");
    let upstream = format!("http://127.0.0.1:{}", free_port());
    // Two identical public routes: the second is shadowed, which `serve` logs as a warning.
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{}\"\nadmin_listen = \"127.0.0.1:{}\"\nthreads = 1\n\n\
         [audit]\noutput = \"off\"\n\n\
         [[route]]\nname = \"first\"\nupstream = \"{upstream}\"\nauth = false\n\n\
         [[route]]\nname = \"second\"\nupstream = \"{upstream}\"\nauth = false\n",
        free_port(),
        free_port()
    );
    std::fs::write(&config_path, config).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_jobgate"))
        .args(args)
        .arg("-c")
        .arg(&config_path)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jobgate serve");
    let stderr = child.stderr.take().expect("stderr");
    let (sender, lines) = channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut log = Vec::new();
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let serving = line.contains(SERVING);
        log.push(line);
        if serving {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    assert!(
        log.iter().any(|line| line.contains(SERVING)),
        "no {SERVING:?} line within 20 s; stderr:\n{}",
        log.join("\n")
    );
    log
}

#[test]
fn piped_text_log_has_no_colour_codes() {
    let log = serve_log(&["serve"]);
    let text = log.join("\n");
    assert!(text.contains("WARN"), "no warning logged:\n{text}");
    assert!(text.contains("is never used"), "{text}");
    assert!(
        !text.contains("\x1b["),
        "ANSI escape codes in a piped log:\n{text:?}"
    );
}

#[test]
fn json_log_is_one_object_per_line() {
    // A global flag: before or after the subcommand.
    for args in [
        &["--log-format", "json", "serve"][..],
        &["serve", "--log-format=json"][..],
    ] {
        let log = serve_log(args);
        assert!(!log.join("\n").contains("\x1b["), "{log:?}");
        let mut messages = Vec::new();
        for line in log.iter().filter(|line| !line.trim().is_empty()) {
            let entry: Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not JSON ({error}): {line:?}"));
            assert!(entry.is_object(), "{line}");
            assert!(entry["level"].is_string(), "no level: {line}");
            let message = entry["fields"]["message"]
                .as_str()
                .unwrap_or_else(|| panic!("no fields.message: {line}"));
            messages.push((
                entry["level"].as_str().unwrap_or_default().to_string(),
                message.to_string(),
            ));
        }
        assert!(
            messages
                .iter()
                .any(|(level, message)| level == "WARN" && message.contains("is never used")),
            "{messages:?}"
        );
        let serving = log
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|entry| entry["fields"]["message"] == SERVING)
            .expect("a serving line");
        assert!(serving["fields"]["admin"].is_string(), "{serving}");
    }
}

#[test]
fn log_format_is_a_global_flag_that_rejects_unknown_values() {
    let (code, _, stderr) = support::run_jobgate(&["serve", "--log-format", "yaml", "-c", "x"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("yaml"), "{stderr}");
}
