//! The issuer's JWKS endpoint misbehaving: slower than the fetch timeout, failing, garbage,
//! larger than the body limit, or not speaking TLS. Authenticated routes answer 503 and
//! public ones keep serving.

use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::support::issuer::{Behaviour, TestIssuer};
use crate::support::raw::{RawServer, read_head};
use crate::support::world::any_token_route;
use crate::{
    AUD, JWKS_FETCH_TIMEOUT, JWKS_MAX_BODY, api_and_public, assert_keys_unavailable,
    assert_public_ok, call, issuer_section, mib, token_for, wait_for_fetch_errors,
    with_public_route,
};

#[test]
fn jwks_slower_than_the_fetch_timeout_at_start_is_503_not_ready_and_public_routes_serve() {
    let issuer = TestIssuer::start();
    // Far longer than the fetch timeout: an error within it proves the timeout fired.
    issuer.set_hang_duration(Duration::from_secs(30));
    issuer.set_jwks_behaviour(Behaviour::Hang);
    let started = Instant::now();
    let mut world = api_and_public(issuer);
    let token = world.issuer().mint_github(AUD);

    // While the first fetch hangs: nobody waits for it.
    for _ in 0..5 {
        let asked = Instant::now();
        let response = call(&world, "/api/x", &token);
        assert_keys_unavailable(&response, "api");
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "a request waited {:?} for the hung fetch",
            asked.elapsed()
        );
        assert_public_ok(&world, "/public/x", Duration::from_secs(3));
        std::thread::sleep(Duration::from_millis(100));
    }
    let ready = world.readyz();
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(ready.text().contains("test"), "{}", ready.text());

    // The fetch gives up after its own timeout, not after the issuer's 30 s.
    wait_for_fetch_errors(&world, "test", 1.0, Duration::from_secs(20));
    let first_error = started.elapsed();
    eprintln!("jwks hang: first fetch error {first_error:?} after start");
    assert!(
        first_error < JWKS_FETCH_TIMEOUT + Duration::from_secs(8),
        "the hung fetch took {first_error:?} to fail"
    );
    assert!(world.issuer().jwks_fetches() >= 1);
    assert_keys_unavailable(&call(&world, "/api/x", &token), "api");
    assert_public_ok(&world, "/public/x", Duration::from_secs(3));
    assert_eq!(
        world.upstream().hits(),
        6,
        "only public requests reach the upstream"
    );
    world.assert_alive();
}

/// The JWKS answers with `behaviour` from the start: 503 and not ready, public routes
/// serve, requests cause no fetches, and healing brings the keys without a restart.
fn jwks_broken_at_start(behaviour: Behaviour) {
    let issuer = TestIssuer::start();
    issuer.set_jwks_behaviour(behaviour);
    let mut world = api_and_public(issuer);
    let token = world.issuer().mint_github(AUD);
    wait_for_fetch_errors(&world, "test", 1.0, Duration::from_secs(10));
    let ready = world.readyz();
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(ready.text().contains("test"), "{}", ready.text());

    let fetches = world.issuer().jwks_fetches();
    let rss_before = world.rss_kib();
    for round in 0..40 {
        let asked = Instant::now();
        assert_keys_unavailable(&call(&world, "/api/x", &token), "api");
        assert!(asked.elapsed() < Duration::from_secs(3), "round {round}");
        if round % 10 == 0 {
            assert_public_ok(&world, "/public/x", Duration::from_secs(3));
        }
    }
    // Without keys there is no refetch to ask for: only the backoff schedule fetches.
    let during = world.issuer().jwks_fetches() - fetches;
    assert!(during <= 3, "{during} JWKS fetches during 40 requests");
    let rss_after = world.rss_kib();
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

    world.issuer().heal();
    // Not ready 30 s after the JWKS healed fails here.
    world.wait_readyz(200, Duration::from_secs(30));
    let response = call(&world, "/api/x", &token);
    assert_eq!(response.status, 200, "{}", response.text());
    world.assert_alive();
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
    let jwks_url = |server: &RawServer| format!("jwks_url = \"{}/jwks\"\n", server.url());
    let mut world = with_public_route()
        .config(&issuer_section(
            "declared",
            &declared.url(),
            &jwks_url(&declared),
        ))
        .config(&issuer_section(
            "streamed",
            &streamed.url(),
            &jwks_url(&streamed),
        ))
        .route(&any_token_route("declared", "/declared", "declared"))
        .route(&any_token_route("streamed", "/streamed", "streamed"))
        .start_listening();
    wait_for_fetch_errors(&world, "declared", 1.0, Duration::from_secs(15));
    wait_for_fetch_errors(&world, "streamed", 1.0, Duration::from_secs(15));
    let rss_first = world.rss_kib();
    // Retries back off 1 s, 2 s: two more failed fetches each.
    wait_for_fetch_errors(&world, "declared", 3.0, Duration::from_secs(20));
    wait_for_fetch_errors(&world, "streamed", 3.0, Duration::from_secs(20));
    let rss_later = world.rss_kib();
    let most = |writes: &Mutex<Vec<usize>>| {
        let writes = writes.lock().unwrap_or_else(PoisonError::into_inner);
        writes.iter().copied().max().unwrap_or(0)
    };
    let (streamed_max, declared_max) = (most(&streamed_writes), most(&declared_writes));
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
    let ready = world.readyz();
    assert_eq!(ready.status, 503);
    assert!(ready.text().contains("declared") && ready.text().contains("streamed"));
    assert_keys_unavailable(
        &call(&world, "/declared/x", &token_for(&declared.url())),
        "declared",
    );
    assert_keys_unavailable(
        &call(&world, "/streamed/x", &token_for(&streamed.url())),
        "streamed",
    );
    assert_public_ok(&world, "/public/x", Duration::from_secs(3));
    world.assert_alive();
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
    let https = |server: &RawServer| format!("https://{}", server.addr);
    let mut world = with_public_route()
        .config(&issuer_section("plain", &https(&plain), ""))
        .config(&issuer_section("closing", &https(&closing), ""))
        .route(&any_token_route("plain", "/plain", "plain"))
        .route(&any_token_route("closing", "/closing", "closing"))
        .start_listening();
    wait_for_fetch_errors(&world, "plain", 2.0, Duration::from_secs(15));
    wait_for_fetch_errors(&world, "closing", 2.0, Duration::from_secs(15));
    assert!(plain.connections() >= 2, "the plain server was never tried");
    assert!(
        closing.connections() >= 2,
        "the closing server was never tried"
    );
    let ready = world.readyz();
    assert_eq!(ready.status, 503);
    assert!(ready.text().contains("plain") && ready.text().contains("closing"));
    for _ in 0..5 {
        assert_keys_unavailable(
            &call(&world, "/plain/x", &token_for(&https(&plain))),
            "plain",
        );
        assert_keys_unavailable(
            &call(&world, "/closing/x", &token_for(&https(&closing))),
            "closing",
        );
        assert_public_ok(&world, "/public/x", Duration::from_secs(3));
    }
    assert_eq!(world.upstream().hits(), 5);
    world.assert_alive();
}
