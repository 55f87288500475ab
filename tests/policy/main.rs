//! The real `jobgate` binary with a real test issuer and a real upstream on 127.0.0.1:
//! route rules (SPEC §2 condition values, §3 step 8), refusal shapes (HTTP and gRPC),
//! identity headers (§4), revocation and the audit log (§6).

#[path = "../support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::issuer::{TestIssuer, TestKey};
use support::{EchoUpstream, Jobgate, RawResponse, get, raw_request, wait_until};

/// The audience every authenticated route of this file asks for.
const AUD: &str = "https://api.internal.example";

/// Generous bound for anything that waits on the gateway (loaded 2-core machines).
const WAIT: Duration = Duration::from_secs(20);

/// A GitHub-kind `[[issuer]]` block named `gh` for the test issuer, plus `extra` lines
/// (which may open an `[issuer.headers]` sub-table, so they come last).
fn github_issuer(issuer: &TestIssuer, extra: &str) -> String {
    format!("{}kind = \"github\"\n{extra}\n", issuer.config_toml("gh"))
}

/// An authenticated route on the `gh` issuer; `settings` are extra route keys, `rules` the
/// `[[route.allow]]`/`[[route.deny]]` tables.
fn route(name: &str, upstream: &EchoUpstream, settings: &str, rules: &str) -> String {
    format!(
        "[[route]]\nname = \"{name}\"\nupstream = \"{}\"\nissuer = \"gh\"\naudience = \"{AUD}\"\n{settings}\n{rules}\n",
        upstream.url()
    )
}

