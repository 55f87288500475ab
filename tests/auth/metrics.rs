//! Metrics (SPEC §5): refusals by reason, requests by outcome, key-set gauges and cache hits.

use serde_json::json;

use crate::support::issuer::now;
use crate::{
    AUD, Api, ISSUER, assert_invalid_request, assert_missing_token, cache_hits,
    call_with_authorization, ready,
};

#[test]
fn metrics_count_refusals_keys_and_cache_hits() {
    let world = ready();
    let now = now();
    for _ in 0..3 {
        let expired = world.issuer().mint_github_with(
            AUD,
            json!({"iat": now - 400, "nbf": now - 400, "exp": now - 100}),
        );
        world.assert_invalid_token(&expired, "expired");
    }
    assert_eq!(
        world.wait_metric(
            "jobgate_auth_failures_total",
            &[("reason", "expired"), ("route", "api")],
            |value| value >= 3.0
        ),
        3.0
    );
    assert_eq!(
        world.wait_metric(
            "jobgate_requests_total",
            &[("outcome", "unauthenticated"), ("route", "api")],
            |value| value >= 3.0
        ),
        3.0
    );
    let issuer = [("issuer", ISSUER)];
    assert_eq!(world.metric_or_zero("jobgate_jwks_keys", &issuer), 1.0);
    assert!(
        world.metric_or_zero(
            "jobgate_jwks_refresh_total",
            &[("issuer", ISSUER), ("result", "ok")]
        ) >= 1.0
    );
    assert!(world.metric_or_zero("jobgate_jwks_last_success_timestamp_seconds", &issuer) > 0.0);

    // 400 and 401 before any token is read count too.
    assert_missing_token(&call_with_authorization(&world, &[]));
    assert_invalid_request(&call_with_authorization(&world, &["Bearer"]), "");
    world.wait_metric(
        "jobgate_auth_failures_total",
        &[("reason", "missing_token"), ("route", "api")],
        |value| value >= 1.0,
    );
    world.wait_metric(
        "jobgate_auth_failures_total",
        &[("reason", "invalid_request"), ("route", "api")],
        |value| value >= 1.0,
    );
    world.wait_metric(
        "jobgate_requests_total",
        &[("outcome", "bad_request"), ("route", "api")],
        |value| value >= 1.0,
    );
    assert_eq!(
        world.wait_metric(
            "jobgate_requests_total",
            &[("outcome", "unauthenticated"), ("route", "api")],
            |value| value >= 4.0
        ),
        4.0
    );

    // The same token three times: one miss, then hits.
    let token = world.token();
    world.assert_admits(&token);
    let hits = cache_hits(&world);
    world.assert_admits(&token);
    world.assert_admits(&token);
    assert_eq!(
        world.wait_metric(
            "jobgate_auth_duration_seconds_count",
            &[("cache", "hit")],
            |value| value >= hits + 2.0
        ),
        hits + 2.0
    );
    assert_eq!(
        world.wait_metric(
            "jobgate_requests_total",
            &[("outcome", "allowed"), ("route", "api")],
            |value| value >= 3.0
        ),
        3.0
    );
    assert_eq!(world.upstream().hits(), 3);
}
