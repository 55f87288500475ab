//! Identity headers (SPEC §3 step 1, §4): what the upstream learns about the job, that no
//! client copy of a reserved header survives, and what happens to `Authorization`.

use serde_json::json;

use crate::support::expect;
use crate::{ACME, AUD, assert_allowed, call, github, route, with_rules};

#[test]
fn the_upstream_receives_every_github_identity_header_and_no_client_copies() {
    let world = github()
        .issuer_keys("server_url = \"https://github.example.com/\"")
        .route(&route("api", "path_prefix = \"/v1\"", ACME))
        .start();
    let issuer = world.issuer();
    let claims = issuer.github_claims_with(
        AUD,
        json!({
            "repository": "acme/app",
            "repository_id": "2002",
            "repository_owner": "acme",
            "ref": "refs/tags/v1.2.3",
            "sha": "0123456789abcdef0123456789abcdef01234567",
            "actor": "octo-cat",
            "event_name": "workflow_dispatch",
            "environment": "production",
            "workflow_ref": "acme/app/.github/workflows/ci.yml@refs/tags/v1.2.3",
            "job_workflow_ref": "acme/shared/.github/workflows/deploy.yml@refs/heads/main",
            "run_id": "15012345678",
            "run_attempt": "3",
            "check_run_id": "52711234567",
            "sub": "repo:acme/app:environment:production",
        }),
    );
    let token = issuer.mint(claims.clone());
    let response = world
        .get("/v1/items")
        .bearer(&token)
        .headers(&[
            ("X-GitHub-Repository", "evil/spoof"),
            ("X_GitHub_Ref", "refs/heads/spoof"),
            ("x-jobgate-route", "spoof"),
            ("X-GITHUB-RUN-ID", "1"),
            ("x_jobgate_subject", "spoof"),
            ("X-GitHub-Unknown", "spoof"),
        ])
        .send();
    assert_allowed(&response, "identity headers");
    let expected = [
        ("x-github-repository", "acme/app"),
        ("x-github-repository-id", "2002"),
        ("x-github-repository-owner", "acme"),
        ("x-github-ref", "refs/tags/v1.2.3"),
        ("x-github-sha", "0123456789abcdef0123456789abcdef01234567"),
        ("x-github-actor", "octo-cat"),
        ("x-github-event-name", "workflow_dispatch"),
        ("x-github-environment", "production"),
        (
            "x-github-workflow-ref",
            "acme/app/.github/workflows/ci.yml@refs/tags/v1.2.3",
        ),
        (
            "x-github-job-workflow-ref",
            "acme/shared/.github/workflows/deploy.yml@refs/heads/main",
        ),
        ("x-github-run-id", "15012345678"),
        ("x-github-run-attempt", "3"),
        ("x-github-check-run-id", "52711234567"),
        (
            "x-github-job-url",
            "https://github.example.com/acme/app/actions/runs/15012345678/job/52711234567",
        ),
        ("x-jobgate-issuer", &issuer.url()),
        ("x-jobgate-subject", "repo:acme/app:environment:production"),
        ("x-jobgate-route", "api"),
    ];
    for (name, value) in expected {
        assert_eq!(
            response.echoed_header(name),
            Some(vec![value.to_owned()]),
            "upstream header {name}"
        );
    }
    // Nothing else under the reserved prefixes, in any spelling: no client copy survived.
    let echo = response.json();
    let headers = echo["headers"].as_object().expect("echoed headers");
    for name in headers.keys() {
        let canonical = name.replace('_', "-");
        if canonical.starts_with("x-github-") || canonical.starts_with("x-jobgate-") {
            assert!(
                expected
                    .iter()
                    .any(|(expected, _)| *expected == name.as_str()),
                "client-sent {name} reached the upstream: {:?}",
                headers[name]
            );
        }
    }
    assert!(
        !response.text().contains("spoof"),
        "a spoofed value reached the upstream: {}",
        response.text()
    );

    // An absent claim sets no header.
    let without_environment = issuer.mint_github_with(AUD, json!({"environment": null}));
    let response = world
        .get("/v1/items")
        .bearer(&without_environment)
        .header("X-GitHub-Environment", "spoof")
        .send();
    assert_allowed(&response, "no environment claim");
    assert_eq!(response.echoed_header("x-github-environment"), None);
}

