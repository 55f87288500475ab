//! `explain` end to end without the binary: decoded tokens against a compiled config,
//! every verdict and both renderings.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Method;
use serde_json::{Value, json};

use super::input::*;
use super::render::*;
use super::replay::*;
use super::report::*;
use crate::auth::claims::Claims;
use crate::auth::verify::{TokenTimes, claim_times};
use crate::auth::verify::{VerifiedToken, check_request};
use crate::config::Config;
use crate::policy::revocation::RevocationList;

const NOW: u64 = 1_764_122_400;
const ISS: &str = "https://token.actions.githubusercontent.com";
const AUD: &str = "https://deploy.internal.example";

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:8080"

[[issuer]]
name = "github"
url = "https://token.actions.githubusercontent.com"
max_token_age = "15m"

[[route]]
name = "deploy"
host = "deploy.internal.example"
path_prefix = "/v1/deploy"
methods = ["POST"]
upstream = "http://127.0.0.1:9"
audience = "https://deploy.internal.example"

[[route.deny]]
runner_environment = "self-hosted"

[[route.allow]]
repository_owner = "acme"
ref = ["refs/heads/main", "refs/tags/v*"]

[[route]]
name = "shadowed"
path_prefix = "/shadow"
upstream = "http://127.0.0.1:9"
audience = "https://deploy.internal.example"
mode = "shadow"

[[route.allow]]
repository_owner = "acme"

[[route]]
name = "health"
path_prefix = "/healthz"
upstream = "http://127.0.0.1:9"
auth = false
"#;

