//! The verified-token cache (SPEC §3, the cache paragraph): a cached token is judged again
//! when its key goes or changes, and for every route's audience and the clock.

use std::time::Duration;

use serde_json::json;

use crate::support::issuer::{TestIssuer, TestKey, now};
use crate::support::world::World;
use crate::support::{RawResponse, expect, resend_until};
use crate::{AUD, Api, api_world, assert_invalid_token, cache_hits, ready_with};

/// Sends `token` to `target` until it is no longer admitted (at most `limit`) and returns
/// that response.
#[track_caller]
fn call_until_refused(world: &World, target: &str, token: &str, limit: Duration) -> RawResponse {
    let send = || world.get(target).bearer(token).send();
    resend_until(limit, send, |response| response.status != 200)
        .unwrap_or_else(|_| panic!("the token is still admitted after {limit:?}"))
}

/// A fresh token signed by `key` is admitted and reaches the upstream.
#[track_caller]
fn assert_fresh_token_admitted(world: &World, key: &TestKey) {
    let upstream_hits = world.upstream().hits();
    world.assert_admits(&world.token_signed_by(key));
    assert_eq!(world.upstream().hits(), upstream_hits + 1);
}

#[test]
fn cached_token_is_refused_once_its_key_leaves_the_jwks() {
    let issuer = TestIssuer::start_with_keys(vec![TestKey::rsa("rsa-1"), TestKey::rsa("rsa-2")]);
    let world = api_world(issuer).issuer_keys("refresh = \"1s\"").start();
    let token = world.token();
    world.assert_admits(&token);
    let hits = cache_hits(&world);
    world.assert_admits(&token);
    world.wait_metric(
        "jobgate_auth_duration_seconds_count",
        &[("cache", "hit")],
        |value| value > hits,
    );

    assert!(world.issuer().remove_key("rsa-1"));
    let response = call_until_refused(&world, "/v1/things", &token, Duration::from_secs(30));
    assert_invalid_token(&response, "unknown_key", &token);
    // And it stays refused.
    world.assert_invalid_token(&token, "unknown_key");
    // The key that stayed still works.
    let other = world.issuer().key("rsa-2").expect("rsa-2 is published");
    assert_fresh_token_admitted(&world, &other);
}

#[test]
fn cached_token_is_refused_once_its_kid_names_another_key() {
    let world = ready_with("refresh = \"1s\"");
    let token = world.token();
    world.assert_admits(&token);
    world.assert_admits(&token);

    // The issuer reuses the kid for new key material.
    let replacement = TestKey::rsa("rsa-1");
    assert!(world.issuer().remove_key("rsa-1"));
    world.issuer().add_key(replacement.clone());
    let response = call_until_refused(&world, "/v1/things", &token, Duration::from_secs(30));
    assert_invalid_token(&response, "bad_signature", &token);
    assert_fresh_token_admitted(&world, &replacement);
}

#[test]
fn cache_hit_still_checks_audience_and_time() {
    // A second route, for another audience, on the same issuer and upstream.
    let world = api_world(TestIssuer::start())
        .issuer_keys("leeway = \"0s\"")
        .route(
            r#"
            name = "other"
            path_prefix = "/other"
            upstream = "{upstream}"
            issuer = "{issuer}"
            audience = "https://other.internal.example"
            [[route.allow]]
            "#,
        )
        .start();
    let minted = now();
    let exp = minted + 10;
    let token = world.issuer().mint_github_with(
        AUD,
        json!({"iat": minted - 5, "nbf": minted - 5, "exp": exp}),
    );
    world.assert_admits(&token);
    let hits = cache_hits(&world);

    // Cached, but not for this audience.
    let response = world.get("/other/x").bearer(&token).send();
    expect::invalid_token(
        &response,
        "wrong_audience",
        "other",
        &token,
        "another route",
    );
    world.wait_metric(
        "jobgate_auth_duration_seconds_count",
        &[("cache", "hit")],
        |value| value > hits,
    );

    // Cached, and expired while in the cache (leeway 0).
    let refused = call_until_refused(&world, "/v1/things", &token, Duration::from_secs(40));
    assert_invalid_token(&refused, "expired", &token);
    assert!(now() >= exp, "refused as expired before its exp");
}
