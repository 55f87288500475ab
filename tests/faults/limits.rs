//! Limits on what a request may carry: head size at and above jobgate's limit, header count
//! at and above Pingora's, and a token at and above the default `max_token_bytes`.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::raw::{End, body_of, exchange, status_of};
use crate::support::issuer::TestIssuer;
use crate::support::raw::{RawServer, read_head};
use crate::{
    AUD, MAX_HEAD_BYTES, PINGORA_MAX_HEADERS, api_and_public, assert_public_ok, assert_refusal,
    call, mib, public_route, with_public_route,
};

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
    let mut world = with_public_route()
        .route(&public_route("big", "/big", &measuring.url(), ""))
        .start_listening();
    let rss_before = world.rss_kib();
    let framing = request_with(&[("X-Big".into(), String::new())]).len();

    // Just under the size limit: proxied whole.
    let value = "a".repeat(MAX_HEAD_BYTES - framing - 1024);
    let request = request_with(&[("X-Big".into(), value.clone())]);
    let (bytes, _, took) = exchange(world.addr(), &request, Duration::from_secs(20));
    eprintln!(
        "header of {} bytes (limit {MAX_HEAD_BYTES}): status {:?} after {took:?}",
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

    // Just above it, and far above it: 431 (or a reset), never proxied, never a crash.
    for size in [MAX_HEAD_BYTES + 4096, 4 * MAX_HEAD_BYTES] {
        let value = "a".repeat(size - framing);
        let request = request_with(&[("X-Big".into(), value)]);
        let (bytes, end, took) = exchange(world.addr(), &request, Duration::from_secs(20));
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
        assert_public_ok(&world, "/public/x", Duration::from_secs(3));
    }

    // The number of header lines: Host + Connection + the rest.
    let lines = |count: usize| -> Vec<(String, String)> {
        (0..count)
            .map(|i| (format!("X-H{i}"), "v".into()))
            .collect()
    };
    let at_limit = request_with(&lines(PINGORA_MAX_HEADERS - 2));
    let (bytes, _, _) = exchange(world.addr(), &at_limit, Duration::from_secs(10));
    assert_eq!(
        status_of(&bytes),
        Some(200),
        "{PINGORA_MAX_HEADERS} header lines"
    );
    assert_eq!(measuring.connections(), 2);
    let above = request_with(&lines(PINGORA_MAX_HEADERS - 1));
    let (bytes, end, _) = exchange(world.addr(), &above, Duration::from_secs(10));
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

    let rss_after = world.rss_kib();
    eprintln!(
        "header limits: jobgate RSS {:.1} -> {:.1} MiB",
        mib(rss_before),
        mib(rss_after)
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "RSS {rss_before} -> {rss_after} KiB"
    );
    world.assert_alive();
}

#[test]
fn token_at_and_above_the_default_max_token_bytes() {
    const DEFAULT_MAX_TOKEN_BYTES: usize = 16_384;
    let mut world = api_and_public(TestIssuer::start());
    world.wait_ready();
    let at_limit = world
        .issuer()
        .mint_github_of_length(AUD, DEFAULT_MAX_TOKEN_BYTES);
    let response = call(&world, "/api/x", &at_limit);
    assert_eq!(response.status, 200, "{}", response.text());
    let over = world
        .issuer()
        .mint_github_of_length(AUD, DEFAULT_MAX_TOKEN_BYTES + 1);
    let response = call(&world, "/api/x", &over);
    assert_refusal(&response, 401, "token_too_large", "api");
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\", error_description=\"token_too_large\"")
    );
    // Near the header limit: refused by length, fast, without parsing.
    let huge = "a".repeat(MAX_HEAD_BYTES - 4096);
    let asked = Instant::now();
    let response = call(&world, "/api/x", &huge);
    assert_refusal(&response, 401, "token_too_large", "api");
    assert!(asked.elapsed() < Duration::from_secs(5));
    assert!(!response.text().contains("aaaaaaaa"), "the token is echoed");
    assert_eq!(world.upstream().hits(), 1);
    world.assert_alive();
}
