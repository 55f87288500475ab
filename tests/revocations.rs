//! Runtime revocation (SPEC §9): the `/revocations` admin API and `jobgate revoke`, against
//! the real binary, a real test issuer and a real echo upstream on 127.0.0.1. Every wait is
//! bounded.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jobgate::policy::revocation::runtime::rfc3339_seconds;
use jobgate::policy::revocation::state_file;
use serde_json::{Value, json};
use support::issuer::TestIssuer;
use support::world::{World, any_token_route};
use support::{RawResponse, raw_request, run_jobgate, wait_until};

const AUD: &str = "https://api.example";
const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Files a gateway needs before it starts (the admin token, revocation and state files),
/// in a directory that outlives one gateway: a restart reads the same state file.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("admin.token"), format!("{ADMIN_TOKEN}\n"))
            .expect("write the admin token");
        Files { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// What the gateway is started with.
#[derive(Default)]
struct Setup<'a> {
    admin_token: bool,
    state_file: bool,
    /// Text of a revocation file.
    revocation_file: Option<&'a str>,
}

/// A gateway with one route `api` on `/api` that admits every verified token.
fn start(files: &Files, setup: &Setup) -> World {
    let mut builder = World::builder()
        .issuer(TestIssuer::start())
        .audience(AUD)
        .upstream("api")
        .route(&any_token_route("api", "/api", "{issuer}"));
    if setup.admin_token {
        builder = builder
            .server("admin_token_file = \"{token_file}\"")
            .define(
                "token_file",
                &files.path("admin.token").display().to_string(),
            );
    }
    let mut revocation = String::new();
    if let Some(text) = setup.revocation_file {
        let path = files.path("revoked.toml");
        std::fs::write(&path, text).expect("write the revocation file");
        revocation.push_str(&format!("file = \"{}\"\n", path.display()));
    }
    if setup.state_file {
        revocation.push_str(&format!(
            "state_file = \"{}\"\n",
            files.path("runtime.toml").display()
        ));
    }
    if !revocation.is_empty() {
        builder = builder.config(&format!("[revocation]\n{revocation}"));
    }
    builder.start()
}

fn full() -> Setup<'static> {
    Setup {
        admin_token: true,
        state_file: true,
        revocation_file: None,
    }
}

fn job_token(world: &World, check_run_id: &str) -> String {
    world.issuer().mint_github_with(
        AUD,
        json!({"check_run_id": check_run_id, "repository": "acme/app"}),
    )
}

fn call(world: &World, token: &str) -> RawResponse {
    world.get("/api/deploy").bearer(token).send()
}

fn assert_revoked(response: &RawResponse) {
    assert_eq!(response.status, 403, "{}", response.text());
    assert_eq!(response.json()["reason"], "revoked", "{}", response.text());
}

/// A request to the admin API with the right token.
fn admin(world: &World, method: &str, target: &str, body: &str) -> RawResponse {
    admin_as(world, method, target, Some(ADMIN_TOKEN), body)
}

