//! The issuer's keys (SPEC §2, §3 steps 6–7, §5 `/readyz`): rotation, unknown kids and the
//! refetch budget, outages at and after start, `max_stale`, and where keys are fetched from.

use std::time::Duration;

use serde_json::json;

use crate::support::RawResponse;
use crate::support::issuer::{TestIssuer, TestKey};
use crate::support::raw::RawServer;
use crate::support::world::World;
use crate::{
    AUD, Api, ISSUER, ROUTE, api_world, assert_invalid_token, assert_keys_unavailable, flip_char,
    mint_header, ready, ready_with,
};

/// How many keys the gateway holds for the issuer.
fn jwks_keys(world: &World) -> Option<f64> {
    world.metric("jobgate_jwks_keys", &[("issuer", ISSUER)])
}

/// Waits until at least two scheduled key fetches failed.
#[track_caller]
fn wait_for_failed_refreshes(world: &World) {
    world.wait_metric(
        "jobgate_jwks_refresh_total",
        &[("issuer", ISSUER), ("result", "error")],
        |value| value >= 2.0,
    );
}

#[test]
fn rotated_key_is_accepted_after_one_refetch_without_restart() {
    // A long refetch interval: the start-up fetch must not have spent the budget.
    let world = ready_with("min_refetch_interval = \"10m\"");
    let old = world.token();
    world.assert_admits(&old);
    let fetches = world.issuer().jwks_fetches();

    let new_key = world.issuer().rotate("rsa-2");
    let new = world.token_signed_by(&new_key);
    world.assert_admits(&new);
    assert_eq!(
        world.issuer().jwks_fetches(),
        fetches + 1,
        "exactly one refetch for the new kid"
    );
    world.assert_admits(&new);
    assert_eq!(world.issuer().jwks_fetches(), fetches + 1);

    // The retired key no longer verifies anything, cached or not; within the interval
    // that costs no fetch.
    world.assert_invalid_token(&old, "unknown_key");
    assert_eq!(world.issuer().jwks_fetches(), fetches + 1);
    assert_eq!(world.upstream().hits(), 3);
}

#[test]
fn two_hundred_unknown_kids_cause_a_single_refetch() {
    // Two worker threads: the refetch is shared across Pingora's runtimes.
    let world = api_world(TestIssuer::start())
        .issuer_keys("min_refetch_interval = \"10m\"")
        .server("threads = 2")
        .start();
    let fetches = world.issuer().jwks_fetches();
    let discoveries = world.issuer().discovery_fetches();
    let stranger = TestKey::rsa("stranger");
    let claims = world.issuer().github_claims(AUD);
    let tokens: Vec<String> = (0..200)
        .map(|_| {
            let kid = format!("kid-{:016x}", fastrand::u64(..));
            mint_header(
                &stranger,
                json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
                &claims,
            )
        })
        .collect();
    // Four clients at once, so that some requests arrive while the refetch runs.
    let world = &world;
    let responses: Vec<(String, RawResponse)> = std::thread::scope(|scope| {
        let handles: Vec<_> = tokens
            .chunks(50)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|token| (token.clone(), world.call(token)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("client thread"))
            .collect()
    });
    assert_eq!(responses.len(), 200);
    for (token, response) in &responses {
        // The refetch succeeded, so every one of them is a plain unknown key, never 503.
        assert_invalid_token(response, "unknown_key", token);
    }
    assert_eq!(
        world.issuer().jwks_fetches() - fetches,
        1,
        "200 unknown kids within min_refetch_interval: exactly one refetch"
    );
    assert_eq!(world.issuer().discovery_fetches(), discoveries);
    assert_eq!(world.upstream().hits(), 0);
    world.wait_metric(
        "jobgate_auth_failures_total",
        &[("reason", "unknown_key"), ("route", "api")],
        |value| value >= 200.0,
    );
    // Genuine tokens are unaffected.
    world.assert_admits(&world.token());
}

#[test]
fn unknown_kid_is_remembered_until_the_next_fetch() {
    let world = ready();
    let fetches = world.issuer().jwks_fetches();
    let late = TestKey::rsa("late");
    let token = world.token_signed_by(&late);
    world.assert_invalid_token(&token, "unknown_key");
    assert_eq!(world.issuer().jwks_fetches(), fetches + 1);
    // Past min_refetch_interval (1 s), the same kid still costs nothing: it is remembered.
    std::thread::sleep(Duration::from_millis(1500));
    world.issuer().add_key(late.clone());
    world.assert_invalid_token(&token, "unknown_key");
    assert_eq!(world.issuer().jwks_fetches(), fetches + 1);
    // Another unknown kid does refetch; the new set has "late", so it is forgotten.
    let stranger = TestKey::rsa("stranger");
    let other = world.token_signed_by(&stranger);
    world.assert_invalid_token(&other, "unknown_key");
    assert_eq!(world.issuer().jwks_fetches(), fetches + 2);
    assert_eq!(world.upstream().hits(), 0);
    world.assert_admits(&token);
}