#[test]
fn a_custom_header_table_replaces_the_defaults() {
    let world = github()
        .issuer_keys(
            "[issuer.headers]\n\"X-Repo\" = \"repository\"\n\"X-Job\" = \"job_url\"\n\"X-Attempt\" = \"run_attempt\"",
        )
        .route(&route("api", "path_prefix = \"/v1\"", ACME))
        .start();
    let response = world
        .get("/v1/items")
        .bearer(&world.token())
        .headers(&[("x_repo", "evil/spoof"), ("X-Job", "spoof")])
        .send();
    assert_allowed(&response, "custom header table");
    assert_eq!(
        response.echoed_header("x-repo"),
        Some(vec!["acme/app".to_owned()])
    );
    assert_eq!(
        response.echoed_header("x-job"),
        Some(vec![
            "https://github.com/acme/app/actions/runs/15012345678/job/52711234567".to_owned()
        ])
    );
    assert_eq!(
        response.echoed_header("x-attempt"),
        Some(vec!["1".to_owned()])
    );
    assert_eq!(
        response.echoed_header("x-jobgate-route"),
        Some(vec!["api".to_owned()])
    );
    assert_eq!(
        response.echoed_header("x-jobgate-subject"),
        Some(vec!["repo:acme/app:environment:production".to_owned()])
    );
    assert_eq!(
        response.echoed_header("x-jobgate-issuer"),
        Some(vec![world.issuer().url()])
    );
    let echo = response.json();
    let headers = echo["headers"].as_object().expect("echoed headers");
    let defaults: Vec<&String> = headers
        .keys()
        .filter(|name| name.starts_with("x-github-"))
        .collect();
    assert!(
        defaults.is_empty(),
        "default headers were still set: {defaults:?}"
    );
    assert!(
        !headers.contains_key("x_repo"),
        "client-sent x_repo survived"
    );
}

#[test]
fn a_claim_that_cannot_be_a_header_value_is_refused_unforwardable_claim() {
    let world = with_rules(ACME);
    let issuer = world.issuer();
    let cases = [
        json!({"ref": "refs/heads/main\r\nX-Injected: yes"}),
        json!({"ref": "refs/heads/main\nX-Injected: yes"}),
        json!({"actor": "caf\u{e9}"}),
        json!({"environment": "prod\tx"}),
        json!({"sub": "repo:acme/app:ref:\r\nrefs/heads/main"}),
    ];
    for overrides in cases {
        let token = issuer.mint_github_with(AUD, overrides.clone());
        let response = call(&world, &token);
        expect::refusal(
            &response,
            401,
            "unforwardable_claim",
            "api",
            &overrides.to_string(),
        );
        assert_eq!(
            response.header("www-authenticate"),
            Some(r#"Bearer error="invalid_token", error_description="unforwardable_claim""#)
        );
    }
    assert_eq!(world.upstream().hits(), 0);
    // A value with spaces and other visible ASCII is fine.
    let fine = issuer.mint_github_with(AUD, json!({"ref": "refs/heads/a b~!\"#"}));
    let response = call(&world, &fine);
    assert_allowed(&response, "visible ASCII and space");
    assert_eq!(
        response.echoed_header("x-github-ref"),
        Some(vec!["refs/heads/a b~!\"#".to_owned()])
    );
}

#[test]
fn authorization_is_stripped_by_default_and_kept_when_asked() {
    let world = github()
        .route(&route("stripped", "path_prefix = \"/strip\"", ACME))
        .route(&route(
            "kept",
            "path_prefix = \"/keep\"\nstrip_authorization = false",
            ACME,
        ))
        .start();
    let token = world.token();
    let stripped = world.get("/strip/x").bearer(&token).send();
    assert_allowed(&stripped, "default route");
    assert_eq!(
        stripped.echoed_header("x-jobgate-route"),
        Some(vec!["stripped".to_owned()])
    );
    assert_eq!(stripped.echoed_header("authorization"), None);
    assert!(
        !stripped.text().contains(&token),
        "the token reached the upstream"
    );
    let kept = world.get("/keep/x").bearer(&token).send();
    assert_allowed(&kept, "strip_authorization = false");
    assert_eq!(
        kept.echoed_header("x-jobgate-route"),
        Some(vec!["kept".to_owned()])
    );
    assert_eq!(
        kept.echoed_header("authorization"),
        Some(vec![format!("Bearer {token}")])
    );
}
