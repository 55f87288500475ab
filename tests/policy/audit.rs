//! The audit log (SPEC §6): one JSON line per request on an authenticated route, with the
//! fields the spec lists; unverified claims only under `unverified_` names; never a token
//! or a query.

use serde_json::{Value, json};

use crate::support::expect;
use crate::support::issuer::TestKey;
use crate::{ACME, AUD, assert_allowed, assert_policy_denied, exact_audit_lines, github, route};

#[test]
fn the_audit_file_has_one_json_line_per_request_with_the_spec_fields() {
    let world = github()
        .audit_file()
        .route(&route(
            "api",
            "path_prefix = \"/v1\"",
            &format!("{ACME}\n[[route.deny]]\nrunner_environment = \"self-hosted\"\n"),
        ))
        .start();
    let issuer = world.issuer();
    let allowed_token = issuer.mint_github_with(AUD, json!({"jti": "jti-allowed"}));
    let denied_token = issuer.mint_github_with(
        AUD,
        json!({"jti": "jti-denied", "runner_environment": "self-hosted", "check_run_id": "52700000002"}),
    );
    // Signed by a key that is not the issuer's, under the issuer's kid.
    let forged_token = issuer.mint_with_key(
        &TestKey::rsa("rsa-1"),
        issuer.github_claims_with(
            AUD,
            json!({"jti": "jti-forged", "repository": "evil/app", "repository_owner": "evil",
                   "check_run_id": "52700000003", "environment": "prod-forged"}),
        ),
    );
    let call = |target: &str, token: &str| world.get(target).bearer(token).send();
    assert_allowed(
        &call("/v1/items?secret=query-value", &allowed_token),
        "allowed",
    );
    assert_policy_denied(&call("/v1/deny-me", &denied_token), "api", "denied");
    expect::refusal(
        &call("/v1/forged", &forged_token),
        401,
        "bad_signature",
        "api",
        "forged",
    );

    let lines = exact_audit_lines(&world, 3);
    let by_outcome = |outcome: &str| -> &Value {
        let found: Vec<&Value> = lines
            .iter()
            .filter(|line| line["outcome"] == outcome)
            .collect();
        assert_eq!(found.len(), 1, "one {outcome} line: {lines:#?}");
        found[0]
    };

    let common = |line: &Value| {
        let ts = line["ts"].as_str().expect("ts is a string");
        assert!(
            ts.len() >= 20 && ts.as_bytes()[10] == b'T' && (ts.ends_with('Z') || ts.contains('+')),
            "ts is not RFC 3339: {ts}"
        );
        assert_eq!(line["route"], "api", "{line}");
        assert_eq!(line["method"], "GET", "{line}");
        assert_eq!(line["client_ip"], "127.0.0.1", "{line}");
        assert!(
            line["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
            "duration_ms: {line}"
        );
    };

    let allowed = by_outcome("allowed");
    common(allowed);
    for (field, value) in [
        ("reason", Value::Null),
        ("rule", json!("api.allow[0]")),
        ("status", json!(200)),
        ("path", json!("/v1/items")),
        ("iss", json!(issuer.url())),
        ("sub", json!("repo:acme/app:environment:production")),
        ("repository", json!("acme/app")),
        ("repository_owner", json!("acme")),
        ("ref", json!("refs/heads/main")),
        ("sha", json!("e3b0c44298fc1c149afbf4c8996fb92427ae41e4")),
        (
            "job_workflow_ref",
            json!("acme/app/.github/workflows/deploy.yml@refs/heads/main"),
        ),
        ("environment", json!("production")),
        ("actor", json!("octocat")),
        ("event_name", json!("push")),
        ("run_id", json!("15012345678")),
        ("run_attempt", json!("1")),
        ("check_run_id", json!("52711234567")),
        (
            "job_url",
            json!("https://github.com/acme/app/actions/runs/15012345678/job/52711234567"),
        ),
        ("jti", json!("jti-allowed")),
        ("upstream_status", json!(200)),
    ] {
        assert_eq!(
            allowed.get(field),
            Some(&value),
            "allowed line field {field}: {allowed}"
        );
    }

    let denied = by_outcome("denied");
    common(denied);
    for (field, value) in [
        ("reason", json!("policy_denied")),
        ("rule", json!("api.deny[0]")),
        ("status", json!(403)),
        ("path", json!("/v1/deny-me")),
        ("repository", json!("acme/app")),
        ("check_run_id", json!("52700000002")),
        ("jti", json!("jti-denied")),
        ("upstream_status", Value::Null),
        (
            "job_url",
            json!("https://github.com/acme/app/actions/runs/15012345678/job/52700000002"),
        ),
    ] {
        assert_eq!(
            denied.get(field),
            Some(&value),
            "denied line field {field}: {denied}"
        );
    }

    let forged = by_outcome("unauthenticated");
    common(forged);
    for (field, value) in [
        ("reason", json!("bad_signature")),
        ("status", json!(401)),
        ("path", json!("/v1/forged")),
        ("unverified_repository", json!("evil/app")),
        ("unverified_check_run_id", json!("52700000003")),
        ("unverified_jti", json!("jti-forged")),
        ("unverified_iss", json!(issuer.url())),
    ] {
        assert_eq!(
            forged.get(field),
            Some(&value),
            "unauthenticated line field {field}: {forged}"
        );
    }
    let object = forged.as_object().expect("object");
    for name in object.keys() {
        let allowed_unverified = [
            "unverified_iss",
            "unverified_sub",
            "unverified_repository",
            "unverified_run_id",
            "unverified_check_run_id",
            "unverified_jti",
        ];
        assert!(
            !name.starts_with("unverified_") || allowed_unverified.contains(&name.as_str()),
            "unverified claim {name} logged: {forged}"
        );
    }
    for claim in [
        "iss",
        "sub",
        "repository",
        "repository_owner",
        "ref",
        "sha",
        "job_workflow_ref",
        "environment",
        "actor",
        "event_name",
        "run_id",
        "run_attempt",
        "check_run_id",
        "job_url",
        "jti",
    ] {
        assert!(
            object.get(claim).is_none_or(Value::is_null),
            "unverified claim logged under its own name {claim}: {forged}"
        );
    }

    let text = world.audit_text();
    assert!(
        !text.contains("prod-forged"),
        "an unverified claim was logged"
    );
    assert!(!text.contains("query-value"), "the query was logged");
    for token in [&allowed_token, &denied_token, &forged_token] {
        let signature = token.rsplit('.').next().expect("signature part");
        assert!(!text.contains(token.as_str()), "a token was logged");
        assert!(!text.contains(signature), "a token signature was logged");
    }
}

/// SPEC §8: `client_ip` is the TCP peer unless that peer is a trusted proxy; then it is the
/// rightmost `X-Forwarded-For` entry that is not itself trusted. A spoofed header from an
/// untrusted peer changes nothing.
#[test]
fn client_ip_believes_x_forwarded_for_only_from_trusted_proxies() {
    let client_ip_of = |server: &str| {
        let world = github()
            .server(server)
            .audit_file()
            .route(&route("api", "path_prefix = \"/v1\"", ACME))
            .start();
        let token = world.issuer().mint_github_with(AUD, json!({}));
        let response = world
            .get("/v1/items")
            .bearer(&token)
            .header("X-Forwarded-For", "203.0.113.9, 198.51.100.7")
            .header("X-Forwarded-For", "10.1.2.3")
            .send();
        assert_allowed(&response, "allowed");
        let lines = exact_audit_lines(&world, 1);
        lines[0]["client_ip"].clone()
    };
    assert_eq!(client_ip_of(""), "127.0.0.1");
    assert_eq!(
        client_ip_of("trusted_proxies = [\"192.0.2.1\"]"),
        "127.0.0.1"
    );
    assert_eq!(
        client_ip_of("trusted_proxies = [\"127.0.0.1\", \"10.0.0.0/8\"]"),
        "198.51.100.7"
    );
}