/// Starts jobgate with `body` and waits (bounded) until every issuer has keys, so the
/// first request never meets a cold key set.
fn start(body: &str) -> Jobgate {
    let gateway = Jobgate::start(body);
    let deadline = Instant::now() + WAIT;
    loop {
        if get(gateway.admin, "/readyz").status == 200 {
            return gateway;
        }
        assert!(
            Instant::now() < deadline,
            "jobgate did not become ready within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET target` with `Bearer token` and extra headers.
fn call_with(addr: SocketAddr, target: &str, token: &str, extra: &[(&str, &str)]) -> RawResponse {
    let authorization = format!("Bearer {token}");
    let mut headers = vec![("Authorization", authorization.as_str())];
    headers.extend_from_slice(extra);
    raw_request(addr, "GET", target, &headers, b"")
}

fn call(gateway: &Jobgate, token: &str) -> RawResponse {
    call_with(gateway.addr, "/v1/items", token, &[])
}

fn body_text(response: &RawResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

#[track_caller]
fn assert_allowed(response: &RawResponse, what: &str) {
    assert_eq!(
        response.status,
        200,
        "{what}: expected the upstream's 200, got {} {}",
        response.status,
        body_text(response)
    );
    assert!(
        response.json()["upstream"].is_string(),
        "{what}: the answer did not come from the echo upstream: {}",
        body_text(response)
    );
}

#[track_caller]
fn assert_refused(response: &RawResponse, status: u16, reason: &str, route: &str, what: &str) {
    assert_eq!(response.status, status, "{what}: {}", body_text(response));
    let body = response.json();
    assert_eq!(body["reason"], reason, "{what}: {body}");
    assert_eq!(body["route"], route, "{what}: {body}");
}

#[track_caller]
fn assert_policy_denied(response: &RawResponse, route: &str, what: &str) {
    assert_refused(response, 403, "policy_denied", route, what);
    assert_eq!(
        response.header("www-authenticate"),
        Some(r#"Bearer error="insufficient_scope""#),
        "{what}"
    );
}

/// A gateway with one route `api` on `/v1` whose rules are `rules`.
fn gateway_with_rules(issuer: &TestIssuer, upstream: &EchoUpstream, rules: &str) -> Jobgate {
    start(&format!(
        "[audit]\noutput = \"off\"\n\n{}{}",
        github_issuer(issuer, ""),
        route("api", upstream, "path_prefix = \"/v1\"", rules)
    ))
}

// ---------------------------------------------------------------------------------------
// Rules (SPEC §2 condition values, §3 step 8).
// ---------------------------------------------------------------------------------------

#[test]
fn wrong_owner_is_403_policy_denied_and_never_reaches_the_upstream() {
    let issuer = TestIssuer::start();
    let upstream = EchoUpstream::start("api");
    let gateway = gateway_with_rules(
        &issuer,
        &upstream,
        "[[route.allow]]\nrepository_owner = \"acme\"\n",
    );
    assert_allowed(&call(&gateway, &issuer.mint_github(AUD)), "owner acme");
    assert_eq!(upstream.hits(), 1);

    let evil = issuer.mint_github_with(
        AUD,
        json!({"repository_owner": "evil", "repository": "evil/app"}),
    );
    let response = call(&gateway, &evil);
    assert_policy_denied(&response, "api", "owner evil");
    assert_eq!(response.json()["error"], "forbidden");
    assert_eq!(upstream.hits(), 1, "a denied request reached the upstream");
    assert_eq!(
        gateway.metric(r#"jobgate_requests_total{outcome="denied",route="api"}"#),
        Some(1.0)
    );
    assert_eq!(
        gateway.metric(r#"jobgate_auth_failures_total{reason="policy_denied",route="api"}"#),
        Some(1.0)
    );
}

#[test]
fn a_matching_deny_rule_wins_over_a_matching_allow_rule() {
    let issuer = TestIssuer::start();
    let upstream = EchoUpstream::start("api");
    let gateway = gateway_with_rules(
        &issuer,
        &upstream,
        "[[route.allow]]\nrepository_owner = \"acme\"\n\n[[route.deny]]\nrunner_environment = \"self-hosted\"\n",
    );
    assert_allowed(
        &call(&gateway, &issuer.mint_github(AUD)),
        "github-hosted runner",
    );
    let self_hosted = issuer.mint_github_with(AUD, json!({"runner_environment": "self-hosted"}));
    assert_policy_denied(&call(&gateway, &self_hosted), "api", "self-hosted runner");
    assert_eq!(upstream.hits(), 1);
}

#[test]
fn glob_star_matches_any_run_including_slashes_and_nothing_else() {
    let issuer = TestIssuer::start();
    let upstream = EchoUpstream::start("api");
    let gateway = gateway_with_rules(
        &issuer,
        &upstream,
        "[[route.allow]]\nrepository_owner = \"acme\"\nref = \"refs/tags/v*\"\n",
    );
    for allowed in ["refs/tags/v1.2", "refs/tags/v", "refs/tags/v1/rc"] {
        let token = issuer.mint_github_with(AUD, json!({ "ref": allowed }));
        assert_allowed(&call(&gateway, &token), allowed);
    }
    for denied in [
        "refs/tags/x1",
        "refs/heads/v1",
        "refs/tags/V1",
        "xrefs/tags/v1",
        "refs/tags",
    ] {
        let token = issuer.mint_github_with(AUD, json!({ "ref": denied }));
        assert_policy_denied(&call(&gateway, &token), "api", denied);
    }
    assert_eq!(upstream.hits(), 3);
}

#[test]
fn glob_brackets_braces_and_backslashes_are_literal_and_question_mark_is_one_character() {
    let issuer = TestIssuer::start();
    let upstream = EchoUpstream::start("api");
    // TOML `"env[1]{a,b}\\?"` is the glob env[1]{a,b}\? : a backslash, then any one character.
    let gateway = gateway_with_rules(
        &issuer,
        &upstream,
        "[[route.allow]]\nrepository_owner = \"acme\"\nenvironment = \"env[1]{a,b}\\\\?\"\n",
    );
    for allowed in [r"env[1]{a,b}\x", r"env[1]{a,b}\?", r"env[1]{a,b}\\"] {
        let token = issuer.mint_github_with(AUD, json!({ "environment": allowed }));
        assert_allowed(&call(&gateway, &token), allowed);
    }
    for denied in [
        r"env1a\x",
        r"enva\x",
        r"env1{a,b}\x",
        r"env[1]a\x",
        "env[1]{a,b}?",
        r"env[1]{a,b}\",
        r"env[1]{a,b}\xy",
    ] {
        let token = issuer.mint_github_with(AUD, json!({ "environment": denied }));
        assert_policy_denied(&call(&gateway, &token), "api", denied);
    }
    assert_eq!(upstream.hits(), 3);
}

#[test]
fn a_list_is_any_of_its_entries() {
    let issuer = TestIssuer::start();
    let upstream = EchoUpstream::start("api");
    let gateway = gateway_with_rules(
        &issuer,
        &upstream,
        "[[route.allow]]\nrepository_owner = \"acme\"\nenvironment = [\"staging\", \"production\", \"preview-*\"]\n",
    );
    for allowed in ["staging", "production", "preview-42"] {
        let token = issuer.mint_github_with(AUD, json!({ "environment": allowed }));
        assert_allowed(&call(&gateway, &token), allowed);
    }
    for denied in ["dev", "Production", "staging-2", "preview"] {
        let token = issuer.mint_github_with(AUD, json!({ "environment": denied }));
        assert_policy_denied(&call(&gateway, &token), "api", denied);
    }
    assert_eq!(upstream.hits(), 3);
}

#[test]
fn a_regex_must_match_the_whole_claim_value() {
    let issuer = TestIssuer::start();
    let upstream = EchoUpstream::start("api");
    let gateway = gateway_with_rules(
        &issuer,
        &upstream,
        "[[route.allow]]\nrepository_owner = \"acme\"\nenvironment = { regex = \"release-[0-9]+|hotfix\" }\n",
    );
    for allowed in ["release-12", "release-0", "hotfix"] {
        let token = issuer.mint_github_with(AUD, json!({ "environment": allowed }));
        assert_allowed(&call(&gateway, &token), allowed);
    }
    // Partial matches at either end, including around the alternation (an unanchored or
    // badly anchored `^a|b$` would let these through).
    for denied in [
        "xrelease-12",
        "release-12x",
        "release-",
        "xhotfix",
        "hotfixx",
        "release-12\nhotfix",
    ] {
        let token = issuer.mint_github_with(AUD, json!({ "environment": denied }));
        assert_policy_denied(&call(&gateway, &token), "api", &format!("{denied:?}"));
    }
    assert_eq!(upstream.hits(), 3);
}

#[test]
fn integer_and_boolean_conditions_match_the_claim_as_text() {
    let issuer = TestIssuer::start();
    let upstream = EchoUpstream::start("api");
    let gateway = gateway_with_rules(
        &issuer,
        &upstream,
        "[[route.allow]]\nrepository_owner = \"acme\"\nrun_attempt = 1\nref_protected = true\n",
    );
    let first = issuer.mint_github_with(AUD, json!({"run_attempt": "1", "ref_protected": "true"}));
    assert_allowed(
        &call(&gateway, &first),
        "run_attempt \"1\", ref_protected \"true\"",
    );
    for denied in ["2", "11", "01", "1.0"] {
        let token = issuer.mint_github_with(AUD, json!({ "run_attempt": denied }));
        assert_policy_denied(&call(&gateway, &token), "api", denied);
    }
    for denied in ["false", "True", "TRUE"] {
        let token = issuer.mint_github_with(AUD, json!({ "ref_protected": denied }));
        assert_policy_denied(&call(&gateway, &token), "api", denied);
    }
    assert_eq!(upstream.hits(), 1);
}

#[test]
fn an_absent_claim_never_matches_not_even_a_star() {
    let issuer = TestIssuer::start();
    let upstream = EchoUpstream::start("api");
    let gateway = gateway_with_rules(
        &issuer,
        &upstream,
        "[[route.allow]]\nrepository_owner = \"acme\"\nenvironment = \"*\"\n",
    );
    let with_environment = issuer.mint_github(AUD);
    assert_allowed(&call(&gateway, &with_environment), "environment present");
    let without = issuer.mint_github_with(AUD, json!({"environment": null}));
    assert_policy_denied(&call(&gateway, &without), "api", "environment absent");
    assert_eq!(upstream.hits(), 1);
}

// ---------------------------------------------------------------------------------------
// Revocation (SPEC §6).
// ---------------------------------------------------------------------------------------

#[test]
fn revocation_by_check_run_id_applies_without_restart_and_expired_entries_are_ignored() {
    let issuer = TestIssuer::start();
    let upstream = EchoUpstream::start("api");
    let gateway = start(&format!(
        "[audit]\noutput = \"off\"\n\n[revocation]\nfile = \"revoked.toml\"\n\n{}{}",
        github_issuer(&issuer, ""),
        route(
            "api",
            &upstream,
            "path_prefix = \"/v1\"",
            "[[route.allow]]\nrepository_owner = \"acme\"\n"
        )
    ));
    let job =
        |check_run_id: &str| issuer.mint_github_with(AUD, json!({ "check_run_id": check_run_id }));
    let (leaked, expired, renamed) = (job("111"), job("222"), job("333"));
    let revoked_file = gateway.dir.path().join("revoked.toml");
    assert!(!revoked_file.exists(), "the file is missing at start");
    assert_allowed(&call(&gateway, &leaked), "before revocation");

    // A plain write of a new file.
    std::fs::write(
        &revoked_file,
        "[[revoke]]\ncheck_run_id = \"111\"\nreason = \"leaked runner\"\n",
    )
    .expect("write the revocation file");
    let mut last = None;
    let revoked = wait_until(Duration::from_secs(10), || {
        let response = call(&gateway, &leaked);
        let done = response.status == 403;
        last = Some(response);
        done
    });
    let last = last.expect("at least one request");
    assert!(
        revoked,
        "not revoked within 10 s: {} {}",
        last.status,
        body_text(&last)
    );
    assert_refused(&last, 403, "revoked", "api", "revoked job");
    assert_eq!(
        last.header("www-authenticate"),
        Some(r#"Bearer error="insufficient_scope""#)
    );
    assert_allowed(&call(&gateway, &renamed), "another job is untouched");

    // An editor's save-by-rename: new content in a temp file, renamed over the list. It
    // drops the first entry, adds one that expired (ignored) and one for job 333.
    let staged = gateway.dir.path().join(".revoked.toml.swp");
    std::fs::write(
        &staged,
        "[[revoke]]\ncheck_run_id = \"222\"\nreason = \"expired\"\nuntil = 2020-01-01T00:00:00Z\n\n\
         [[revoke]]\ncheck_run_id = [\"222\", \"999\"]\nuntil = \"2021-06-01T12:00:00Z\"\n\n\
         [[revoke]]\ncheck_run_id = \"333\"\nreason = \"renamed\"\nuntil = 2999-01-01T00:00:00Z\n",
    )
    .expect("write the staged file");
    std::fs::rename(&staged, &revoked_file).expect("rename over the revocation file");
    let mut last = None;
    let revoked = wait_until(Duration::from_secs(10), || {
        let response = call(&gateway, &renamed);
        let done = response.status == 403;
        last = Some(response);
        done
    });
    let last = last.expect("at least one request");
    assert!(
        revoked,
        "save-by-rename not seen within 10 s: {} {}",
        last.status,
        body_text(&last)
    );
    assert_refused(&last, 403, "revoked", "api", "job 333 after the rename");
    assert_allowed(&call(&gateway, &expired), "entries whose `until` passed");
    assert_allowed(
        &call(&gateway, &leaked),
        "job 111 after its entry was removed",
    );
    assert_eq!(
        gateway.metric(r#"jobgate_auth_failures_total{reason="revoked",route="api"}"#),
        Some(2.0)
    );
}

// ---------------------------------------------------------------------------------------
// Shadow mode (SPEC §3 step 8, §5).
// ---------------------------------------------------------------------------------------

#[test]
fn shadow_mode_lets_a_would_be_denied_request_through_and_counts_it() {
    let issuer = TestIssuer::start();
    let upstream = EchoUpstream::start("api");
    let gateway = start(&format!(
        "[audit]\noutput = \"audit.log\"\n\n{}{}",
        github_issuer(&issuer, ""),
        route(
            "shadowed",
            &upstream,
            "path_prefix = \"/v1\"\nmode = \"shadow\"",
            "[[route.allow]]\nrepository_owner = \"acme\"\n\n[[route.deny]]\nrunner_environment = \"self-hosted\"\n"
        )
    ));
    let evil = issuer.mint_github_with(
        AUD,
        json!({"repository_owner": "evil", "repository": "evil/app"}),
    );
    let response = call(&gateway, &evil);
    assert_allowed(&response, "would-be-denied request in shadow mode");
    assert_eq!(
        response.echoed_header("x-github-repository"),
        Some(vec!["evil/app".to_owned()]),
        "the upstream still learns who called"
    );
    let denied_by_rule = issuer.mint_github_with(AUD, json!({"runner_environment": "self-hosted"}));
    assert_allowed(&call(&gateway, &denied_by_rule), "deny rule in shadow mode");
    assert_allowed(&call(&gateway, &issuer.mint_github(AUD)), "allowed request");
    assert_eq!(upstream.hits(), 3);

    // Token verification is still enforced.
    let forged = issuer.mint_with_key(&TestKey::rsa("rsa-1"), issuer.github_claims(AUD));
    assert_refused(
        &call(&gateway, &forged),
        401,
        "bad_signature",
        "shadowed",
        "bad signature in shadow mode",
    );
    assert_eq!(upstream.hits(), 3);

    // The label order on the real page (alphabetical), not assumed.
    let page = body_text(&get(gateway.admin, "/metrics"));
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
        gateway.metric(r#"jobgate_requests_total{outcome="allowed",route="shadowed"}"#),
        Some(1.0)
    );
    assert_eq!(
        gateway.metric(r#"jobgate_requests_total{outcome="unauthenticated",route="shadowed"}"#),
        Some(1.0)
    );

    // The audit line says what enforcement would have done.
    let lines = audit_lines(&gateway.dir.path().join("audit.log"), 4);
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

// ---------------------------------------------------------------------------------------
// gRPC refusals (SPEC §3, end).
// ---------------------------------------------------------------------------------------

#[test]
fn grpc_clients_get_http_200_with_a_grpc_status_naming_the_reason() {
    let issuer = TestIssuer::start();
    let upstream = EchoUpstream::start("api");
    let gateway = gateway_with_rules(
        &issuer,
        &upstream,
        "[[route.allow]]\nrepository_owner = \"acme\"\n",
    );
    let evil = issuer.mint_github_with(AUD, json!({"repository_owner": "evil"}));
    let bearer = format!("Bearer {evil}");
    // (path, content type, sends the token, grpc-status, reason)
    let cases = [
        (
            "/v1/pkg.Service/Call",
            "application/grpc",
            true,
            "7",
            "policy_denied",
        ),
        (
            "/v1/pkg.Service/Call",
            "application/grpc+proto",
            true,
            "7",
            "policy_denied",
        ),
        (
            "/v1/pkg.Service/Call",
            "application/grpc",
            false,
            "16",
            "missing_token",
        ),
        (
            "/other.Service/Call",
            "application/grpc",
            false,
            "5",
            "no_route",
        ),
    ];
    for (path, content_type, with_token, grpc_status, reason) in cases {
        let mut headers = vec![("Content-Type", content_type)];
        if with_token {
            headers.push(("Authorization", &bearer));
        }
        let response = raw_request(gateway.addr, "POST", path, &headers, b"\0\0\0\0\0");
        let what = format!("{path} {headers:?}");
        assert_eq!(response.status, 200, "{what}: {}", body_text(&response));
        assert_eq!(response.header("grpc-status"), Some(grpc_status), "{what}");
        let message = response.header("grpc-message").unwrap_or_default();
        assert!(
            message.contains(reason),
            "{what}: grpc-message {message:?} does not name {reason}"
        );
        assert!(
            response
                .header("content-type")
                .is_some_and(|value| value.starts_with("application/grpc")),
            "{what}: {:?}",
            response.headers
        );
    }
    assert_eq!(upstream.hits(), 0);
}

// ---------------------------------------------------------------------------------------
// Identity headers (SPEC §3 step 1, §4).
// ---------------------------------------------------------------------------------------

#[test]
fn the_upstream_receives_every_github_identity_header_and_no_client_copies() {
    let issuer = TestIssuer::start();
    let upstream = EchoUpstream::start("api");
    let gateway = start(&format!(
        "[audit]\noutput = \"off\"\n\n{}{}",
        github_issuer(&issuer, "server_url = \"https://github.example.com/\""),
        route(
            "api",
            &upstream,
            "path_prefix = \"/v1\"",
            "[[route.allow]]\nrepository_owner = \"acme\"\n"
        )
    ));
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
    let response = call_with(
        gateway.addr,
        "/v1/items",
        &token,
        &[
            ("X-GitHub-Repository", "evil/spoof"),
            ("X_GitHub_Ref", "refs/heads/spoof"),
            ("x-jobgate-route", "spoof"),
            ("X-GITHUB-RUN-ID", "1"),
            ("x_jobgate_subject", "spoof"),
            ("X-GitHub-Unknown", "spoof"),
        ],
    );
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
        !body_text(&response).contains("spoof"),
        "a spoofed value reached the upstream: {}",
        body_text(&response)
    );

    // An absent claim sets no header.
    let without_environment = issuer.mint_github_with(AUD, json!({"environment": null}));
    let response = call_with(
        gateway.addr,
        "/v1/items",
        &without_environment,
        &[("X-GitHub-Environment", "spoof")],
    );
    assert_allowed(&response, "no environment claim");
    assert_eq!(response.echoed_header("x-github-environment"), None);
}

#[test]
fn a_custom_header_table_replaces_the_defaults() {
    let issuer = TestIssuer::start();
    let upstream = EchoUpstream::start("api");
    let gateway = start(&format!(
        "[audit]\noutput = \"off\"\n\n{}{}",
        github_issuer(
            &issuer,
            "[issuer.headers]\n\"X-Repo\" = \"repository\"\n\"X-Job\" = \"job_url\"\n\"X-Attempt\" = \"run_attempt\"\n"
        ),
        route(
            "api",
            &upstream,
            "path_prefix = \"/v1\"",
            "[[route.allow]]\nrepository_owner = \"acme\"\n"
        )
    ));
    let response = call_with(
        gateway.addr,
        "/v1/items",
        &issuer.mint_github(AUD),
        &[("x_repo", "evil/spoof"), ("X-Job", "spoof")],
    );
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
        Some(vec![issuer.url()])
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
    let issuer = TestIssuer::start();
    let upstream = EchoUpstream::start("api");
    let gateway = gateway_with_rules(
        &issuer,
        &upstream,
        "[[route.allow]]\nrepository_owner = \"acme\"\n",
    );
    let cases = [
        json!({"ref": "refs/heads/main\r\nX-Injected: yes"}),
        json!({"ref": "refs/heads/main\nX-Injected: yes"}),
        json!({"actor": "caf\u{e9}"}),
        json!({"environment": "prod\tx"}),
        json!({"sub": "repo:acme/app:ref:\r\nrefs/heads/main"}),
    ];
    for overrides in cases {
        let token = issuer.mint_github_with(AUD, overrides.clone());
        let response = call(&gateway, &token);
        assert_refused(
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
    assert_eq!(upstream.hits(), 0);
    // A value with spaces and other visible ASCII is fine.
    let fine = issuer.mint_github_with(AUD, json!({"ref": "refs/heads/a b~!\"#"}));
    let response = call(&gateway, &fine);
    assert_allowed(&response, "visible ASCII and space");
    assert_eq!(
        response.echoed_header("x-github-ref"),
        Some(vec!["refs/heads/a b~!\"#".to_owned()])
    );
}

#[test]
fn authorization_is_stripped_by_default_and_kept_when_asked() {
    let issuer = TestIssuer::start();
    let upstream = EchoUpstream::start("api");
    let rule = "[[route.allow]]\nrepository_owner = \"acme\"\n";
    let gateway = start(&format!(
        "[audit]\noutput = \"off\"\n\n{}{}{}",
        github_issuer(&issuer, ""),
        route("stripped", &upstream, "path_prefix = \"/strip\"", rule),
        route(
            "kept",
            &upstream,
            "path_prefix = \"/keep\"\nstrip_authorization = false",
            rule
        ),
    ));
    let token = issuer.mint_github(AUD);
    let stripped = call_with(gateway.addr, "/strip/x", &token, &[]);
    assert_allowed(&stripped, "default route");
    assert_eq!(
        stripped.echoed_header("x-jobgate-route"),
        Some(vec!["stripped".to_owned()])
    );
    assert_eq!(stripped.echoed_header("authorization"), None);
    assert!(
        !body_text(&stripped).contains(&token),
        "the token reached the upstream"
    );
    let kept = call_with(gateway.addr, "/keep/x", &token, &[]);
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

// ---------------------------------------------------------------------------------------
// Audit log (SPEC §6).
// ---------------------------------------------------------------------------------------

/// Waits (bounded) until the audit file holds `count` lines, then parses each one.
fn audit_lines(path: &Path, count: usize) -> Vec<Value> {
    let mut text = String::new();
    let complete = wait_until(WAIT, || {
        text = std::fs::read_to_string(path).unwrap_or_default();
        text.ends_with('\n') && text.lines().count() >= count
    });
    assert!(
        complete,
        "the audit file has not got {count} lines within {WAIT:?}: {text:?}"
    );
    // A little longer, to catch a line too many.
    std::thread::sleep(Duration::from_millis(300));
    let text = std::fs::read_to_string(path).expect("read the audit file");
    let lines: Vec<Value> = text
        .lines()
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("audit line is not JSON ({error}): {line}"))
        })
        .collect();
    assert_eq!(lines.len(), count, "one line per request: {text}");
    for line in &lines {
        assert!(line.is_object(), "{line}");
    }
    lines
}

#[test]
fn the_audit_file_has_one_json_line_per_request_with_the_spec_fields() {
    let issuer = TestIssuer::start();
    let upstream = EchoUpstream::start("api");
    let gateway = start(&format!(
        "[audit]\noutput = \"audit.log\"\n\n{}{}",
        github_issuer(&issuer, ""),
        route(
            "api",
            &upstream,
            "path_prefix = \"/v1\"",
            "[[route.allow]]\nrepository_owner = \"acme\"\n\n[[route.deny]]\nrunner_environment = \"self-hosted\"\n"
        )
    ));
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
    assert_allowed(
        &call_with(
            gateway.addr,
            "/v1/items?secret=query-value",
            &allowed_token,
            &[],
        ),
        "allowed",
    );
    assert_policy_denied(
        &call_with(gateway.addr, "/v1/deny-me", &denied_token, &[]),
        "api",
        "denied",
    );
    assert_refused(
        &call_with(gateway.addr, "/v1/forged", &forged_token, &[]),
        401,
        "bad_signature",
        "api",
        "forged",
    );

    let path = gateway.dir.path().join("audit.log");
    let lines = audit_lines(&path, 3);
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

    let text = std::fs::read_to_string(&path).expect("read the audit file");
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
