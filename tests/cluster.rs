//! `[cluster]` (SPEC §9): three real jobgate processes sharing one real `redis-server` on
//! 127.0.0.1 share rate-limit buckets and used single-use tokens, and decide safely while
//! Redis is down; over `rediss://` too, with a CA made at test time, and safely when the
//! gateway does not trust Redis's certificate. Every wait is bounded.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::issuer::TestIssuer;
use support::pki::TestPki;
use support::wait_until;
use support::world::World;

const AUD: &str = "https://api.example";

/// A `redis-server` on a free loopback port, without persistence; killed on drop.
struct Redis {
    port: u16,
    child: Child,
    /// TLS only (`--port 0`): reached as `rediss://localhost`.
    tls: bool,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl Redis {
    fn start() -> Redis {
        Redis::start_on(free_port())
    }

    /// A TLS-only `redis-server` with `pki`'s certificate, not asking clients for one.
    fn start_tls(pki: &TestPki) -> Redis {
        let port = free_port();
        let path = |path: &PathBuf| TestPki::path(path);
        let redis = Redis::spawn(
            port,
            true,
            &[
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
                "--tls-cert-file".into(),
                path(&pki.cert_path),
                "--tls-key-file".into(),
                path(&pki.key_path),
                "--tls-ca-cert-file".into(),
                path(&pki.ca_path),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
        );
        // A PING needs TLS here; Redis listens only once its certificate is loaded.
        assert!(
            wait_until(Duration::from_secs(10), || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
            }),
            "redis-server (TLS) did not listen on port {port}"
        );
        redis
    }

    /// `redis-server` with `args`, on loopback, without persistence.
    fn spawn(port: u16, tls: bool, args: &[String]) -> Redis {
        let child = Command::new("redis-server")
            .args(args)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server; .ci/run installs it)");
        Redis { port, child, tls }
    }

