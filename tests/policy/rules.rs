//! Route rules (SPEC §2 condition values, §3 step 8): allow and deny tables, globs, lists,
//! regexes, typed values and absent claims; and a refusal as a gRPC client sees it.

use serde_json::json;

use crate::support::world::World;
use crate::support::{RawResponse, expect};
use crate::{ACME, AUD, assert_allowed, assert_policy_denied, call, with_rules};

/// Tokens whose `claim` is each of `allowed` pass the route's rules; those with each of
/// `denied` are refused 403 `policy_denied`.
#[track_caller]
fn assert_claim_values(world: &World, claim: &str, allowed: &[&str], denied: &[&str]) {
    for value in allowed {
        let token = world
            .issuer()
            .mint_github_with(AUD, json!({ claim: value }));
        assert_allowed(&call(world, &token), value);
    }
    for value in denied {
        let token = world
            .issuer()
            .mint_github_with(AUD, json!({ claim: value }));
        assert_policy_denied(&call(world, &token), "api", &format!("{claim} {value:?}"));
    }
}

#[test]
fn wrong_owner_is_403_policy_denied_and_never_reaches_the_upstream() {
    let world = with_rules(ACME);
    let issuer = world.issuer();
    assert_allowed(&call(&world, &issuer.mint_github(AUD)), "owner acme");
    assert_eq!(world.upstream().hits(), 1);

    let evil = issuer.mint_github_with(
        AUD,
        json!({"repository_owner": "evil", "repository": "evil/app"}),
    );
    let response = call(&world, &evil);
    assert_policy_denied(&response, "api", "owner evil");
    assert_eq!(response.json()["error"], "forbidden");
    assert_eq!(
        world.upstream().hits(),
        1,
        "a denied request reached the upstream"
    );
    assert_eq!(
        world.metric(
            "jobgate_requests_total",
            &[("outcome", "denied"), ("route", "api")]
        ),
        Some(1.0)
    );
    assert_eq!(
        world.metric(
            "jobgate_auth_failures_total",
            &[("reason", "policy_denied"), ("route", "api")]
        ),
        Some(1.0)
    );
}

#[test]
fn a_matching_deny_rule_wins_over_a_matching_allow_rule() {
    let world = with_rules(
        "[[route.allow]]\nrepository_owner = \"acme\"\n\n[[route.deny]]\nrunner_environment = \"self-hosted\"\n",
    );
    let issuer = world.issuer();
    assert_allowed(
        &call(&world, &issuer.mint_github(AUD)),
        "github-hosted runner",
    );
    let self_hosted = issuer.mint_github_with(AUD, json!({"runner_environment": "self-hosted"}));
    assert_policy_denied(&call(&world, &self_hosted), "api", "self-hosted runner");
    assert_eq!(world.upstream().hits(), 1);
}

#[test]
fn glob_star_matches_any_run_including_slashes_and_nothing_else() {
    let world =
        with_rules("[[route.allow]]\nrepository_owner = \"acme\"\nref = \"refs/tags/v*\"\n");
    assert_claim_values(
        &world,
        "ref",
        &["refs/tags/v1.2", "refs/tags/v", "refs/tags/v1/rc"],
        &[
            "refs/tags/x1",
            "refs/heads/v1",
            "refs/tags/V1",
            "xrefs/tags/v1",
            "refs/tags",
        ],
    );
    assert_eq!(world.upstream().hits(), 3);
}

#[test]
fn glob_brackets_braces_and_backslashes_are_literal_and_question_mark_is_one_character() {
    // TOML `"env[1]{a,b}\\?"` is the glob env[1]{a,b}\? : a backslash, then any one character.
    let world = with_rules(
        "[[route.allow]]\nrepository_owner = \"acme\"\nenvironment = \"env[1]{a,b}\\\\?\"\n",
    );
    assert_claim_values(
        &world,
        "environment",
        &[r"env[1]{a,b}\x", r"env[1]{a,b}\?", r"env[1]{a,b}\\"],
        &[
            r"env1a\x",
            r"enva\x",
            r"env1{a,b}\x",
            r"env[1]a\x",
            "env[1]{a,b}?",
            r"env[1]{a,b}\",
            r"env[1]{a,b}\xy",
        ],
    );
    assert_eq!(world.upstream().hits(), 3);
}

#[test]
fn a_list_is_any_of_its_entries() {
    let world = with_rules(
        "[[route.allow]]\nrepository_owner = \"acme\"\nenvironment = [\"staging\", \"production\", \"preview-*\"]\n",
    );
    assert_claim_values(
        &world,
        "environment",
        &["staging", "production", "preview-42"],
        &["dev", "Production", "staging-2", "preview"],
    );
    assert_eq!(world.upstream().hits(), 3);
}

#[test]
fn a_regex_must_match_the_whole_claim_value() {
    let world = with_rules(
        "[[route.allow]]\nrepository_owner = \"acme\"\nenvironment = { regex = \"release-[0-9]+|hotfix\" }\n",
    );
    // Partial matches at either end, including around the alternation (an unanchored or
    // badly anchored `^a|b$` would let these through), are denied.
    assert_claim_values(
        &world,
        "environment",
        &["release-12", "release-0", "hotfix"],
        &[
            "xrelease-12",
            "release-12x",
            "release-",
            "xhotfix",
            "hotfixx",
            "release-12\nhotfix",
        ],
    );
    assert_eq!(world.upstream().hits(), 3);
}

#[test]
fn integer_and_boolean_conditions_match_the_claim_as_text() {
    let world = with_rules(
        "[[route.allow]]\nrepository_owner = \"acme\"\nrun_attempt = 1\nref_protected = true\n",
    );
    let first = world
        .issuer()
        .mint_github_with(AUD, json!({"run_attempt": "1", "ref_protected": "true"}));
    assert_allowed(
        &call(&world, &first),
        "run_attempt \"1\", ref_protected \"true\"",
    );
    assert_claim_values(&world, "run_attempt", &[], &["2", "11", "01", "1.0"]);
    assert_claim_values(&world, "ref_protected", &[], &["false", "True", "TRUE"]);
    assert_eq!(world.upstream().hits(), 1);
}

#[test]
fn an_absent_claim_never_matches_not_even_a_star() {
    let world = with_rules("[[route.allow]]\nrepository_owner = \"acme\"\nenvironment = \"*\"\n");
    let issuer = world.issuer();
    let with_environment = issuer.mint_github(AUD);
    assert_allowed(&call(&world, &with_environment), "environment present");
    let without = issuer.mint_github_with(AUD, json!({"environment": null}));
    assert_policy_denied(&call(&world, &without), "api", "environment absent");
    assert_eq!(world.upstream().hits(), 1);
}

// ---------------------------------------------------------------------------------------
// gRPC refusals (SPEC §3, end).
// ---------------------------------------------------------------------------------------

#[test]
fn grpc_clients_get_http_200_with_a_grpc_status_naming_the_reason() {
    let world = with_rules(ACME);
    let evil = world
        .issuer()
        .mint_github_with(AUD, json!({"repository_owner": "evil"}));
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
        let mut request = world.post(path).header("Content-Type", content_type);
        if with_token {
            request = request.bearer(&evil);
        }
        let response: RawResponse = request.body(b"\0\0\0\0\0").send();
        let what = format!("{path} {content_type}, token: {with_token}");
        expect::status(&response, 200, &what);
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
    assert_eq!(world.upstream().hits(), 0);
}
