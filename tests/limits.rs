//! Limits (SPEC §8): `[[route.limit]]` token buckets keyed by a claim or by the client
//! address, and `single_use` routes, against the real binary, a real test issuer and a real
//! echo upstream on 127.0.0.1. Every wait is bounded.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::issuer::TestIssuer;
use support::world::World;
use support::{RawResponse, wait_until};

const AUD: &str = "https://api.example";

/// A world with one authenticated route `api` on `/api` whose allow rule admits tokens of
/// `acme/app`, plus `limits` (`[[route.limit]]` tables).
fn world_with_limits(limits: &str) -> World {
    world_with("", limits)
}

/// As [`world_with_limits`], with more route keys (`settings`) before the rule tables.
fn world_with(settings: &str, limits: &str) -> World {
    World::builder()
        .issuer(TestIssuer::start())
        .audience(AUD)
        .upstream("api")
        .route(&format!(
            "name = \"api\"\npath_prefix = \"/api\"\nupstream = \"{{upstream}}\"\n\
             issuer = \"{{issuer}}\"\naudience = \"{{audience}}\"\n{settings}\n\n\
             [[route.allow]]\nrepository = \"acme/app\"\n\n{limits}"
        ))
        .start()
}

fn job_token(world: &World, check_run_id: &str, repository: &str) -> String {
    world.issuer().mint_github_with(
        AUD,
        json!({"check_run_id": check_run_id, "repository": repository}),
    )
}

fn call(world: &World, token: &str) -> RawResponse {
    world.get("/api/deploy").bearer(token).send()
}

fn assert_rate_limited(response: &RawResponse) -> u64 {
    assert_eq!(response.status, 429, "{}", response.text());
    assert_eq!(response.json()["reason"], "rate_limited");
    assert_eq!(response.json()["route"], "api");
    assert!(response.header("www-authenticate").is_none());
    response
        .header("retry-after")
        .and_then(|value| value.parse::<u64>().ok())
        .filter(|seconds| *seconds >= 1)
        .unwrap_or_else(|| panic!("no whole-second Retry-After: {:?}", response.headers))
}

#[test]
fn a_bucket_of_n_admits_n_then_429_with_retry_after_then_one_more_after_per_over_n() {
    let world =
        world_with_limits("[[route.limit]]\nkey = \"check_run_id\"\nrequests = 3\nper = \"3s\"\n");
    let token = job_token(&world, "5001", "acme/app");
    let burst_started = Instant::now();
    for attempt in 0..3 {
        assert_eq!(call(&world, &token).status, 200, "request {attempt}");
    }
    let retry_after = assert_rate_limited(&call(&world, &token));
    // One token comes back every per / requests = 1 s.
    assert_eq!(retry_after, 1);
    assert_eq!(
        world.metric(
            "jobgate_requests_total",
            &[("route", "api"), ("outcome", "rate_limited")]
        ),
        Some(1.0)
    );
    assert_eq!(
        world.metric(
            "jobgate_auth_failures_total",
            &[("route", "api"), ("reason", "rate_limited")]
        ),
        Some(1.0)
    );
    // A token is back 1 s after the first request of the burst; the margin covers that
    // request's own delay on a busy machine (a second token would take 2 s).
    let back_at = burst_started + Duration::from_millis(1_300);
    std::thread::sleep(back_at.saturating_duration_since(Instant::now()));
    assert_eq!(call(&world, &token).status, 200);
    assert_rate_limited(&call(&world, &token));
}

#[test]
fn claim_limits_are_per_job_and_not_spent_by_refused_requests() {
    let world =
        world_with_limits("[[route.limit]]\nkey = \"check_run_id\"\nrequests = 2\nper = \"1h\"\n");
    // Denied by the rules (another repository) and unauthenticated requests, same job id.
    let denied = job_token(&world, "6001", "evil/app");
    for _ in 0..5 {
        assert_eq!(call(&world, &denied).status, 403);
        assert_eq!(world.get("/api/deploy").send().status, 401);
    }
    let job = job_token(&world, "6001", "acme/app");
    assert_eq!(call(&world, &job).status, 200);
    assert_eq!(call(&world, &job).status, 200);
    let retry_after = assert_rate_limited(&call(&world, &job));
    assert!(retry_after > 1_700, "{retry_after}");
    // Another job has a bucket of its own.
    let other = job_token(&world, "6002", "acme/app");
    assert_eq!(call(&world, &other).status, 200);
    assert_eq!(call(&world, &other).status, 200);
    assert_rate_limited(&call(&world, &other));
    // A fresh token of the first job shares its job's bucket.
    let same_job = world.issuer().mint_github_with(
        AUD,
        json!({"check_run_id": "6001", "repository": "acme/app", "jti": "second-token"}),
    );
    assert_rate_limited(&call(&world, &same_job));
}

