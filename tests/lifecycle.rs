//! Operating the real binary: hot reload on SIGHUP, TLS termination (HTTP/1.1 and HTTP/2),
//! https upstreams with a private CA, and a SIGTERM drain (SPEC §7).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::pki::TestPki;
use support::world::{World, WorldBuilder};
use support::{get, wait_until};

/// The keys of a public route (no token needed).
fn public_route(name: &str, prefix: &str, upstream: &str) -> String {
    format!(
        "name = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"{upstream}\"\nauth = false\n"
    )
}

/// Two worker threads, so that a reload meets requests on both, and a drain long enough for
/// any of them.
fn reloadable() -> WorldBuilder {
    World::builder().server("threads = 2\ngrace_period = \"5s\"")
}

#[test]
fn sighup_with_a_valid_config_changes_routing_without_failing_a_request() {
    let world = reloadable()
        .upstream("old")
        .upstream("new")
        .route(&public_route("api", "/", "{upstream:old}"))
        .start();
    let (old, new) = (world.upstream_named("old"), world.upstream_named("new"));
    let addr = world.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let served_new = Arc::new(AtomicUsize::new(0));
    let load = {
        let stop = Arc::clone(&stop);
        let served_new = Arc::clone(&served_new);
        std::thread::spawn(move || {
            let mut statuses = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while (statuses.len() < 1000 || !stop.load(Ordering::SeqCst))
                && Instant::now() < deadline
            {
                let response = get(addr, "/item");
                if response.status == 200 && response.json()["upstream"] == "new" {
                    served_new.fetch_add(1, Ordering::SeqCst);
                }
                statuses.push(response.status);
            }
            statuses
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    world.edit_config(|config| config.replace(&old.url(), &new.url()));
    world.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(20);
    while served_new.load(Ordering::SeqCst) < 50 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    let statuses = load.join().expect("load thread");
    let failures = statuses.iter().filter(|status| **status != 200).count();
    assert!(statuses.len() >= 1000, "only {} requests", statuses.len());
    assert_eq!(
        failures,
        0,
        "{failures} of {} requests failed across the reload",
        statuses.len()
    );
    assert!(
        served_new.load(Ordering::SeqCst) >= 50,
        "routing did not change"
    );
    assert!(old.hits() > 0);
    assert_eq!(
        world.metric("jobgate_config_reloads_total", &[("result", "ok")]),
        Some(1.0)
    );
}

#[test]
fn sighup_with_an_invalid_config_keeps_the_old_one_and_counts_the_error() {
    let world = reloadable()
        .upstream("kept")
        .route(&public_route("api", "/", "{upstream}"))
        .start();
    let sha_before = world.metrics_page();
    world.edit_config(|config| format!("{config}\n[[route]]\nname = \"broken\"\nupstrem = 1\n"));
    world.signal("HUP");
    let counted = wait_until(Duration::from_secs(10), || {
        world.metric("jobgate_config_reloads_total", &[("result", "error")]) == Some(1.0)
    });
    assert!(counted, "reload error not counted");
    let response = world.get("/still").send();
    assert_eq!(response.status, 200);
    assert_eq!(response.json()["upstream"], "kept");
    let info = |page: &str| {
        page.lines()
            .find(|line| line.starts_with("jobgate_config_info{"))
            .map(str::to_owned)
    };
    assert_eq!(
        info(&world.metrics_page()),
        info(&sha_before),
        "live config changed"
    );
}

/// A world whose listener terminates TLS with the PKI's certificate, and whose public
/// route `api` on `/` goes to an echo upstream named `upstream`.
fn tls_world(pki: &TestPki, upstream: &str) -> World {
    World::builder()
        .server(&format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"",
            pki.cert_path.display(),
            pki.key_path.display()
        ))
        .upstream(upstream)
        .route(&public_route("api", "/", "{upstream}"))
        .start()
}

fn tls_client(pki: &TestPki, http1_only: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("CA pem");
    let builder = reqwest::Client::builder();
    let builder = if http1_only {
        builder.http1_only()
    } else {
        builder
    };
    builder
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn tls_listener_serves_http1_and_http2() {
    let pki = TestPki::new();
    let world = tls_world(&pki, "behind-tls");
    let url = format!("https://localhost:{}/hello", world.addr().port());
    runtime().block_on(async {
        let http1 = tls_client(&pki, true)
            .get(&url)
            .send()
            .await
            .expect("HTTP/1.1 over TLS");
        assert_eq!(http1.status(), 200);
        assert_eq!(http1.version(), reqwest::Version::HTTP_11);
        let body = http1.bytes().await.expect("body");
        let echo: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");

        let http2 = tls_client(&pki, false)
            .get(&url)
            .send()
            .await
            .expect("HTTP/2 over TLS");
        assert_eq!(http2.status(), 200);
        assert_eq!(http2.version(), reqwest::Version::HTTP_2);
    });
}

#[test]
fn https_upstream_is_verified_against_the_route_ca() {
    let pki = TestPki::new();
    // A TLS-terminating jobgate in front of the echo upstream `origin` plays the https
    // upstream.
    let tls_upstream = tls_world(&pki, "origin");
    let world = World::builder()
        .define(
            "tls_upstream",
            &format!("https://localhost:{}", tls_upstream.addr().port()),
        )
        .define("ca", &pki.ca_path.display().to_string())
        .route(
            r#"
            name = "trusted"
            path_prefix = "/trusted"
            upstream = "{tls_upstream}"
            upstream_ca = "{ca}"
            auth = false
            "#,
        )
        .route(&public_route("untrusted", "/untrusted", "{tls_upstream}"))
        .start();
    // The trusted route first, so that a pooled connection exists when the untrusted
    // route asks: it must not be reused across trust settings.
    for _ in 0..2 {
        let response = world.get("/trusted/x").send();
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(response.json()["upstream"], "origin");
        let refused = world.get("/untrusted/x").send();
        assert_eq!(refused.status, 502, "an unknown CA must not be trusted");
        assert_eq!(refused.json()["reason"], "upstream_unreachable");
    }
}

#[test]
fn sigterm_lets_a_slow_in_flight_request_finish_then_exits_zero() {
    let mut world = World::builder()
        .upstream("slow")
        .route(&public_route("api", "/", "{upstream}"))
        .start();
    let addr = world.addr();
    let in_flight = std::thread::spawn(move || get(addr, "/slow/request"));
    let reached = wait_until(Duration::from_secs(5), || world.upstream().hits() > 0);
    assert!(reached, "request never reached the upstream");
    world.signal("TERM");
    let response = in_flight.join().expect("request thread");
    assert_eq!(response.status, 200, "the in-flight request was cut off");
    assert_eq!(world.wait_exit(Duration::from_secs(10)), Some(0));
}
