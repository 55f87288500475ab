//! Claims (SPEC §3 step 6): tokens admitted and tokens refused for what they claim, and
//! the order in which the verification steps refuse.

use serde_json::{Value, json};

use crate::support::issuer::{Signer, TestIssuer, TestKey, b64url, mint_with_header, now};
use crate::{
    AUD, Api, api_world, assert_admitted, assert_invalid_token, mint_header, ready, ready_with,
};

/// A ready world admits a token whose claims `overrides` (given the time now) changes.
#[track_caller]
fn assert_claims_admitted(overrides: impl FnOnce(u64) -> Value) {
    let world = ready();
    let token = world.issuer().mint_github_with(AUD, overrides(now()));
    world.assert_admits(&token);
    assert_eq!(world.upstream().hits(), 1);
}

/// A ready world refuses, as `reason`, a token whose claims `overrides` (given the time
/// now) changes; nothing reaches the upstream.
#[track_caller]
fn assert_claims_refused(reason: &str, overrides: impl FnOnce(u64) -> Value) {
    let world = ready();
    let token = world.issuer().mint_github_with(AUD, overrides(now()));
    world.assert_invalid_token(&token, reason);
    assert_eq!(world.upstream().hits(), 0);
}

#[test]
fn valid_token_is_admitted_and_reaches_the_upstream() {
    let world = ready();
    let token = world.token();
    let response = world.call(&token);
    assert_admitted(&response, world.issuer());
    assert_eq!(response.json()["uri"], "/v1/things");
    assert_eq!(world.upstream().hits(), 1);
    // The scheme is case-insensitive.
    let response = world
        .get("/v1/things")
        .header("Authorization", &format!("bEaReR {token}"))
        .send();
    assert_admitted(&response, world.issuer());
    assert_eq!(world.upstream().hits(), 2);
}

#[test]
fn token_expired_within_the_leeway_is_admitted() {
    // Default leeway 60 s.
    assert_claims_admitted(|now| json!({"iat": now - 330, "nbf": now - 330, "exp": now - 30}));
}

#[test]
fn aud_array_containing_the_audience_is_admitted() {
    assert_claims_admitted(
        |_| json!({"aud": ["https://other.example", AUD, "https://third.example"]}),
    );
}

#[test]
fn expired_token_is_refused() {
    assert_claims_refused(
        "expired",
        |now| json!({"iat": now - 400, "nbf": now - 400, "exp": now - 100}),
    );
}

#[test]
fn token_not_yet_valid_is_refused() {
    assert_claims_refused(
        "not_yet_valid",
        |now| json!({"nbf": now + 300, "iat": now - 5, "exp": now + 900}),
    );
}

#[test]
fn token_issued_in_the_future_is_refused() {
    assert_claims_refused(
        "issued_in_future",
        |now| json!({"iat": now + 300, "nbf": now - 5, "exp": now + 900}),
    );
}

#[test]
fn wrong_issuer_is_refused() {
    assert_claims_refused(
        "wrong_issuer",
        |_| json!({"iss": "https://token.actions.githubusercontent.com"}),
    );
}

#[test]
fn issuer_with_a_trailing_slash_is_refused() {
    let world = ready();
    let iss = format!("{}/", world.issuer().url());
    let token = world.issuer().mint_github_with(AUD, json!({ "iss": iss }));
    world.assert_invalid_token(&token, "wrong_issuer");
    assert_eq!(world.upstream().hits(), 0);
}

#[test]
fn wrong_audience_is_refused() {
    let world = ready();
    let token = world.issuer().mint_github("https://other.internal.example");
    world.assert_invalid_token(&token, "wrong_audience");
    let list = world.issuer().mint_github_with(
        AUD,
        json!({"aud": ["https://other.example", format!("{AUD}/")]}),
    );
    world.assert_invalid_token(&list, "wrong_audience");
    assert_eq!(world.upstream().hits(), 0);
}

#[test]
fn token_older_than_max_token_age_is_expired() {
    let world = ready_with("max_token_age = \"15m\"");
    let now = now();
    let old = world.issuer().mint_github_with(
        AUD,
        json!({"iat": now - 20 * 60, "nbf": now - 20 * 60, "exp": now + 300}),
    );
    world.assert_invalid_token(&old, "expired");
    assert_eq!(world.upstream().hits(), 0);
    let young = world.issuer().mint_github_with(
        AUD,
        json!({"iat": now - 10 * 60, "nbf": now - 10 * 60, "exp": now + 300}),
    );
    world.assert_admits(&young);
}