#[test]
fn client_ip_limits_count_every_request_including_refused_ones() {
    let world =
        world_with_limits("[[route.limit]]\nkey = \"client_ip\"\nrequests = 3\nper = \"1h\"\n");
    assert_eq!(world.get("/api/deploy").send().status, 401);
    let denied = job_token(&world, "7001", "evil/app");
    assert_eq!(call(&world, &denied).status, 403);
    let job = job_token(&world, "7002", "acme/app");
    assert_eq!(call(&world, &job).status, 200);
    // The fourth request from 127.0.0.1 finds the bucket empty, whoever sends it.
    assert_rate_limited(&call(&world, &job));
    assert_rate_limited(&world.get("/api/deploy").send());
}

#[test]
fn client_ip_limits_apply_to_public_routes_and_a_reload_keeps_the_buckets() {
    let world = World::builder()
        .upstream("open")
        .route(
            "name = \"open\"\npath_prefix = \"/open\"\nupstream = \"{upstream}\"\nauth = false\n\n\
             [[route.limit]]\nkey = \"client_ip\"\nrequests = 2\nper = \"1h\"\n",
        )
        .start_listening();
    assert_eq!(world.get("/open/a").send().status, 200);
    assert_eq!(world.get("/open/b").send().status, 200);
    let refused = world.get("/open/c").send();
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json()["reason"], "rate_limited");
    // A reload that changes nothing about the limit must not refill it.
    world.edit_config(|text| {
        text.replace(
            "path_prefix = \"/open\"",
            "path_prefix = \"/open\"\nhost = \"localhost\"",
        )
    });
    world.signal("HUP");
    assert!(
        wait_until(Duration::from_secs(10), || {
            world.metric("jobgate_config_reloads_total", &[("result", "ok")]) >= Some(1.0)
        }),
        "the reload did not happen"
    );
    let after_reload = world.get("/open/d").header("Host", "localhost").send();
    assert_eq!(after_reload.status, 429, "{}", after_reload.text());
}

#[test]
fn a_single_use_token_is_admitted_once_then_replayed_token() {
    let world = world_with("single_use = true", "");
    let token = job_token(&world, "8001", "acme/app");
    assert_eq!(call(&world, &token).status, 200);
    let replayed = call(&world, &token);
    assert_eq!(replayed.status, 401, "{}", replayed.text());
    assert_eq!(replayed.json()["reason"], "replayed_token");
    assert_eq!(
        replayed.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token", error_description="replayed_token""#)
    );
    // Another token of the same job (another jti) is a token of its own.
    let second = world.issuer().mint_github_with(
        AUD,
        json!({"check_run_id": "8001", "repository": "acme/app", "jti": "another"}),
    );
    assert_eq!(call(&world, &second).status, 200);
    assert_eq!(call(&world, &second).status, 401);
    // Without jti, the token's bytes name it.
    let no_jti = world.issuer().mint_github_with(
        AUD,
        json!({"check_run_id": "8002", "repository": "acme/app", "jti": null}),
    );
    assert_eq!(call(&world, &no_jti).status, 200);
    assert_eq!(call(&world, &no_jti).json()["reason"], "replayed_token");
    assert_eq!(
        world.metric(
            "jobgate_auth_failures_total",
            &[("route", "api"), ("reason", "replayed_token")]
        ),
        Some(3.0)
    );
}

#[test]
fn a_refused_first_attempt_does_not_use_a_single_use_token_up() {
    let world = world_with(
        "single_use = true",
        "[[route.limit]]\nkey = \"check_run_id\"\nrequests = 1\nper = \"2s\"\n",
    );
    // Denied by the rules: not used up (and the token can never pass them anyway).
    let denied = job_token(&world, "9001", "evil/app");
    assert_eq!(call(&world, &denied).status, 403);
    assert_eq!(call(&world, &denied).status, 403);
    // Refused by the job's limit: not used up either.
    let first = job_token(&world, "9002", "acme/app");
    let second = world.issuer().mint_github_with(
        AUD,
        json!({"check_run_id": "9002", "repository": "acme/app", "jti": "second"}),
    );
    let spent_at = Instant::now();
    assert_eq!(call(&world, &first).status, 200);
    let retry_after = assert_rate_limited(&call(&world, &second));
    assert!(retry_after <= 2, "{retry_after}");
    std::thread::sleep(
        (spent_at + Duration::from_millis(2_500)).saturating_duration_since(Instant::now()),
    );
    assert_eq!(call(&world, &second).status, 200);
    // A replay is refused as such, after it has spent its limit.
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(call(&world, &second).json()["reason"], "replayed_token");
    assert_rate_limited(&call(&world, &first));
}
