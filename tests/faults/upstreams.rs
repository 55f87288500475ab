//! Upstreams misbehaving: refusing connections, never answering, closing mid-response.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::raw::{End, body_of, exchange, status_of};
use crate::support::issuer::TestIssuer;
use crate::support::raw::{RawServer, hold, read_head};
use crate::support::{free_port, get, wait_until};
use crate::{assert_public_ok, assert_refusal, call, public_route, with_public_route};

#[test]
fn upstream_refusing_connections_is_502_on_public_and_authenticated_routes() {
    let mut world = with_public_route()
        .issuer(TestIssuer::start())
        // A port that was free a moment ago and that nobody listens on.
        .define("dead", &format!("http://127.0.0.1:{}", free_port()))
        .route(&public_route("dead", "/dead", "{dead}", ""))
        .route(
            r#"
            name = "dead-auth"
            path_prefix = "/secure"
            upstream = "{dead}"
            issuer = "{issuer}"
            audience = "{audience}"
            [[route.allow]]
            "#,
        )
        .start();
    let token = world.token();
    let fds_before = world.open_fds();
    for _ in 0..25 {
        let asked = Instant::now();
        assert_refusal(
            &world.get("/dead/x").send(),
            502,
            "upstream_unreachable",
            "dead",
        );
        assert_refusal(
            &call(&world, "/secure/x", &token),
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
    assert_public_ok(&world, "/public/x", Duration::from_secs(3));
    let labels = [("outcome", "upstream_error"), ("route", "dead")];
    assert!(wait_until(Duration::from_secs(5), || {
        world.metric_or_zero("jobgate_requests_total", &labels) >= 25.0
    }));
    let fds_after = world.open_fds();
    eprintln!("refused upstream: jobgate fds {fds_before} -> {fds_after} after 50 failures");
    assert!(
        fds_after <= fds_before + 10,
        "fds {fds_before} -> {fds_after}"
    );
    world.assert_alive();
}

#[test]
fn upstream_that_never_answers_is_502_after_the_route_timeout_and_others_are_unaffected() {
    let hanging = RawServer::start(|mut stream, stop| {
        let _ = read_head(&mut stream, 64 * 1024);
        hold(stop, Duration::from_secs(30));
    });
    let mut world = with_public_route()
        .route(&public_route(
            "hang",
            "/hang",
            &hanging.url(),
            "timeout = \"1s\"",
        ))
        .start_listening();
    let fds_before = world.open_fds();
    let addr = world.addr();
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
        assert_public_ok(&world, "/public/x", Duration::from_secs(2));
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
    let released = wait_until(Duration::from_secs(5), || {
        world.open_fds() <= fds_before + 2
    });
    let fds_after = world.open_fds();
    eprintln!("hanging upstream: jobgate fds {fds_before} -> {fds_after}");
    assert!(released, "fds {fds_before} -> {fds_after}");
    world.assert_alive();
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
    let mut world = with_public_route()
        .route(&public_route(
            "trunc",
            "/trunc",
            &truncating.url(),
            "timeout = \"5s\"",
        ))
        .start_listening();
    for round in 0..5 {
        let (bytes, end, took) = exchange(
            world.addr(),
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
        assert_public_ok(&world, "/public/x", Duration::from_secs(3));
    }
    assert_eq!(truncating.connections(), 5);
    world.assert_alive();
}