fn config() -> Config {
    crate::config::parse(CONFIG, Path::new("explain-test.toml")).expect("test config")
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn payload(overrides: Value) -> Value {
    let mut claims = json!({
        "iss": ISS, "aud": AUD, "sub": "repo:acme/app:ref:refs/heads/main",
        "repository": "acme/app", "repository_owner": "acme", "ref": "refs/heads/main",
        "runner_environment": "github-hosted", "run_id": "42", "check_run_id": "7",
        "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 240,
    });
    if let (Some(claims), Some(overrides)) = (claims.as_object_mut(), overrides.as_object()) {
        for (name, value) in overrides {
            if value.is_null() {
                claims.remove(name);
            } else {
                claims.insert(name.clone(), value.clone());
            }
        }
    }
    claims
}

fn token(overrides: Value) -> DecodedToken {
    let text = format!(
        "{}.{}.c2ln",
        b64(&json!({"alg": "RS256", "kid": "k"})),
        b64(&payload(overrides))
    );
    decode_token(&text).expect("test token decodes")
}

fn explain(overrides: Value, method: &str, url: &str) -> Explanation {
    let target = RequestTarget::parse(method, url).expect("test target");
    explain_request(
        &config(),
        &token(overrides),
        &target,
        &RevocationSource::None,
        NOW,
    )
}

fn deploy(overrides: Value) -> Explanation {
    explain(
        overrides,
        "POST",
        "https://deploy.internal.example/v1/deploy",
    )
}

#[test]
fn durations_read_at_a_glance() {
    assert_eq!(duration_text(0), "0s");
    assert_eq!(duration_text(45), "45s");
    assert_eq!(duration_text(60), "1m");
    assert_eq!(duration_text(552), "9m 12s");
    assert_eq!(duration_text(7_500), "2h 5m");
    assert_eq!(duration_text(86_400 * 3 + 7_200 + 5), "3d 2h");
    assert!(!duration_text(u64::MAX).is_empty());
    assert_eq!(relative(NOW + 90, NOW), "in 1m 30s");
    assert_eq!(relative(NOW - 3_600, NOW), "1h ago");
    assert_eq!(relative(NOW, NOW), "now");
}

#[test]
fn tokens_decode_without_verification_and_errors_never_echo_them() {
    let decoded = token(json!({}));
    assert_eq!(decoded.header_text("alg"), Some("RS256"));
    assert_eq!(decoded.claims.text("repository"), Some("acme/app"));
    let bearer = format!("  Bearer {}\n", decoded.compact);
    assert_eq!(
        decode_token(&bearer).expect("bearer prefix").compact,
        decoded.compact
    );
    let secret = "c2VjcmV0LXNlY3JldA";
    for bad in [
        String::new(),
        secret.to_owned(),
        format!("{secret}.{secret}"),
        format!("{secret}.{secret}.{secret}"),
        format!("{}.W10.x", b64(&json!({"alg": "RS256"}))),
        format!("{}.{}.x", b64(&json!(["alg"])), b64(&json!({}))),
        format!("a=.{}.x", b64(&json!({}))),
    ] {
        let error = decode_token(&bad).expect_err("undecodable");
        assert!(!error.contains(secret), "{error}");
    }
}

#[test]
fn request_targets_are_urls_or_paths() {
    let full = RequestTarget::parse("post", "https://Deploy.internal.example:8443/v1/a?x=1")
        .expect("full URL");
    assert_eq!(full.method, Method::POST);
    assert_eq!(full.host.as_deref(), Some("Deploy.internal.example"));
    assert_eq!(full.path, "/v1/a");
    let bare = RequestTarget::parse("GET", "/v1/a/../b").expect("path");
    assert_eq!(bare.host, None);
    assert_eq!(bare.path, "/v1/a/../b");
    for url in ["not a url", "deploy.internal.example/v1", ""] {
        assert!(RequestTarget::parse("GET", url).is_err(), "{url:?}");
    }
    assert!(RequestTarget::parse("B AD", "/").is_err());
}

/// explain's time checks must refuse exactly when, and why, the gateway does.
#[test]
fn time_checks_agree_with_the_gateway() {
    let config = config();
    let base = Arc::clone(&config.issuers[0]);
    let mut without_max_age = (*base).clone();
    without_max_age.max_token_age = None;
    let claims = Claims::from_json_object(json!({"aud": AUD}).as_object().expect("object"));
    let now = NOW;
    let offsets: [i64; 9] = [-2_000, -961, -960, -61, -60, -1, 0, 60, 61];
    let at = |offset: i64| now.saturating_add_signed(offset);
    for issuer in [&*base, &without_max_age] {
        for exp in offsets {
            for iat in offsets {
                for nbf in [None, Some(-10), Some(60), Some(61)] {
                    let mut verified = VerifiedToken::for_tests(claims.clone(), at(exp), at(iat));
                    verified.nbf = nbf.map(at);
                    let gateway = check_request(&verified, issuer, AUD, now).err();
                    let times = TokenTimes {
                        exp: at(exp),
                        iat: at(iat),
                        nbf: nbf.map(at),
                    };
                    let ours = time_checks(&times, issuer, now)
                        .into_iter()
                        .find(|check| check.verdict == Verdict::Fail)
                        .and_then(|check| check.reason);
                    assert_eq!(ours, gateway, "exp {exp} iat {iat} nbf {nbf:?}");
                }
            }
        }
    }
}

#[test]
fn claim_types_follow_the_gateway() {
    let types =
        |overrides: Value| claim_times(payload(overrides).as_object().expect("object")).map(|_| ());
    assert_eq!(types(json!({})), Ok(()));
    assert_eq!(types(json!({"aud": ["a", "b"], "exp": 1.5e9})), Ok(()));
    assert!(types(json!({"exp": null})).is_err());
    assert!(types(json!({"iat": "1"})).is_err());
    assert!(types(json!({"nbf": "soon"})).is_err());
    assert!(types(json!({"aud": [1]})).is_err());
    assert!(types(json!({"sub": 7})).is_err());
}

#[test]
fn an_allowed_request_names_its_rule_and_headers() {
    let explanation = deploy(json!({}));
    assert_eq!(
        explanation.decision,
        Decision::Allowed {
            rule: "deploy.allow[0]".into()
        }
    );
    assert!(explanation.rules_reached);
    let decides: Vec<&str> = explanation
        .rules
        .iter()
        .filter(|line| line.decides)
        .map(|line| line.label.as_str())
        .collect();
    assert_eq!(decides, ["deploy.allow[0]"]);
    let headers = explanation.headers.as_ref().expect("headers");
    assert!(headers.contains(&("x-jobgate-route".into(), "deploy".into())));
    assert!(headers.contains(&("x-github-repository".into(), "acme/app".into())));
    assert_eq!(
        decision_line(&explanation),
        "would be ALLOWED by deploy.allow[0]"
    );
}

#[test]
fn refusals_name_the_first_failing_step() {
    let denied = deploy(json!({"runner_environment": "self-hosted"}));
    assert_eq!(
        decision_line(&denied),
        "DENIED (403 policy_denied) by deploy.deny[0]"
    );
    assert_eq!(denied.headers, None);
    let unmatched = deploy(json!({"ref": "refs/heads/feature"}));
    assert_eq!(
        decision_line(&unmatched),
        "DENIED (403 policy_denied): no allow rule matched (deploy.allow[0] fails on ref)"
    );
    let both = deploy(json!({"aud": "other", "exp": NOW - 3_600}));
    assert!(!both.rules_reached);
    assert!(
        decision_line(&both).starts_with("DENIED (401 wrong_audience): aud:"),
        "{}",
        decision_line(&both)
    );
    let expired = deploy(json!({"exp": NOW - 61}));
    assert!(decision_line(&expired).starts_with("DENIED (401 expired): exp:"));
    let old = deploy(json!({"iat": NOW - 2_000, "nbf": null}));
    assert!(decision_line(&old).starts_with("DENIED (401 expired): max_token_age:"));
    let wrong_iss = deploy(json!({"iss": "https://evil.example"}));
    assert!(decision_line(&wrong_iss).starts_with("DENIED (401 wrong_issuer)"));
    let unforwardable = deploy(json!({"ref": "refs/tags/v1\r\nX-Evil: 1"}));
    assert_eq!(
        decision_line(&unforwardable),
        "DENIED (401 unforwardable_claim): claim ref (header x-github-ref) holds a byte \
             that cannot be a header value"
    );
}

#[test]
fn routing_outcomes_need_no_checks() {
    let none = explain(
        json!({}),
        "GET",
        "https://deploy.internal.example/v1/deploy",
    );
    assert_eq!(decision_line(&none), "no route: 404 no_route");
    assert!(none.checks.is_empty());
    assert_eq!(none.routes_hint.len(), 3);
    let bad = explain(json!({}), "POST", "/v1/deploy/%2e%2e/x");
    assert!(decision_line(&bad).starts_with("REFUSED (400 bad_path)"));
    let asterisk = explain(json!({}), "OPTIONS", "*");
    assert!(decision_line(&asterisk).starts_with("REFUSED (400 bad_path)"));
    let public = explain(json!({}), "GET", "/healthz");
    assert_eq!(public.decision, Decision::Public);
    let resolved = explain(json!({}), "GET", "/shadow/../healthz/./x");
    assert_eq!(resolved.path, "/healthz/x");
    assert_eq!(resolved.decision, Decision::Public);
}

#[test]
fn shadow_mode_lets_a_refused_request_through_and_says_so() {
    let shadowed = explain(json!({"repository_owner": "evil"}), "GET", "/shadow/x");
    assert_eq!(shadowed.decision, Decision::WouldDeny { rule: None });
    assert!(shadowed.headers.is_some());
    assert!(decision_line(&shadowed).contains("SHADOW"));
    let allowed = explain(json!({}), "GET", "/shadow/x");
    assert_eq!(
        decision_line(&allowed),
        "would be ALLOWED by shadowed.allow[0] (route in shadow mode)"
    );
    let expired = explain(json!({"exp": NOW - 3_600}), "GET", "/shadow/x");
    assert!(
        decision_line(&expired).starts_with("DENIED (401 expired)"),
        "token checks are enforced in shadow mode too"
    );
}

#[test]
fn revocation_entries_refuse_before_the_rules() {
    let list = RevocationList::parse("[[revoke]]\ncheck_run_id = \"7\"\nreason = \"leak\"\n")
        .expect("list");
    let source = RevocationSource::Loaded("revoked.toml".into(), list);
    let target =
        RequestTarget::parse("POST", "https://deploy.internal.example/v1/deploy").expect("target");
    let explanation = explain_request(&config(), &token(json!({})), &target, &source, NOW);
    assert_eq!(
        decision_line(&explanation),
        "DENIED (403 revoked): revocation: matches revoke[0] of revoked.toml (reason \"leak\")"
    );
    let unusable = RevocationSource::Unusable("r.toml".into(), "bad".into());
    let explanation = explain_request(&config(), &token(json!({})), &target, &unusable, NOW);
    assert!(explanation.decision != Decision::Public);
    assert!(
        explanation
            .checks
            .iter()
            .any(|check| check.name == "revocation" && check.verdict == Verdict::NotChecked)
    );
    assert_eq!(
        one_line(
            "TOML parse error at line 1, column 6\n  |\n1 | x = [\n  |      ^\nunclosed array\n"
        ),
        "TOML parse error at line 1, column 6: unclosed array"
    );
}

#[test]
fn text_opens_with_the_warning_and_aligns_conditions() {
    let text = render_text(&deploy(json!({"ref": "refs/heads/feature"})));
    assert!(text.starts_with("!! SIGNATURE NOT CHECKED"), "{text}");
    assert!(text.contains("does not contact the issuer"));
    assert!(!text.contains("  FAIL  "), "only the rules refuse: {text}");
    let marks: Vec<usize> = text
        .lines()
        .filter_map(|line| {
            line.char_indices()
                .find(|(_, c)| *c == '✓' || *c == '✗')
                .map(|(at, _)| line[..at].chars().count())
        })
        .collect();
    assert_eq!(marks.len(), 3, "{text}");
    assert!(marks.windows(2).all(|pair| pair[0] == pair[1]), "{text}");
    assert!(text.contains(r#""refs/heads/feature""#));
    assert!(text.contains("upstream  nothing: the request is refused"));
    assert!(text.contains("PASS  aud"));
}

#[test]
fn rules_text_shows_absent_claims_and_empty_rules() {
    let text = render_text(&deploy(json!({"ref": null})));
    assert!(text.contains("(absent)"), "{text}");
    assert_eq!(
        rules_text(&[], true),
        "  (none: a route without allow rules admits nobody)\n"
    );
}

#[test]
fn hostile_claims_cannot_reach_the_terminal_raw() {
    let text = render_text(&deploy(
        json!({"ref": "\u{1b}[2J\u{1b}[31mrefs/heads/main", "aud": "\u{1b}]0;x\u{7}"}),
    ));
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(!text.contains('\u{7}'), "{text}");
}

#[test]
fn json_has_the_same_content() {
    let value = render_json(&deploy(json!({"ref": "refs/heads/feature"})));
    assert_eq!(value["signature_checked"], false);
    assert_eq!(value["route"]["name"], "deploy");
    assert_eq!(value["route"]["audience"], AUD);
    assert_eq!(value["decision"]["outcome"], "denied");
    assert_eq!(value["decision"]["status"], 403);
    assert_eq!(value["decision"]["reason"], "policy_denied");
    assert_eq!(value["decision"]["rule"], Value::Null);
    assert_eq!(value["rules"][1]["rule"], "deploy.allow[0]");
    assert_eq!(value["rules"][1]["conditions"][1]["claim"], "ref");
    assert_eq!(
        value["rules"][1]["conditions"][1]["actual"],
        "\"refs/heads/feature\""
    );
    assert_eq!(value["rules"][1]["conditions"][1]["matched"], false);
    assert_eq!(value["headers"], Value::Null);
    let checks = value["checks"].as_array().expect("checks");
    assert!(
        checks
            .iter()
            .any(|check| check["name"] == "signature" && check["result"] == "not_checked")
    );
    let allowed = render_json(&deploy(json!({})));
    assert_eq!(allowed["decision"]["outcome"], "allowed");
    assert_eq!(allowed["decision"]["proxied"], true);
    assert_eq!(allowed["headers"]["x-github-ref"], "refs/heads/main");
}
