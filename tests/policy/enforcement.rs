//! What changes enforcement while the gateway runs: the revocation file, re-read without a
//! restart (SPEC §6), and shadow mode, which lets a would-be-denied request through and
//! counts it (SPEC §3 step 8, §5).

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::issuer::TestKey;
use crate::support::world::World;
use crate::support::{RawResponse, expect, resend_until};
use crate::{ACME, AUD, assert_allowed, call, exact_audit_lines, github, route};

/// Sends `token` until it is refused 403 (at most 10 s), and checks that refusal: 403
/// `revoked` with the `insufficient_scope` challenge.
#[track_caller]
fn assert_revoked_soon(world: &World, token: &str, what: &str) {
    let refused = |response: &RawResponse| response.status == 403;
    let last = resend_until(Duration::from_secs(10), || call(world, token), refused)
        .unwrap_or_else(|last| {
            panic!(
                "{what}: not revoked within 10 s: {} {}",
                last.status,
                last.text()
            )
        });
    expect::refusal(&last, 403, "revoked", "api", what);
    assert_eq!(
        last.header("www-authenticate"),
        Some(r#"Bearer error="insufficient_scope""#),
        "{what}"
    );
}

#[test]
fn revocation_by_check_run_id_applies_without_restart_and_expired_entries_are_ignored() {
    let world = github()
        .config("[revocation]\nfile = \"revoked.toml\"\n")
        .route(&route("api", "path_prefix = \"/v1\"", ACME))
        .start();
    let job = |check_run_id: &str| {
        world
            .issuer()
            .mint_github_with(AUD, json!({ "check_run_id": check_run_id }))
    };
    let (leaked, expired, renamed) = (job("111"), job("222"), job("333"));
    let revoked_file = world.dir().join("revoked.toml");
    assert!(!revoked_file.exists(), "the file is missing at start");
    assert_allowed(&call(&world, &leaked), "before revocation");

    // A plain write of a new file.
    std::fs::write(
        &revoked_file,
        "[[revoke]]\ncheck_run_id = \"111\"\nreason = \"leaked runner\"\n",
    )
    .expect("write the revocation file");
    assert_revoked_soon(&world, &leaked, "revoked job");
    assert_allowed(&call(&world, &renamed), "another job is untouched");

    // An editor's save-by-rename: new content in a temp file, renamed over the list. It
    // drops the first entry, adds one that expired (ignored) and one for job 333.
    let staged = world.dir().join(".revoked.toml.swp");
    std::fs::write(
        &staged,
        "[[revoke]]\ncheck_run_id = \"222\"\nreason = \"expired\"\nuntil = 2020-01-01T00:00:00Z\n\n\
         [[revoke]]\ncheck_run_id = [\"222\", \"999\"]\nuntil = \"2021-06-01T12:00:00Z\"\n\n\
         [[revoke]]\ncheck_run_id = \"333\"\nreason = \"renamed\"\nuntil = 2999-01-01T00:00:00Z\n",
    )
    .expect("write the staged file");
    std::fs::rename(&staged, &revoked_file).expect("rename over the revocation file");
    assert_revoked_soon(&world, &renamed, "job 333 after the save-by-rename");
    assert_allowed(&call(&world, &expired), "entries whose `until` passed");
    assert_allowed(
        &call(&world, &leaked),
        "job 111 after its entry was removed",
    );
    assert_eq!(
        world.metric(
            "jobgate_auth_failures_total",
            &[("reason", "revoked"), ("route", "api")]
        ),
        Some(2.0)
    );
}

#[test]
fn shadow_mode_lets_a_would_be_denied_request_through_and_counts_it() {
    let world = github()
        .audit_file()
        .route(&route(
            "shadowed",
            "path_prefix = \"/v1\"\nmode = \"shadow\"",
            &format!("{ACME}\n[[route.deny]]\nrunner_environment = \"self-hosted\"\n"),
        ))
        .start();
    let issuer = world.issuer();
    let evil = issuer.mint_github_with(
        AUD,
        json!({"repository_owner": "evil", "repository": "evil/app"}),
    );
    let response = call(&world, &evil);
    assert_allowed(&response, "would-be-denied request in shadow mode");
    assert_eq!(
        response.echoed_header("x-github-repository"),
        Some(vec!["evil/app".to_owned()]),
        "the upstream still learns who called"
    );
    let denied_by_rule = issuer.mint_github_with(AUD, json!({"runner_environment": "self-hosted"}));
    assert_allowed(&call(&world, &denied_by_rule), "deny rule in shadow mode");
    assert_allowed(&call(&world, &issuer.mint_github(AUD)), "allowed request");
    assert_eq!(world.upstream().hits(), 3);

    // Token verification is still enforced.
    let forged = issuer.mint_with_key(&TestKey::rsa("rsa-1"), issuer.github_claims(AUD));
    expect::refusal(
        &call(&world, &forged),
        401,
        "bad_signature",
        "shadowed",
        "bad signature in shadow mode",
    );
    assert_eq!(world.upstream().hits(), 3);

    // The label order on the real page (alphabetical), not assumed.
    let page = world.metrics_page();
    let sample = r#"jobgate_requests_total{outcome="would_deny",route="shadowed"} 2"#;
    assert!(
        page.lines().any(|line| line == sample),
        "no `{sample}` on /metrics:\n{}",
        page.lines()
            .filter(|line| line.starts_with("jobgate_requests_total"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        world.metric(
            "jobgate_requests_total",
            &[("outcome", "allowed"), ("route", "shadowed")]
        ),
        Some(1.0)
    );
    assert_eq!(
        world.metric(
            "jobgate_requests_total",
            &[("outcome", "unauthenticated"), ("route", "shadowed")]
        ),
        Some(1.0)
    );

    // The audit line says what enforcement would have done.
    let lines = exact_audit_lines(&world, 4);
    let would_deny: Vec<&Value> = lines
        .iter()
        .filter(|line| line["outcome"] == "would_deny")
        .collect();
    assert_eq!(would_deny.len(), 2, "{lines:#?}");
    for line in &would_deny {
        assert_eq!(line["reason"], "policy_denied", "{line}");
        assert_eq!(line["status"], 200, "{line}");
        assert_eq!(line["upstream_status"], 200, "{line}");
    }
    assert!(
        would_deny
            .iter()
            .any(|line| line["rule"] == "shadowed.deny[0]"),
        "the deny rule that would have refused is named: {would_deny:#?}"
    );
}