#[test]
fn jwks_endpoint_failing_after_start_keeps_valid_tokens_passing() {
    let world = ready_with("refresh = \"1s\"");
    let cached = world.token();
    world.assert_admits(&cached);

    world.issuer().fail();
    // Several refreshes fail.
    wait_for_failed_refreshes(&world);

    // A token seen before and a new one both pass on the old keys.
    world.assert_admits(&cached);
    let fresh = world.token();
    world.assert_admits(&fresh);
    assert_eq!(world.readyz().status, 200);

    // A kid that cannot be checked because the refetch fails is an outage, not a bad token.
    let newcomer = TestKey::rsa("rsa-new");
    let unknown = world.token_signed_by(&newcomer);
    let response = world.call(&unknown);
    assert_keys_unavailable(&response);
    assert_eq!(response.json()["route"], ROUTE);

    // Hanging instead of failing: the request gives up waiting for the refetch, still 503.
    world.issuer().set_hang_duration(Duration::from_secs(8));
    world.issuer().hang();
    // Past min_refetch_interval (1 s), so that this kid asks for a refetch of its own.
    std::thread::sleep(Duration::from_millis(1500));
    let other = TestKey::rsa("rsa-other");
    let unknown = world.token_signed_by(&other);
    assert_keys_unavailable(&world.call(&unknown));
    world.assert_admits(&fresh);
    assert_eq!(world.upstream().hits(), 4);
}

#[test]
fn jwks_url_skips_discovery() {
    let issuer = TestIssuer::start();
    let jwks_url = format!("jwks_url = \"{}\"", issuer.jwks_url());
    let world = api_world(issuer).issuer_keys(&jwks_url).start();
    world.assert_admits(&world.token());
    assert_eq!(world.issuer().discovery_fetches(), 0);
    assert!(world.issuer().jwks_fetches() >= 1);
}

#[test]
fn keys_past_max_stale_are_dropped_and_the_issuer_fails_closed() {
    let world = ready_with("refresh = \"1s\"\nmax_stale = \"3s\"");
    let cached = world.token();
    world.assert_admits(&cached);

    world.issuer().fail();
    // Keys not dropped within 20 s fail here.
    let not_ready = world.wait_readyz(503, Duration::from_secs(20));
    assert!(not_ready.text().contains(ISSUER), "{}", not_ready.text());
    // Even the cached token: without keys nothing is admitted, and nothing is a 401.
    assert_keys_unavailable(&world.call(&cached));
    assert_keys_unavailable(&world.call(&world.token()));
    assert_eq!(jwks_keys(&world).unwrap_or(0.0), 0.0);
    assert_eq!(world.upstream().hits(), 1);

    world.issuer().heal();
    world.wait_ready();
    world.assert_admits(&cached);
    assert_eq!(world.upstream().hits(), 2);
}

#[test]
fn discovered_http_jwks_uri_off_loopback_is_never_fetched() {
    // 0.0.0.0 is not a loopback address, so http:// is not allowed there; yet on Linux a
    // connection to it reaches this host, where the counter would see it.
    let counter = RawServer::tripwire();
    let issuer = TestIssuer::start();
    let port = counter.addr.port();
    issuer.set_jwks_uri(Some(&format!("http://0.0.0.0:{port}/jwks")));
    let world = api_world(issuer).start_listening();
    wait_for_failed_refreshes(&world);
    assert!(world.issuer().discovery_fetches() >= 2);
    assert_eq!(counter.connections(), 0, "the http jwks_uri was fetched");
    let ready = world.readyz();
    assert_eq!(ready.status, 503);
    assert!(ready.text().contains(ISSUER), "{}", ready.text());
    assert_keys_unavailable(&world.call(&world.token()));
    assert_eq!(world.upstream().hits(), 0);
}

/// Started while the issuer is down: 503 and not ready; healed: 200 and ready, same process.
fn started_while_the_issuer_is_down(issuer: TestIssuer, issuer_extra: &str) {
    let world = api_world(issuer)
        .issuer_keys(issuer_extra)
        .start_listening();
    let token = world.token();

    let ready = world.readyz();
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(
        ready.text().contains(ISSUER),
        "/readyz names the issuer: {}",
        ready.text()
    );
    let response = world.call(&token);
    assert_keys_unavailable(&response);
    assert_eq!(response.json()["route"], ROUTE);
    // A forged token is no different while there are no keys: nothing looks like a 401.
    assert_keys_unavailable(&world.call(&flip_char(&token, 2)));
    assert_eq!(world.upstream().hits(), 0);
    assert_eq!(jwks_keys(&world), Some(0.0));
    world.wait_metric(
        "jobgate_auth_failures_total",
        &[("reason", "keys_unavailable"), ("route", "api")],
        |value| value >= 2.0,
    );
    world.wait_metric(
        "jobgate_requests_total",
        &[("outcome", "unavailable"), ("route", "api")],
        |value| value >= 2.0,
    );
    let pid = world.pid();

    world.issuer().heal();
    // The key store retries with a backoff that starts at 1 s and doubles.
    world.wait_readyz(200, Duration::from_secs(30));
    world.assert_admits(&token);
    assert_eq!(world.pid(), pid);
    assert_eq!(world.upstream().hits(), 1);
    assert_eq!(jwks_keys(&world), Some(1.0));
}

#[test]
fn started_with_the_issuer_failing_is_503_until_it_heals() {
    let issuer = TestIssuer::start();
    issuer.fail();
    started_while_the_issuer_is_down(issuer, "");
}

#[test]
fn started_with_the_issuer_hanging_is_503_until_it_heals() {
    let issuer = TestIssuer::start();
    issuer.set_hang_duration(Duration::from_secs(8));
    issuer.hang();
    // Each hung fetch costs jobgate's 5 s fetch timeout; `refresh` caps the retry backoff
    // so that healing is noticed within the 30 s the test allows.
    started_while_the_issuer_is_down(issuer, "refresh = \"2s\"");
}