#[test]
fn malformed_tokens_are_refused() {
    let world = ready();
    let claims = world.issuer().github_claims(AUD);
    let good = world.issuer().mint(claims.clone());
    let parts: Vec<&str> = good.split('.').collect();
    let with_header = |header: &[u8]| format!("{}.{}.{}", b64url(header), parts[1], parts[2]);
    let not_jws = [
        "abc".to_string(),
        "abc.def".to_string(),
        format!("{good}.extra"),
        format!(".{}.{}", parts[1], parts[2]),
        with_header(b"not json"),
        with_header(br#"["RS256"]"#),
        with_header(br#"{"typ":"JWT","kid":"rsa-1"}"#),
    ];
    for token in &not_jws {
        world.assert_invalid_token(token, "malformed_token");
    }
    // Validly signed, but claims of the wrong JSON type or without exp or iat.
    for overrides in [
        json!({"exp": "9999999999"}),
        json!({"exp": null}),
        json!({"iat": null}),
        json!({"iat": true}),
        json!({"nbf": "0"}),
        json!({"iss": 42}),
        json!({"aud": 42}),
        json!({"aud": [AUD, 42]}),
        json!({"sub": ["repo:acme/app"]}),
    ] {
        let token = world.issuer().mint_github_with(AUD, overrides.clone());
        let response = world.call(&token);
        assert_eq!(response.status, 401, "{overrides}: {}", response.text());
        assert_invalid_token(&response, "malformed_token", &token);
    }
    assert_eq!(world.upstream().hits(), 0);
}

#[test]
fn verification_steps_run_in_the_spec_order() {
    let world = ready();
    let key = world.issuer().signing_key();
    let impostor = TestKey::rsa("rsa-1");
    let now = now();
    let expired = json!({"iat": now - 400, "nbf": now - 400, "exp": now - 100});
    let fetches = world.issuer().jwks_fetches();

    // alg before crit.
    let token = mint_with_header(
        &json!({"alg": "none", "crit": ["exp"]}),
        &world.issuer().github_claims(AUD),
        Signer::Unsigned,
    );
    world.assert_invalid_token(&token, "alg_not_allowed");
    // crit before the key lookup: an unknown kid with crit asks for no refetch.
    let token = mint_header(
        &key,
        json!({"alg": "RS256", "kid": "never-published", "crit": ["b64"], "b64": true}),
        &world.issuer().github_claims(AUD),
    );
    world.assert_invalid_token(&token, "malformed_token");
    assert_eq!(world.issuer().jwks_fetches(), fetches);
    // Signature before any claim.
    let mut claims = world.issuer().github_claims("https://other.example");
    crate::support::issuer::merge(&mut claims, &expired);
    claims["iss"] = json!("https://evil.example");
    claims["exp"] = json!("not a date");
    let token = world.issuer().mint_with_key(&impostor, claims.clone());
    world.assert_invalid_token(&token, "bad_signature");
    // Claim types before iss.
    let token = world.issuer().mint(claims.clone());
    world.assert_invalid_token(&token, "malformed_token");
    // iss before aud and time.
    claims["exp"] = json!(now - 100);
    let token = world.issuer().mint(claims.clone());
    world.assert_invalid_token(&token, "wrong_issuer");
    // aud before time.
    claims["iss"] = json!(world.issuer().url());
    let token = world.issuer().mint(claims.clone());
    world.assert_invalid_token(&token, "wrong_audience");
    // exp before nbf before iat.
    let token = world.issuer().mint_github_with(
        AUD,
        json!({"exp": now - 100, "nbf": now + 300, "iat": now + 300}),
    );
    world.assert_invalid_token(&token, "expired");
    let token = world.issuer().mint_github_with(
        AUD,
        json!({"exp": now + 900, "nbf": now + 300, "iat": now + 300}),
    );
    world.assert_invalid_token(&token, "not_yet_valid");
    assert_eq!(world.upstream().hits(), 0);
}

#[test]
fn token_without_kid_uses_the_only_suitable_key() {
    let issuer = TestIssuer::start_with_keys(vec![TestKey::rsa("rsa-1"), TestKey::p256("ec-1")]);
    let world = api_world(issuer).start();
    let claims = world.issuer().github_claims(AUD);
    let rsa = world.issuer().key("rsa-1").expect("rsa-1");
    let ec = world.issuer().key("ec-1").expect("ec-1");
    let by_rsa = mint_header(&rsa, json!({"alg": "RS256", "typ": "JWT"}), &claims);
    world.assert_admits(&by_rsa);
    let by_ec = mint_header(&ec, json!({"alg": "ES256", "typ": "JWT"}), &claims);
    world.assert_admits(&by_ec);
    assert_eq!(world.upstream().hits(), 2);

    // Several suitable keys and no kid: which one is unknown.
    let issuer = TestIssuer::start_with_keys(vec![TestKey::rsa("rsa-1"), TestKey::rsa("rsa-2")]);
    let world = api_world(issuer).start();
    let first = world.issuer().key("rsa-1").expect("rsa-1");
    let token = mint_header(
        &first,
        json!({"alg": "RS256", "typ": "JWT"}),
        &world.issuer().github_claims(AUD),
    );
    world.assert_invalid_token(&token, "unknown_key");
    assert_eq!(world.upstream().hits(), 0);
}