    fn start_on(port: u16) -> Redis {
        // DEBUG SLEEP makes a slow Redis for the fault tests.
        let redis = Redis::spawn(
            port,
            false,
            &[
                "--enable-debug-command".into(),
                "local".into(),
                "--port".into(),
                port.to_string(),
            ],
        );
        assert!(
            wait_until(Duration::from_secs(10), || redis.ping()),
            "redis-server did not answer on port {port}"
        );
        redis
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    /// Makes Redis answer nothing for `seconds` (from another thread; returns at once).
    fn sleep(&self, seconds: u32) -> std::thread::JoinHandle<()> {
        let port = self.port;
        std::thread::spawn(move || {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(u64::from(seconds) + 5)));
                let _ = stream.write_all(format!("DEBUG SLEEP {seconds}\r\n").as_bytes());
                let mut answer = [0u8; 5];
                let _ = stream.read_exact(&mut answer);
            }
        })
    }

    fn url(&self) -> String {
        if self.tls {
            // The name the certificate holds, checked by the gateway.
            format!("rediss://localhost:{}/0", self.port)
        } else {
            format!("redis://127.0.0.1:{}/0", self.port)
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The route `api` on `/api`: tokens of acme/app, plus `extra` (limits, `single_use`).
fn route(extra: &str, limits: &str) -> String {
    format!(
        "name = \"api\"\npath_prefix = \"/api\"\nupstream = \"{{upstream}}\"\n\
         issuer = \"test\"\naudience = \"{AUD}\"\n{extra}\n\n\
         [[route.allow]]\nrepository = \"acme/app\"\n\n{limits}"
    )
}

fn cluster_section(redis: &Redis) -> String {
    format!(
        "[cluster]\nredis_url = \"{}\"\nkey_prefix = \"test:\"\ntimeout = \"100ms\"\n",
        redis.url()
    )
}

/// `count` gateways sharing `redis` and the first gateway's issuer.
fn gateways(count: usize, redis: &Redis, extra: &str, limits: &str) -> Vec<World> {
    gateways_with(count, redis, extra, limits, "", &[])
}

/// As [`gateways`], with more `[server]` lines and environment variables.
fn gateways_with(
    count: usize,
    redis: &Redis,
    extra: &str,
    limits: &str,
    server: &str,
    env: &[(&str, &str)],
) -> Vec<World> {
    let with_env = |builder: support::world::WorldBuilder| {
        env.iter()
            .fold(builder, |builder, (name, value)| builder.env(name, value))
    };
    let first = with_env(World::builder())
        .server(server)
        .issuer(TestIssuer::start())
        .audience(AUD)
        .upstream("api")
        .route(&route(extra, limits))
        .config(&cluster_section(redis))
        .start();
    let issuer_table = first
        .issuer()
        .issuer_table("test", "min_refetch_interval = \"1s\"\n");
    let mut worlds = vec![first];
    for _ in 1..count {
        worlds.push(
            with_env(World::builder())
                .server(server)
                .audience(AUD)
                .upstream("api")
                .config(&issuer_table)
                .route(&route(extra, limits))
                .config(&cluster_section(redis))
                .start(),
        );
    }
    for world in &worlds {
        world.wait_metric("jobgate_cluster_up", &[], |up| up == 1.0);
    }
    worlds
}

fn job_token(world: &World, check_run_id: &str) -> String {
    world.issuer().mint_github_with(
        AUD,
        json!({"check_run_id": check_run_id, "repository": "acme/app"}),
    )
}

#[test]
fn three_gateways_share_one_bucket_per_job() {
    let redis = Redis::start();
    let worlds = gateways(
        3,
        &redis,
        "",
        "[[route.limit]]\nkey = \"check_run_id\"\nrequests = 30\nper = \"10s\"\n",
    );
    let token = job_token(&worlds[0], "5001");
    let started = Instant::now();
    let mut admitted: u32 = 0;
    let mut limited = 0;
    // One job spreads its requests over all three for 10 s.
    while started.elapsed() < Duration::from_secs(10) {
        for world in &worlds {
            match world.get("/api/x").bearer(&token).send().status {
                200 => admitted += 1,
                429 => limited += 1,
                other => panic!("unexpected status {other}"),
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "one job over three gateways for {elapsed:.1} s: {admitted} admitted, {limited} limited"
    );
    // One bucket of 30 that gets a token back every 10 s / 30: what one gateway alone
    // admits in that time (three separate buckets would admit three times as much).
    let one_gateway = 30.0 + elapsed * 3.0;
    assert!(
        admitted >= 30 && f64::from(admitted) <= one_gateway + 3.0,
        "{admitted} admitted; one shared bucket admits at most {one_gateway:.0} (+3 slack)"
    );
    assert!(limited > 0);
    // Another job has a bucket of its own, on every gateway.
    let other = job_token(&worlds[0], "5002");
    for world in &worlds {
        assert_eq!(world.get("/api/x").bearer(&other).send().status, 200);
    }
    assert_eq!(
        worlds[0].metric_or_zero("jobgate_cluster_errors_total", &[("op", "limit")]),
        0.0
    );
}

#[test]
fn a_single_use_token_admitted_on_one_gateway_is_replayed_on_the_others() {
    let redis = Redis::start();
    let worlds = gateways(3, &redis, "single_use = true", "");
    let token = job_token(&worlds[0], "6001");
    assert_eq!(worlds[0].get("/api/x").bearer(&token).send().status, 200);
    for world in &worlds[1..] {
        let response = world.get("/api/x").bearer(&token).send();
        assert_eq!(response.status, 401, "{}", response.text());
        assert_eq!(response.json()["reason"], "replayed_token");
    }
    let fresh = job_token(&worlds[0], "6002");
    assert_eq!(worlds[2].get("/api/x").bearer(&fresh).send().status, 200);
}

#[test]
fn redis_down_means_local_limits_and_503_for_single_use_then_recovery_without_restart() {
    let mut redis = Redis::start();
    let port = redis.port;
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, ADMIN_TOKEN).expect("token file");
    let limited = World::builder()
        .server(&format!("admin_token_file = \"{}\"", token_file.display()))
        .issuer(TestIssuer::start())
        .audience(AUD)
        .upstream("api")
        .route(&route(
            "",
            "[[route.limit]]\nkey = \"check_run_id\"\nrequests = 3\nper = \"1m\"\n",
        ))
        .config(&route_table_single_use())
        .config(&cluster_section(&redis))
        .config("[revocation]\nfile = \"revoked.toml\"\n")
        .start();
    limited.wait_metric("jobgate_cluster_up", &[], |up| up == 1.0);
    let token = job_token(&limited, "7001");
    let revoked = job_token(&limited, "7100");
    // A file entry: per gateway, never in Redis, so it holds through all of what follows.
    let in_file = job_token(&limited, "7200");
    std::fs::write(
        limited.dir().join("revoked.toml"),
        "[[revoke]]\ncheck_run_id = \"7200\"\n",
    )
    .expect("revocation file");
    let file_revoked = |world: &World| world.get("/api/x").bearer(&in_file).send().status == 403;
    assert!(
        wait_until(Duration::from_secs(10), || file_revoked(&limited)),
        "the file entry applies"
    );
    let (status, body) = admin(
        &limited,
        "POST",
        "/revocations",
        Some("{\"check_run_id\": \"7100\"}"),
    );
    assert_eq!(status, 201, "{body}");
    // Shared bucket first: two of three spent in Redis.
    for _ in 0..2 {
        assert_eq!(limited.get("/api/x").bearer(&token).send().status, 200);
    }

    redis.stop();
    // Limits fall back to this gateway's buckets (which start full: 3 more, then 429).
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let started = Instant::now();
        statuses.push(limited.get("/api/x").bearer(&token).send().status);
        // timeout (100 ms) + 20 ms is the bound; a debug build on a busy machine gets room.
        assert!(
            started.elapsed() < Duration::from_millis(600),
            "a request waited {:?} for a stopped Redis",
            started.elapsed()
        );
    }
    assert_eq!(statuses, [200, 200, 200, 429], "local fallback buckets");
    // Single-use cannot rule out a replay: 503 state_unavailable with Retry-After.
    let once = job_token(&limited, "7002");
    let response = limited.get("/once/x").bearer(&once).send();
    assert_eq!(response.status, 503, "{}", response.text());
    assert_eq!(response.json()["reason"], "state_unavailable");
    assert!(response.header("retry-after").is_some());
    assert_eq!(limited.readyz().status, 200, "/readyz stays 200");
    // Revocations keep the last list; new ones cannot reach the others: 503.
    assert_eq!(limited.get("/api/x").bearer(&revoked).send().status, 403);
    assert!(
        file_revoked(&limited),
        "the file entry holds while Redis is down"
    );
    let (status, _) = admin(
        &limited,
        "POST",
        "/revocations",
        Some("{\"run_id\": \"1\"}"),
    );
    assert_eq!(status, 503);
    limited.wait_metric("jobgate_cluster_up", &[], |up| up == 0.0);
    assert!(limited.metric_or_zero("jobgate_cluster_errors_total", &[("op", "single_use")]) >= 1.0);

    // Redis back (empty): recovery without a restart, within 10 s.
    let _redis = Redis::start_on(port);
    limited.wait_metric("jobgate_cluster_up", &[], |up| up == 1.0);
    // The runtime revocation lived only in Redis, which restarted empty: re-read in full,
    // it is gone (README "Running many replicas").
    assert!(
        wait_until(Duration::from_secs(5), || {
            limited.get("/once/x").bearer(&revoked).send().status != 403
        }),
        "a revocation lost with Redis's data still applies"
    );
    assert!(
        file_revoked(&limited),
        "the file entry holds after Redis came back empty"
    );
    let again = job_token(&limited, "7003");
    assert_eq!(limited.get("/once/x").bearer(&again).send().status, 200);
    let replay = limited.get("/once/x").bearer(&again).send();
    assert_eq!(replay.status, 401, "{}", replay.text());
    assert_eq!(replay.json()["reason"], "replayed_token");
    let mut limited = limited;
    limited.assert_alive();
}

fn route_table_single_use() -> String {
    format!(
        "[[route]]\nname = \"once\"\npath_prefix = \"/once\"\nupstream = \"{{upstream}}\"\n\
         issuer = \"test\"\naudience = \"{AUD}\"\nsingle_use = true\n\n\
         [[route.allow]]\nrepository = \"acme/app\"\n"
    )
}

/// `method` on the admin API of `world` with the admin token.
fn admin(world: &World, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(world.admin()).expect("admin listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, body)| body)
        .to_string();
    (status, body)
}

const ADMIN_TOKEN: &str = "test-admin-token-7f3a";

#[test]
fn a_revocation_on_one_gateway_reaches_the_other_within_a_second_and_delete_lifts_it() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).expect("token file");
    let worlds = gateways_with(
        2,
        &redis,
        "",
        "",
        &format!("admin_token_file = \"{}\"", token_file.display()),
        &[],
    );
    let (a, b) = (&worlds[0], &worlds[1]);
    let other = job_token(a, "8999");
    let mut delays = Vec::new();
    for attempt in 0..20 {
        let job = format!("{}", 8000 + attempt);
        let token = job_token(a, &job);
        assert_eq!(b.get("/api/x").bearer(&token).send().status, 200);
        let (status, body) = admin(
            a,
            "POST",
            "/revocations",
            Some(&format!(
                "{{\"check_run_id\": \"{job}\", \"reason\": \"test\"}}"
            )),
        );
        assert_eq!(status, 201, "{body}");
        let created = Instant::now();
        // The answering gateway refuses at once.
        assert_eq!(a.get("/api/x").bearer(&token).send().status, 403);
        let revoked = wait_until(Duration::from_secs(5), || {
            b.get("/api/x").bearer(&token).send().status == 403
        });
        assert!(revoked, "gateway B never refused the revoked job");
        delays.push(created.elapsed());
        assert_eq!(
            b.get("/api/x").bearer(&other).send().status,
            200,
            "other jobs go on"
        );
        let id = serde_json::from_str::<serde_json::Value>(&body).expect("json")["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let (status, _) = admin(a, "DELETE", &format!("/revocations/{id}"), None);
        assert_eq!(status, 204);
        assert_eq!(a.get("/api/x").bearer(&token).send().status, 200);
        assert!(
            wait_until(Duration::from_secs(5), || {
                b.get("/api/x").bearer(&token).send().status == 200
            }),
            "DELETE did not reach gateway B"
        );
    }
    delays.sort();
    eprintln!("201 on A → first 403 on B: {delays:?}");
    // SPEC §9 says within 1 s; the probe polls every 250 ms. The bound here leaves room for
    // a busy CI machine running the other cluster tests at the same time.
    assert!(
        delays.iter().all(|delay| *delay < Duration::from_secs(3)),
        "201 on A to 403 on B: {delays:?}"
    );
    // Both list it the same way while it is in force.
    let (_, body) = admin(a, "POST", "/revocations", Some("{\"run_id\": \"1\"}"));
    let id = serde_json::from_str::<serde_json::Value>(&body).expect("json")["id"].clone();
    assert!(wait_until(Duration::from_secs(5), || {
        admin(b, "GET", "/revocations", None)
            .1
            .contains(id.as_str().unwrap_or("-"))
    }));
}

#[test]
fn a_slow_redis_never_holds_a_request_longer_than_timeout() {
    let redis = Redis::start();
    let world = World::builder()
        .issuer(TestIssuer::start())
        .audience(AUD)
        .upstream("api")
        .route(&route(
            "",
            "[[route.limit]]\nkey = \"check_run_id\"\nrequests = 100\nper = \"1m\"\n",
        ))
        .config(&route_table_single_use())
        .config(&cluster_section(&redis))
        .start();
    world.wait_metric("jobgate_cluster_up", &[], |up| up == 1.0);
    let token = job_token(&world, "9001");
    assert_eq!(world.get("/api/x").bearer(&token).send().status, 200);

    let sleeper = redis.sleep(3);
    std::thread::sleep(Duration::from_millis(200));
    let mut slowest = Duration::ZERO;
    for attempt in 0..5 {
        let started = Instant::now();
        assert_eq!(
            world.get("/api/x").bearer(&token).send().status,
            200,
            "limits fall back"
        );
        slowest = slowest.max(started.elapsed());
        let once = job_token(&world, &format!("91{attempt:02}"));
        let started = Instant::now();
        let response = world.get("/once/x").bearer(&once).send();
        slowest = slowest.max(started.elapsed());
        assert_eq!(response.status, 503, "{}", response.text());
        assert_eq!(response.json()["reason"], "state_unavailable");
    }
    eprintln!("slowest request while Redis slept (timeout 100 ms): {slowest:?}");
    // timeout (100 ms) + 20 ms in SPEC terms; a debug build on a shared machine gets room.
    assert!(slowest < Duration::from_millis(600), "{slowest:?}");
    assert!(world.metric_or_zero("jobgate_cluster_errors_total", &[("op", "limit")]) >= 1.0);
    let _ = sleeper.join();
    // Redis answers again: shared state is used again, without a restart.
    world.wait_metric("jobgate_cluster_up", &[], |up| up == 1.0);
    let fresh = job_token(&world, "9200");
    assert_eq!(world.get("/once/x").bearer(&fresh).send().status, 200);
    assert_eq!(world.get("/once/x").bearer(&fresh).send().status, 401);
}

/// `SSL_CERT_FILE` = the PKI's CA: a gateway given it trusts that CA and nothing else.
fn trusting(pki: &TestPki) -> (&'static str, &str) {
    (
        "SSL_CERT_FILE",
        pki.ca_path.to_str().expect("UTF-8 temp path"),
    )
}

#[test]
fn over_rediss_two_gateways_that_trust_the_ca_share_used_tokens() {
    let pki = TestPki::new();
    let redis = Redis::start_tls(&pki);
    let worlds = gateways_with(2, &redis, "single_use = true", "", "", &[trusting(&pki)]);
    let (a, b) = (&worlds[0], &worlds[1]);
    let token = job_token(a, "10001");
    assert_eq!(a.get("/api/x").bearer(&token).send().status, 200);
    let replay = b.get("/api/x").bearer(&token).send();
    assert_eq!(replay.status, 401, "{}", replay.text());
    assert_eq!(replay.json()["reason"], "replayed_token");
    let fresh = job_token(a, "10002");
    assert_eq!(b.get("/api/x").bearer(&fresh).send().status, 200);
    assert_eq!(a.get("/api/x").bearer(&fresh).send().status, 401);
    for world in &worlds {
        assert_eq!(world.metric("jobgate_cluster_up", &[]), Some(1.0));
        assert_eq!(
            world.metric_or_zero("jobgate_cluster_errors_total", &[("op", "single_use")]),
            0.0
        );
    }
}

#[test]
fn over_rediss_a_gateway_that_does_not_trust_the_certificate_fails_closed() {
    let pki = TestPki::new();
    let stranger = TestPki::new();
    let redis = Redis::start_tls(&pki);
    // Started first, so it has tried at least as long as the trusting one below.
    let untrusting = World::builder()
        .env("SSL_CERT_FILE", trusting(&stranger).1)
        .issuer(TestIssuer::start())
        .audience(AUD)
        .upstream("api")
        .route(&route("single_use = true", ""))
        .config(&cluster_section(&redis))
        .start();
    let trusting = World::builder()
        .env("SSL_CERT_FILE", trusting(&pki).1)
        .audience(AUD)
        .upstream("api")
        .config(
            &untrusting
                .issuer()
                .issuer_table("test", "min_refetch_interval = \"1s\"\n"),
        )
        .route(&route("single_use = true", ""))
        .config(&cluster_section(&redis))
        .start();
    trusting.wait_metric("jobgate_cluster_up", &[], |up| up == 1.0);
    // A few more probes (every 250 ms): never up.
    for _ in 0..6 {
        assert_eq!(untrusting.metric("jobgate_cluster_up", &[]), Some(0.0));
        std::thread::sleep(Duration::from_millis(250));
    }
    // A token already used through Redis is not admitted again: 503, not 200.
    let token = job_token(&untrusting, "11001");
    assert_eq!(trusting.get("/api/x").bearer(&token).send().status, 200);
    for token in [token, job_token(&untrusting, "11002")] {
        let response = untrusting.get("/api/x").bearer(&token).send();
        assert_eq!(response.status, 503, "{}", response.text());
        assert_eq!(response.json()["reason"], "state_unavailable");
    }
    assert!(
        untrusting.metric_or_zero("jobgate_cluster_errors_total", &[("op", "single_use")]) >= 2.0
    );
    let mut untrusting = untrusting;
    untrusting.assert_alive();
}