fn admin_as(
    world: &World,
    method: &str,
    target: &str,
    token: Option<&str>,
    body: &str,
) -> RawResponse {
    let authorization = token.map(|token| format!("Bearer {token}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(value) = &authorization {
        headers.push(("Authorization", value.as_str()));
    }
    raw_request(world.admin(), method, target, &headers, body.as_bytes())
}

/// `POST /revocations`, expecting 201; the new id.
fn add(world: &World, body: &str) -> String {
    let response = admin(world, "POST", "/revocations", body);
    assert_eq!(response.status, 201, "{}", response.text());
    response.json()["id"]
        .as_str()
        .expect("an id in the answer")
        .to_string()
}

fn list(world: &World) -> Vec<Value> {
    let response = admin(world, "GET", "/revocations", "");
    assert_eq!(response.status, 200, "{}", response.text());
    response
        .json()
        .as_array()
        .expect("GET /revocations is an array")
        .clone()
}

fn revocations_metric(world: &World, source: &str) -> Option<f64> {
    world.metric("jobgate_revocations", &[("source", source)])
}

#[test]
fn without_admin_token_file_the_api_is_not_there() {
    let files = Files::new();
    let world = start(
        &files,
        &Setup {
            state_file: true,
            ..Setup::default()
        },
    );
    for (method, target) in [
        ("GET", "/revocations"),
        ("POST", "/revocations"),
        ("DELETE", "/revocations/abc"),
    ] {
        let response = admin(&world, method, target, r#"{"check_run_id": "1"}"#);
        assert_eq!(
            response.status,
            404,
            "{method} {target}: {}",
            response.text()
        );
    }
    assert_eq!(call(&world, &job_token(&world, "1")).status, 200);
}

#[test]
fn a_missing_or_wrong_token_is_401_and_changes_nothing() {
    let files = Files::new();
    let world = start(&files, &full());
    let body = r#"{"check_run_id": "2001"}"#;
    let longer = format!("{ADMIN_TOKEN}x");
    for token in [
        None,
        Some("wrong"),
        Some(""),
        Some(&ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1]),
        Some(longer.as_str()),
    ] {
        for (method, target) in [
            ("POST", "/revocations"),
            ("GET", "/revocations"),
            ("DELETE", "/revocations/file-1"),
        ] {
            let response = admin_as(&world, method, target, token, body);
            assert_eq!(
                response.status,
                401,
                "{token:?} {method}: {}",
                response.text()
            );
            assert_eq!(response.header("www-authenticate"), Some("Bearer"));
            assert!(!response.text().contains(ADMIN_TOKEN));
        }
    }
    let basic = raw_request(
        world.admin(),
        "GET",
        "/revocations",
        &[("Authorization", &format!("Basic {ADMIN_TOKEN}"))],
        b"",
    );
    assert_eq!(basic.status, 401);
    // Any case of the scheme is the scheme (RFC 9110).
    let lower = raw_request(
        world.admin(),
        "GET",
        "/revocations",
        &[("Authorization", &format!("bearer {ADMIN_TOKEN}"))],
        b"",
    );
    assert_eq!(lower.status, 200, "{}", lower.text());
    assert!(list(&world).is_empty());
    assert_eq!(call(&world, &job_token(&world, "2001")).status, 200);
}

#[test]
fn a_posted_entry_refuses_that_job_as_soon_as_the_201_arrives_and_a_delete_lifts_it() {
    let files = Files::new();
    let world = start(&files, &full());
    let job = job_token(&world, "3001");
    let other = job_token(&world, "3002");
    // Both verified and cached before the entry exists.
    assert_eq!(call(&world, &job).status, 200);
    assert_eq!(call(&world, &other).status, 200);
    assert_eq!(revocations_metric(&world, "runtime"), Some(0.0));

    let id = add(
        &world,
        r#"{"check_run_id": "3001", "reason": "leaked runner"}"#,
    );
    let answered = Instant::now();
    assert_revoked(&call(&world, &job));
    eprintln!(
        "first 403 {:?} after the 201 (the first request sent after it)",
        answered.elapsed()
    );
    assert_eq!(call(&world, &other).status, 200);
    assert_eq!(revocations_metric(&world, "runtime"), Some(1.0));
    assert_eq!(revocations_metric(&world, "file"), Some(0.0));
    assert_eq!(
        world.metric(
            "jobgate_auth_failures_total",
            &[("route", "api"), ("reason", "revoked")]
        ),
        Some(1.0)
    );
    // Integers match claims as text, as in a rule.
    let numeric = add(&world, r#"{"check_run_id": 3002}"#);
    assert_revoked(&call(&world, &other));

    let deleted = admin(&world, "DELETE", &format!("/revocations/{id}"), "");
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert_eq!(call(&world, &job).status, 200);
    assert_revoked(&call(&world, &other));
    assert_eq!(revocations_metric(&world, "runtime"), Some(1.0));
    let again = admin(&world, "DELETE", &format!("/revocations/{id}"), "");
    assert_eq!(again.status, 404, "{}", again.text());
    assert!(again.json()["error"].as_str().is_some());
    assert_eq!(
        admin(&world, "DELETE", &format!("/revocations/{numeric}"), "").status,
        204
    );
    assert_eq!(call(&world, &other).status, 200);
    assert_eq!(revocations_metric(&world, "runtime"), Some(0.0));
}

#[test]
fn get_lists_file_and_runtime_entries_and_file_entries_cannot_be_deleted() {
    let files = Files::new();
    let world = start(
        &files,
        &Setup {
            revocation_file: Some(
                "[[revoke]]\ncheck_run_id = \"4001\"\nreason = \"from the file\"\n\n\
                 [[revoke]]\nrepository = [\"acme/*\", \"beta/app\"]\nrun_id = 7\n\
                 until = 2099-01-01T00:00:00Z\n",
            ),
            ..full()
        },
    );
    assert_revoked(&call(&world, &job_token(&world, "4001")));
    let id = add(
        &world,
        r#"{"ref": {"regex": "refs/tags/v[0-9]+"}, "run_attempt": ["1", 2],
            "until": "2099-06-01T02:00:00+02:00"}"#,
    );
    let entries = list(&world);
    assert_eq!(
        entries,
        vec![
            json!({"id": "file-1", "source": "file", "conditions": {"check_run_id": "4001"},
                   "reason": "from the file", "until": null}),
            json!({"id": "file-2", "source": "file",
                   "conditions": {"repository": ["acme/*", "beta/app"], "run_id": 7},
                   "reason": "", "until": "2099-01-01T00:00:00Z"}),
            json!({"id": id, "source": "runtime",
                   "conditions": {"ref": {"regex": "refs/tags/v[0-9]+"}, "run_attempt": ["1", 2]},
                   "reason": "", "until": "2099-06-01T00:00:00Z"}),
        ]
    );
    assert_eq!(revocations_metric(&world, "file"), Some(2.0));
    assert_eq!(revocations_metric(&world, "runtime"), Some(1.0));
    for file_id in ["file-1", "file-2"] {
        let response = admin(&world, "DELETE", &format!("/revocations/{file_id}"), "");
        assert_eq!(response.status, 409, "{}", response.text());
        assert!(response.text().contains("revocation file"));
    }
    assert_eq!(
        admin(&world, "DELETE", "/revocations/file-3", "").status,
        404
    );
    assert_eq!(
        admin(&world, "DELETE", "/revocations/0000000000000000", "").status,
        404
    );
    assert_eq!(list(&world).len(), 3);
    assert_revoked(&call(&world, &job_token(&world, "4001")));
    // Methods the API does not have.
    let put = admin(&world, "PUT", "/revocations", "{}");
    assert_eq!(put.status, 405);
    assert_eq!(put.header("allow"), Some("GET, POST"));
    assert_eq!(
        admin(&world, "GET", &format!("/revocations/{id}"), "").status,
        405
    );
}

#[test]
fn invalid_entries_are_400_with_a_message_and_change_nothing() {
    let files = Files::new();
    let world = start(&files, &full());
    for (body, needle) in [
        (r#"{"reason": "no condition"}"#, "without conditions"),
        (r#"["check_run_id"]"#, "JSON object"),
        (r#"check_run_id=1"#, "not JSON"),
        ("", "not JSON"),
        (r#"{"check_run_id": null}"#, "null"),
        (r#"{"check_run_id": 1.5}"#, "float"),
        (r#"{"check_run_id": {"glob": "1"}}"#, "regex"),
        (r#"{"check_run_id": [["1"]]}"#, "nested"),
        (r#"{"check_run_id": {"regex": "("}}"#, "regex"),
        (r#"{"check_run_id": "1", "until": "next week"}"#, "RFC 3339"),
        (
            r#"{"check_run_id": "1", "until": "2001-01-01T00:00:00Z"}"#,
            "past",
        ),
        (r#"{"check_run_id": "1", "reason": ["a"]}"#, "reason"),
    ] {
        let response = admin(&world, "POST", "/revocations", body);
        assert_eq!(response.status, 400, "{body}: {}", response.text());
        let message = response.json()["error"]
            .as_str()
            .expect("an error message")
            .to_string();
        assert!(message.contains(needle), "{body}: {message}");
    }
    let large = format!(r#"{{"check_run_id": "{}"}}"#, "1".repeat(70 * 1024));
    let response = admin(&world, "POST", "/revocations", &large);
    assert_eq!(response.status, 413, "{}", response.text());
    assert!(list(&world).is_empty());
    assert_eq!(revocations_metric(&world, "runtime"), Some(0.0));
    assert!(!files.path("runtime.toml").exists(), "nothing was written");
}

#[test]
fn an_entry_lapses_at_its_until() {
    let files = Files::new();
    let world = start(&files, &full());
    let job = job_token(&world, "5001");
    let until = rfc3339_seconds(jobgate::clock::unix_now() + 2);
    add(
        &world,
        &json!({"check_run_id": "5001", "until": until}).to_string(),
    );
    let added = Instant::now();
    let first = call(&world, &job);
    if added.elapsed() < Duration::from_secs(1) {
        assert_revoked(&first);
    }
    let lapsed = wait_until(Duration::from_secs(10), || call(&world, &job).status == 200);
    assert!(lapsed, "the entry did not lapse after its until {until}");
    assert!(list(&world).is_empty());
    world.wait_metric("jobgate_revocations", &[("source", "runtime")], |v| {
        v == 0.0
    });
}

#[test]
fn without_a_state_file_or_cluster_post_is_503_saying_where_entries_could_be_kept() {
    let files = Files::new();
    let world = start(
        &files,
        &Setup {
            admin_token: true,
            ..Setup::default()
        },
    );
    let response = admin(
        &world,
        "POST",
        "/revocations",
        r#"{"check_run_id": "6001"}"#,
    );
    assert_eq!(response.status, 503, "{}", response.text());
    let message = response.json()["error"].as_str().unwrap_or("").to_string();
    assert!(message.contains("state_file"), "{message}");
    assert!(message.contains("redis_url"), "{message}");
    assert_eq!(call(&world, &job_token(&world, "6001")).status, 200);
    assert!(list(&world).is_empty());
    assert_eq!(admin(&world, "DELETE", "/revocations/abc", "").status, 404);
}

#[test]
fn runtime_entries_survive_a_restart_with_a_state_file() {
    let files = Files::new();
    let id = {
        let world = start(&files, &full());
        let id = add(&world, r#"{"check_run_id": "7001", "reason": "restart"}"#);
        let gone = add(&world, r#"{"check_run_id": "7002"}"#);
        assert_eq!(
            admin(&world, "DELETE", &format!("/revocations/{gone}"), "").status,
            204
        );
        id
    };
    let world = start(&files, &full());
    assert_revoked(&call(&world, &job_token(&world, "7001")));
    assert_eq!(call(&world, &job_token(&world, "7002")).status, 200);
    let entries = list(&world);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["id"], id.as_str());
    assert_eq!(entries[0]["reason"], "restart");
    assert_eq!(revocations_metric(&world, "runtime"), Some(1.0));
}

/// One `POST /revocations` that never panics: the gateway may die mid-request.
fn try_post(addr: SocketAddr, body: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request = format!(
        "POST /revocations HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some((status, body.to_string()))
}

#[test]
fn a_kill_9_during_a_burst_of_posts_keeps_every_entry_that_got_a_201() {
    let files = Files::new();
    let state = files.path("runtime.toml");
    let mut world = start(&files, &full());
    let admin_addr = world.admin();
    let confirmed: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for thread in 0..6 {
            let (confirmed, stop) = (&confirmed, &stop);
            scope.spawn(move || {
                for n in 0..200 {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let body = json!({"check_run_id": format!("{thread}-{n}")}).to_string();
                    match try_post(admin_addr, &body) {
                        Some((201, answer)) => {
                            let id = serde_json::from_str::<Value>(answer.trim())
                                .ok()
                                .and_then(|json| json["id"].as_str().map(str::to_string))
                                .expect("a 201 carries an id");
                            confirmed.lock().expect("lock").push(id);
                        }
                        Some((status, answer)) => panic!("POST answered {status}: {answer}"),
                        // The gateway is gone.
                        None => return,
                    }
                }
            });
        }
        let enough = wait_until(Duration::from_secs(30), || {
            confirmed.lock().expect("lock").len() >= 60
        });
        assert!(enough, "the burst did not get going");
        world.signal("KILL");
        let _ = world.wait_exit(Duration::from_secs(10));
        stop.store(true, Ordering::SeqCst);
    });
    let confirmed = confirmed.into_inner().expect("lock");
    let kept = state_file::read(&state, jobgate::clock::unix_now())
        .unwrap_or_else(|error| panic!("the state file does not load after kill -9: {error}"));
    let kept_ids: Vec<&str> = kept.iter().map(|entry| entry.id.as_str()).collect();
    for id in &confirmed {
        assert!(
            kept_ids.contains(&id.as_str()),
            "{id} got a 201 but is not on disk"
        );
    }
    eprintln!(
        "{} entries confirmed before kill -9, {} on disk",
        confirmed.len(),
        kept.len()
    );
    // And the gateway starts on it.
    drop(world);
    let world = start(&files, &full());
    assert_eq!(list(&world).len(), kept.len());
}

fn revoke_cli(config: &Path, args: &[&str]) -> (i32, String, String) {
    let config = config.display().to_string();
    let mut argv = vec!["revoke", "-c", config.as_str()];
    argv.extend_from_slice(args);
    run_jobgate(&argv)
}

#[test]
fn jobgate_revoke_adds_lists_and_deletes_through_the_api() {
    let files = Files::new();
    let world = start(
        &files,
        &Setup {
            revocation_file: Some("[[revoke]]\ncheck_run_id = \"8000\"\n"),
            ..full()
        },
    );
    let config = world.dir().join("jobgate.toml");
    let job = job_token(&world, "8001");
    assert_eq!(call(&world, &job).status, 200);

    let started = Instant::now();
    let (code, stdout, stderr) = revoke_cli(
        &config,
        &[
            "--claim",
            "check_run_id=8001",
            "--claim",
            "check_run_id=8002",
            "--reason",
            "leaked runner",
            "--for",
            "2h",
        ],
    );
    let command_took = started.elapsed();
    assert_eq!(code, 0, "{stderr}");
    let id = stdout.trim().to_string();
    assert_eq!(id.len(), 16, "{stdout}");
    let exited = Instant::now();
    assert_revoked(&call(&world, &job));
    eprintln!(
        "jobgate revoke took {command_took:?} from start to exit; the first request after it \
         was refused {:?} after the exit",
        exited.elapsed()
    );
    assert_revoked(&call(&world, &job_token(&world, "8002")));

    let (code, stdout, stderr) = revoke_cli(&config, &["--list"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("ID "), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[1].starts_with("file-1 ") && lines[1].contains("check_run_id=\"8000\""));
    assert!(
        lines[2].starts_with(&id) && lines[2].contains("runtime"),
        "{stdout}"
    );
    assert!(lines[2].contains("\"leaked runner\""), "{stdout}");
    assert!(
        lines[2].contains(r#"check_run_id=["8001","8002"]"#),
        "{stdout}"
    );

    let (code, stdout, stderr) = revoke_cli(&config, &["--delete", &id]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), format!("deleted {id}"));
    assert_eq!(call(&world, &job).status, 200);

    // Refusals: the server's message, exit 1.
    let (code, _, stderr) = revoke_cli(&config, &["--delete", &id]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("404") && stderr.contains("no revocation"),
        "{stderr}"
    );
    let (code, _, stderr) = revoke_cli(&config, &["--delete", "file-1"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("revocation file"), "{stderr}");
    let (code, _, stderr) = revoke_cli(&config, &["--claim", "ref={\"regex\": \"(\"}"]);
    assert_eq!(code, 0, "a value is always a glob, never JSON: {stderr}");

    // Bad usage or config: exit 2.
    for args in [
        &[][..],
        &["--claim", "no-equals-sign"],
        &["--claim", "a=b", "--for", "soon"],
        &["--list", "--delete", "x"],
        &["--reason", "no claim"],
        &["--delete", "../metrics"],
    ] {
        let (code, _, stderr) = revoke_cli(&config, args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
    }
    let (code, _, stderr) = revoke_cli(&files.path("missing.toml"), &["--list"]);
    assert_eq!(code, 2, "{stderr}");
    // A gateway that is not running: exit 1.
    let without_token = files.path("no-api.toml");
    std::fs::write(
        &without_token,
        std::fs::read_to_string(&config)
            .expect("config")
            .replace("admin_token_file", "# admin_token_file"),
    )
    .expect("write");
    let (code, _, stderr) = revoke_cli(&without_token, &["--list"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("admin_token_file"), "{stderr}");
}

#[test]
fn jobgate_revoke_reports_a_gateway_that_is_not_there_and_one_that_refuses() {
    let files = Files::new();
    let config_text;
    {
        let world = start(
            &files,
            &Setup {
                admin_token: true,
                ..Setup::default()
            },
        );
        let config = world.dir().join("jobgate.toml");
        config_text = std::fs::read_to_string(&config).expect("config");
        let (code, _, stderr) = revoke_cli(&config, &["--claim", "run_id=1"]);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains("503") && stderr.contains("state_file"),
            "{stderr}"
        );
    }
    let stopped = files.path("stopped.toml");
    std::fs::write(&stopped, config_text).expect("write");
    let (code, _, stderr) = revoke_cli(&stopped, &["--list"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");
}

#[test]
fn a_damaged_state_file_stops_the_gateway_at_start() {
    let files = Files::new();
    std::fs::write(files.path("runtime.toml"), "[[entry]]\nid = \"x\"\n").expect("write");
    let world_config = {
        // A world cannot be started on a config that fails; run `serve` directly.
        let config = files.path("jobgate.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{}\"\nadmin_listen = \"127.0.0.1:{}\"\n\
                 [audit]\noutput = \"off\"\n[revocation]\nstate_file = \"runtime.toml\"\n\
                 [[route]]\nname = \"public\"\nupstream = \"http://127.0.0.1:9\"\nauth = false\n",
                support::free_port(),
                support::free_port()
            ),
        )
        .expect("write");
        config
    };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_jobgate"))
        .args(["serve", "-c"])
        .arg(&world_config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut status = None;
    wait_until(Duration::from_secs(20), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let Some(status) = status else {
        let _ = child.kill();
        panic!("jobgate started on a damaged state file");
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("state_file") && stderr.contains("does not start"),
        "{stderr}"
    );
}
