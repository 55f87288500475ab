//! Authentication end to end (issue "[auth]", acceptance point 1): the real `jobgate`
//! binary in front of a real echo upstream, verifying tokens of a real OIDC test issuer
//! (discovery and JWKS over HTTP), all on 127.0.0.1. SPEC §2 issuer keys, §3 steps 5–7 and
//! the verified-token cache, §5 metrics and `/readyz`.
//!
//! Every test has its own issuer, upstream and gateway. Every refusal is checked for its
//! status, its exact `WWW-Authenticate`, the JSON body's `reason` and route, the absence of
//! the token in the body, and that the upstream saw nothing.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::issuer::{Signer, TestIssuer, TestKey, b64url, b64url_decode, mint_with_header, now};
use support::{ConnectionCounter, EchoUpstream, Jobgate, RawResponse, free_port, get, raw_request};

const AUD: &str = "https://api.internal.example";
const ROUTE: &str = "api";
/// The issuer's name in the config, in metric labels and in `/readyz`.
const ISSUER: &str = "test";

// ---------------------------------------------------------------------------------------
// Set-up.
// ---------------------------------------------------------------------------------------

/// An `[[issuer]]` named `test` for `issuer`, with `extra` keys (refresh intervals, …).
/// `min_refetch_interval` defaults to 1 s here unless `extra` sets it.
fn issuer_toml(issuer: &TestIssuer, extra: &str) -> String {
    let min_refetch = if extra.contains("min_refetch_interval") {
        ""
    } else {
        "min_refetch_interval = \"1s\"\n"
    };
    format!(
        "[[issuer]]\nname = \"{ISSUER}\"\nurl = \"{}\"\nalgorithms = [\"RS256\", \"ES256\"]\n{min_refetch}{extra}\n",
        issuer.url()
    )
}

/// An authenticated route `name` for `audience` under `prefix` that admits every verified
/// token (an empty allow rule: fine for a loopback, non-GitHub issuer).
fn route_toml(name: &str, prefix: &str, audience: &str, upstream: &EchoUpstream) -> String {
    format!(
        "[[route]]\nname = \"{name}\"\npath_prefix = \"{prefix}\"\nupstream = \"{}\"\nissuer = \"{ISSUER}\"\naudience = \"{audience}\"\n\n[[route.allow]]\n\n",
        upstream.url()
    )
}

/// One test's world: issuer, upstream and gateway.
struct World {
    issuer: TestIssuer,
    upstream: EchoUpstream,
    gateway: Jobgate,
}

impl World {
    /// A gateway with one issuer (with `issuer_extra` keys) and the route `api` on `/`.
    fn start(issuer: TestIssuer, issuer_extra: &str) -> World {
        World::start_with_server(issuer, issuer_extra, "")
    }

    /// [`World::start`] with `server_extra` keys in `[server]`.
    fn start_with_server(issuer: TestIssuer, issuer_extra: &str, server_extra: &str) -> World {
        let upstream = EchoUpstream::start("api");
        let (port, admin_port) = (free_port(), free_port());
        let threads = if server_extra.contains("threads") {
            ""
        } else {
            "threads = 1\n"
        };
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n{threads}grace_period = \"2s\"\n{server_extra}\n[audit]\noutput = \"off\"\n\n{}{}",
            issuer_toml(&issuer, issuer_extra),
            route_toml(ROUTE, "/", AUD, &upstream)
        );
        let gateway = Jobgate::start_raw(&config, port, admin_port);
        World {
            issuer,
            upstream,
            gateway,
        }
    }

    /// [`World::start`] with the default issuer, waiting until its keys are loaded.
    fn ready() -> World {
        World::ready_with(TestIssuer::start(), "")
    }

    fn ready_with(issuer: TestIssuer, issuer_extra: &str) -> World {
        let world = World::start(issuer, issuer_extra);
        wait_ready(&world.gateway);
        world
    }

    fn call(&self, token: &str) -> RawResponse {
        call(&self.gateway, "/v1/things", token)
    }

    /// Sends `token` and checks the 401 `invalid_token` refusal for `reason`.
    #[track_caller]
    fn assert_invalid_token(&self, token: &str, reason: &str) {
        let response = self.call(token);
        assert_invalid_token(&response, reason, token);
    }
}

/// `GET target` with `Authorization: Bearer token`.
fn call(gateway: &Jobgate, target: &str, token: &str) -> RawResponse {
    raw_request(
        gateway.addr,
        "GET",
        target,
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    )
}

/// Waits (at most 20 s) until `/readyz` says 200: every issuer has keys.
fn wait_ready(gateway: &Jobgate) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = get(gateway.admin, "/readyz");
        if response.status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {} after 20 s: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of a `/metrics` sample, 0 when absent.
fn metric(gateway: &Jobgate, sample: &str) -> f64 {
    gateway.metric(sample).unwrap_or(0.0)
}

/// Waits (at most 20 s) until the sample's value satisfies `ok`, and returns it. Metrics are
/// recorded when a request ends, which may be a moment after the client read the response.
#[track_caller]
fn wait_metric(gateway: &Jobgate, sample: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = metric(gateway, sample);
        if ok(value) {
            return value;
        }
        if Instant::now() >= deadline {
            let page = get(gateway.admin, "/metrics");
            panic!(
                "{sample} is {value} after 20 s; /metrics:\n{}",
                String::from_utf8_lossy(&page.body)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------
// Assertions.
// ---------------------------------------------------------------------------------------

fn body_text(response: &RawResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

/// A refusal: status, exact `WWW-Authenticate` (or none), JSON `reason` and `route`, and
/// no token echo.
#[track_caller]
fn assert_refusal(
    response: &RawResponse,
    status: u16,
    www_authenticate: Option<&str>,
    reason: &str,
    token: &str,
) {
    assert_eq!(
        response.status,
        status,
        "expected {status} {reason}, got {}: {}",
        response.status,
        body_text(response)
    );
    assert_eq!(
        response.header("www-authenticate"),
        www_authenticate,
        "WWW-Authenticate of a {reason} refusal"
    );
    let body = response.json();
    assert_eq!(body["reason"], reason, "body: {body}");
    assert_eq!(body["route"], ROUTE, "body: {body}");
    if token.len() >= 16 {
        assert!(
            !body_text(response).contains(token),
            "the refusal echoes the token"
        );
    }
}

/// 401 with `Bearer error="invalid_token", error_description="<reason>"` (SPEC §3 step 6).
#[track_caller]
fn assert_invalid_token(response: &RawResponse, reason: &str, token: &str) {
    let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{reason}\"");
    assert_refusal(response, 401, Some(&challenge), reason, token);
}

/// 503 `keys_unavailable` with a `Retry-After` of whole seconds, and nothing that makes it
/// look like a bad token (SPEC §3 step 7).
#[track_caller]
fn assert_keys_unavailable(response: &RawResponse) {
    assert_eq!(
        response.status,
        503,
        "expected 503 keys_unavailable, got {}: {}",
        response.status,
        body_text(response)
    );
    assert_eq!(response.json()["reason"], "keys_unavailable");
    let retry_after = response
        .header("retry-after")
        .expect("a keys_unavailable refusal carries Retry-After");
    let seconds: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {retry_after:?} is not whole seconds"));
    assert!(seconds > 0, "Retry-After: {seconds}");
    assert!(
        !response
            .header("www-authenticate")
            .is_some_and(|value| value.contains("invalid_token")),
        "an outage must not look like a bad token: {:?}",
        response.header("www-authenticate")
    );
}

/// 200 from the echo upstream, with the identity the gateway set.
#[track_caller]
fn assert_admitted(response: &RawResponse, issuer: &TestIssuer) {
    assert_eq!(
        response.status,
        200,
        "expected 200, got {}: {}",
        response.status,
        body_text(response)
    );
    assert_eq!(response.header("x-upstream"), Some("api"));
    assert_eq!(
        response.echoed_header("x-jobgate-route"),
        Some(vec![ROUTE.to_string()])
    );
    assert_eq!(
        response.echoed_header("x-jobgate-issuer"),
        Some(vec![issuer.url()])
    );
    assert_eq!(
        response.echoed_header("authorization"),
        None,
        "strip_authorization defaults to true"
    );
}

// ---------------------------------------------------------------------------------------
// Token forgeries.
// ---------------------------------------------------------------------------------------

/// The payload of `token`, decoded.
fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("a compact JWS");
    serde_json::from_slice(&b64url_decode(part)).expect("JSON payload")
}

/// `token` with one base64url character in the middle of `part` (0 header, 1 payload, 2
/// signature) replaced by another. The middle, not the end: the last character of a part
/// may carry padding bits, and changing those is a base64 error, not a forgery.
fn flip_char(token: &str, part: usize) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let target = &mut parts[part];
    let middle = target.len() / 2;
    let old = target.as_bytes()[middle];
    let new = if old == b'A' { "B" } else { "A" };
    target.replace_range(middle..=middle, new);
    parts.join(".")
}

/// A token with exactly this header (extra members and all), signed by `key` with its own
/// algorithm.
fn mint_header(key: &TestKey, header: Value, claims: &Value) -> String {
    mint_with_header(&header, claims, Signer::Key(key))
}

/// A validly signed token of exactly `length` bytes, padded with a `pad` claim (and, to
/// reach lengths base64 skips, a header member).
fn token_of_length(issuer: &TestIssuer, length: usize) -> String {
    let key = issuer.signing_key();
    let base = issuer.github_claims_with(AUD, json!({"pad": ""}));
    let base_len = base.to_string().len();
    let b64_len = |bytes: usize| (bytes * 4).div_ceil(3);
    for header_pad in 0..4 {
        let header =
            json!({"alg": "RS256", "typ": "JWT", "kid": key.kid(), "x": "y".repeat(header_pad)});
        let header_len = b64_len(header.to_string().len());
        // RSA-2048: a 256-byte signature is 342 base64url characters.
        let fixed = header_len + 1 + 1 + 342;
        let Some(room) = length.checked_sub(fixed) else {
            continue;
        };
        // The pad is ASCII, so each character is one more byte of JSON.
        let Some(pad) = (0..=room).find(|pad| b64_len(base_len + pad) == room) else {
            continue;
        };
        let mut claims = base.clone();
        claims["pad"] = json!("p".repeat(pad));
        let token = mint_with_header(&header, &claims, Signer::Key(&key));
        assert_eq!(token.len(), length);
        return token;
    }
    panic!("no token of exactly {length} bytes");
}

// ---------------------------------------------------------------------------------------
// Admitted tokens.
// ---------------------------------------------------------------------------------------

#[test]
fn valid_token_is_admitted_and_reaches_the_upstream() {
    let world = World::ready();
    let token = world.issuer.mint_github(AUD);
    let response = world.call(&token);
    assert_admitted(&response, &world.issuer);
    assert_eq!(response.json()["uri"], "/v1/things");
    assert_eq!(world.upstream.hits(), 1);
    // The scheme is case-insensitive.
    let response = raw_request(
        world.gateway.addr,
        "GET",
        "/v1/things",
        &[("Authorization", &format!("bEaReR {token}"))],
        b"",
    );
    assert_admitted(&response, &world.issuer);
    assert_eq!(world.upstream.hits(), 2);
}

#[test]
fn token_expired_within_the_leeway_is_admitted() {
    let world = World::ready();
    let now = now();
    // Default leeway 60 s.
    let token = world.issuer.mint_github_with(
        AUD,
        json!({"iat": now - 330, "nbf": now - 330, "exp": now - 30}),
    );
    assert_admitted(&world.call(&token), &world.issuer);
    assert_eq!(world.upstream.hits(), 1);
}

#[test]
fn aud_array_containing_the_audience_is_admitted() {
    let world = World::ready();
    let token = world.issuer.mint_github_with(
        AUD,
        json!({"aud": ["https://other.example", AUD, "https://third.example"]}),
    );
    assert_admitted(&world.call(&token), &world.issuer);
    assert_eq!(world.upstream.hits(), 1);
}

// ---------------------------------------------------------------------------------------
// Refused tokens: claims.
// ---------------------------------------------------------------------------------------

#[test]
fn expired_token_is_refused() {
    let world = World::ready();
    let now = now();
    let token = world.issuer.mint_github_with(
        AUD,
        json!({"iat": now - 400, "nbf": now - 400, "exp": now - 100}),
    );
    world.assert_invalid_token(&token, "expired");
    assert_eq!(world.upstream.hits(), 0);
}

#[test]
fn token_not_yet_valid_is_refused() {
    let world = World::ready();
    let now = now();
    let token = world.issuer.mint_github_with(
        AUD,
        json!({"nbf": now + 300, "iat": now - 5, "exp": now + 900}),
    );
    world.assert_invalid_token(&token, "not_yet_valid");
    assert_eq!(world.upstream.hits(), 0);
}

#[test]
fn token_issued_in_the_future_is_refused() {
    let world = World::ready();
    let now = now();
    let token = world.issuer.mint_github_with(
        AUD,
        json!({"iat": now + 300, "nbf": now - 5, "exp": now + 900}),
    );
    world.assert_invalid_token(&token, "issued_in_future");
    assert_eq!(world.upstream.hits(), 0);
}

#[test]
fn wrong_issuer_is_refused() {
    let world = World::ready();
    let token = world.issuer.mint_github_with(
        AUD,
        json!({"iss": "https://token.actions.githubusercontent.com"}),
    );
    world.assert_invalid_token(&token, "wrong_issuer");
    assert_eq!(world.upstream.hits(), 0);
}

#[test]
fn issuer_with_a_trailing_slash_is_refused() {
    let world = World::ready();
    let iss = format!("{}/", world.issuer.url());
    let token = world.issuer.mint_github_with(AUD, json!({ "iss": iss }));
    world.assert_invalid_token(&token, "wrong_issuer");
    assert_eq!(world.upstream.hits(), 0);
}

#[test]
fn wrong_audience_is_refused() {
    let world = World::ready();
    let token = world.issuer.mint_github("https://other.internal.example");
    world.assert_invalid_token(&token, "wrong_audience");
    let list = world.issuer.mint_github_with(
        AUD,
        json!({"aud": ["https://other.example", format!("{AUD}/")]}),
    );
    world.assert_invalid_token(&list, "wrong_audience");
    assert_eq!(world.upstream.hits(), 0);
}

#[test]
fn token_older_than_max_token_age_is_expired() {
    let world = World::ready_with(TestIssuer::start(), "max_token_age = \"15m\"\n");
    let now = now();
    let old = world.issuer.mint_github_with(
        AUD,
        json!({"iat": now - 20 * 60, "nbf": now - 20 * 60, "exp": now + 300}),
    );
    world.assert_invalid_token(&old, "expired");
    assert_eq!(world.upstream.hits(), 0);
    let young = world.issuer.mint_github_with(
        AUD,
        json!({"iat": now - 10 * 60, "nbf": now - 10 * 60, "exp": now + 300}),
    );
    assert_admitted(&world.call(&young), &world.issuer);
}

#[test]
fn malformed_tokens_are_refused() {
    let world = World::ready();
    let claims = world.issuer.github_claims(AUD);
    let good = world.issuer.mint(claims.clone());
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
        let token = world.issuer.mint_github_with(AUD, overrides.clone());
        let response = world.call(&token);
        assert_eq!(
            response.status,
            401,
            "{overrides}: {}",
            body_text(&response)
        );
        assert_invalid_token(&response, "malformed_token", &token);
    }
    assert_eq!(world.upstream.hits(), 0);
}

#[test]
fn verification_steps_run_in_the_spec_order() {
    let world = World::ready();
    let key = world.issuer.signing_key();
    let impostor = TestKey::rsa("rsa-1");
    let now = now();
    let expired = json!({"iat": now - 400, "nbf": now - 400, "exp": now - 100});
    let fetches = world.issuer.jwks_fetches();

    // alg before crit.
    let token = mint_with_header(
        &json!({"alg": "none", "crit": ["exp"]}),
        &world.issuer.github_claims(AUD),
        Signer::Unsigned,
    );
    world.assert_invalid_token(&token, "alg_not_allowed");
    // crit before the key lookup: an unknown kid with crit asks for no refetch.
    let token = mint_header(
        &key,
        json!({"alg": "RS256", "kid": "never-published", "crit": ["b64"], "b64": true}),
        &world.issuer.github_claims(AUD),
    );
    world.assert_invalid_token(&token, "malformed_token");
    assert_eq!(world.issuer.jwks_fetches(), fetches);
    // Signature before any claim.
    let mut claims = world.issuer.github_claims("https://other.example");
    support::issuer::merge(&mut claims, &expired);
    claims["iss"] = json!("https://evil.example");
    claims["exp"] = json!("not a date");
    let token = world.issuer.mint_with_key(&impostor, claims.clone());
    world.assert_invalid_token(&token, "bad_signature");
    // Claim types before iss.
    let token = world.issuer.mint(claims.clone());
    world.assert_invalid_token(&token, "malformed_token");
    // iss before aud and time.
    claims["exp"] = json!(now - 100);
    let token = world.issuer.mint(claims.clone());
    world.assert_invalid_token(&token, "wrong_issuer");
    // aud before time.
    claims["iss"] = json!(world.issuer.url());
    let token = world.issuer.mint(claims.clone());
    world.assert_invalid_token(&token, "wrong_audience");
    // exp before nbf before iat.
    let token = world.issuer.mint_github_with(
        AUD,
        json!({"exp": now - 100, "nbf": now + 300, "iat": now + 300}),
    );
    world.assert_invalid_token(&token, "expired");
    let token = world.issuer.mint_github_with(
        AUD,
        json!({"exp": now + 900, "nbf": now + 300, "iat": now + 300}),
    );
    world.assert_invalid_token(&token, "not_yet_valid");
    assert_eq!(world.upstream.hits(), 0);
}

#[test]
fn token_without_kid_uses_the_only_suitable_key() {
    let issuer = TestIssuer::start_with_keys(vec![TestKey::rsa("rsa-1"), TestKey::p256("ec-1")]);
    let world = World::ready_with(issuer, "");
    let claims = world.issuer.github_claims(AUD);
    let rsa = world.issuer.key("rsa-1").expect("rsa-1");
    let ec = world.issuer.key("ec-1").expect("ec-1");
    let by_rsa = mint_header(&rsa, json!({"alg": "RS256", "typ": "JWT"}), &claims);
    assert_admitted(&world.call(&by_rsa), &world.issuer);
    let by_ec = mint_header(&ec, json!({"alg": "ES256", "typ": "JWT"}), &claims);
    assert_admitted(&world.call(&by_ec), &world.issuer);
    assert_eq!(world.upstream.hits(), 2);

    // Several suitable keys and no kid: which one is unknown.
    let issuer = TestIssuer::start_with_keys(vec![TestKey::rsa("rsa-1"), TestKey::rsa("rsa-2")]);
    let world = World::ready_with(issuer, "");
    let first = world.issuer.key("rsa-1").expect("rsa-1");
    let token = mint_header(
        &first,
        json!({"alg": "RS256", "typ": "JWT"}),
        &world.issuer.github_claims(AUD),
    );
    world.assert_invalid_token(&token, "unknown_key");
    assert_eq!(world.upstream.hits(), 0);
}

// ---------------------------------------------------------------------------------------
// Refused tokens: header and signature attacks.
// ---------------------------------------------------------------------------------------

#[test]
fn alg_none_is_refused() {
    let world = World::ready();
    let claims = world.issuer.github_claims(AUD);
    for alg in ["none", "None", "NONE"] {
        let token = mint_with_header(
            &json!({"alg": alg, "typ": "JWT", "kid": "rsa-1"}),
            &claims,
            Signer::Unsigned,
        );
        world.assert_invalid_token(&token, "alg_not_allowed");
    }
    assert_eq!(world.upstream.hits(), 0);
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let world = World::ready();
    let key = world.issuer.signing_key();
    let claims = world.issuer.github_claims(AUD);
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": key.kid()});
    let der = key.public_key_der();
    let pem = key.public_key_pem();
    for secret in [der.as_slice(), pem.as_bytes()] {
        let token = mint_with_header(&header, &claims, Signer::Hs256(secret));
        world.assert_invalid_token(&token, "alg_not_allowed");
    }
    assert_eq!(world.upstream.hits(), 0);
}

#[test]
fn rs512_outside_the_allowed_list_is_refused() {
    let world = World::ready();
    let key = world.issuer.signing_key();
    let token = mint_with_header(
        &json!({"alg": "RS512", "typ": "JWT", "kid": key.kid()}),
        &world.issuer.github_claims(AUD),
        Signer::KeyAs(&key, "RS512"),
    );
    world.assert_invalid_token(&token, "alg_not_allowed");
    assert_eq!(world.upstream.hits(), 0);
}

#[test]
fn tampered_payload_is_refused() {
    let world = World::ready();
    let token = world.issuer.mint_github(AUD);
    // A real change of a claim, re-encoded, with the original header and signature.
    let mut claims = payload(&token);
    claims["repository"] = json!("acme/other");
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64url(claims.to_string().as_bytes()),
        parts[2]
    );
    world.assert_invalid_token(&forged, "bad_signature");
    // And a one-character change of the payload.
    world.assert_invalid_token(&flip_char(&token, 1), "bad_signature");
    assert_eq!(world.upstream.hits(), 0);
    // The genuine token still passes: the forgeries did not poison anything.
    assert_admitted(&world.call(&token), &world.issuer);
}

#[test]
fn tampered_signature_is_refused() {
    let world = World::ready();
    let token = world.issuer.mint_github(AUD);
    world.assert_invalid_token(&flip_char(&token, 2), "bad_signature");
    assert_eq!(world.upstream.hits(), 0);
}

#[test]
fn signature_of_another_key_under_a_published_kid_is_refused() {
    let world = World::ready();
    // Same kid as the published key, different key material, never published.
    let impostor = TestKey::rsa("rsa-1");
    let token = world
        .issuer
        .mint_with_key(&impostor, world.issuer.github_claims(AUD));
    world.assert_invalid_token(&token, "bad_signature");
    assert_eq!(world.upstream.hits(), 0);
}

#[test]
fn crit_header_is_refused() {
    let world = World::ready();
    let key = world.issuer.signing_key();
    let claims = world.issuer.github_claims(AUD);
    let token = mint_header(
        &key,
        json!({"alg": "RS256", "typ": "JWT", "kid": key.kid(), "crit": ["exp"], "exp": now() + 60}),
        &claims,
    );
    world.assert_invalid_token(&token, "malformed_token");
    let empty = mint_header(
        &key,
        json!({"alg": "RS256", "typ": "JWT", "kid": key.kid(), "crit": []}),
        &claims,
    );
    world.assert_invalid_token(&empty, "malformed_token");
    assert_eq!(world.upstream.hits(), 0);
}

#[test]
fn jku_x5u_x5c_and_jwk_headers_are_never_followed() {
    let world = World::ready();
    // The attacker runs a real issuer whose JWKS has the attacker's key, and a port that
    // counts every connection.
    let attacker_key = TestKey::rsa("evil-1");
    let evil = TestIssuer::start_with_keys(vec![attacker_key.clone()]);
    let counter = ConnectionCounter::start();
    let claims = world.issuer.github_claims(AUD);

    // The attacker's kid, with its JWKS named by jku: the kid stays unknown.
    let by_jku = mint_header(
        &attacker_key,
        json!({"alg": "RS256", "typ": "JWT", "kid": "evil-1", "jku": evil.jwks_url(),
               "x5u": counter.url("/cert.pem")}),
        &claims,
    );
    world.assert_invalid_token(&by_jku, "unknown_key");

    // The published kid, with the attacker's key embedded and pointed to.
    let impostor = attacker_key.with_kid("rsa-1");
    let embedded = mint_header(
        &impostor,
        json!({"alg": "RS256", "typ": "JWT", "kid": "rsa-1", "jwk": impostor.jwk(),
               "jku": counter.url("/jwks"), "x5u": counter.url("/x5u"),
               "x5c": [b64url(&impostor.public_key_der())]}),
        &claims,
    );
    world.assert_invalid_token(&embedded, "bad_signature");

    // No kid at all: the only published RSA key is used, never the embedded one.
    let kidless = mint_header(
        &attacker_key,
        json!({"alg": "RS256", "typ": "JWT", "jwk": attacker_key.jwk(),
               "jku": evil.jwks_url(), "x5u": counter.url("/x5u")}),
        &claims,
    );
    world.assert_invalid_token(&kidless, "bad_signature");

    assert_eq!(world.upstream.hits(), 0);
    assert_eq!(evil.discovery_fetches(), 0, "the jku issuer was called");
    assert_eq!(evil.jwks_fetches(), 0, "the jku JWKS was fetched");
    assert_eq!(counter.connections(), 0, "an x5u/jku URL was called");
}

// ---------------------------------------------------------------------------------------
// The Authorization header (SPEC §3 step 5).
// ---------------------------------------------------------------------------------------

#[test]
fn token_longer_than_max_token_bytes_is_refused_before_parsing() {
    let issuer = TestIssuer::start();
    let limit = 3000;
    let at_limit = token_of_length(&issuer, limit);
    let over = token_of_length(&issuer, limit + 1);
    let world = World::start_with_server(issuer, "", &format!("max_token_bytes = {limit}\n"));
    wait_ready(&world.gateway);
    assert_admitted(&world.call(&at_limit), &world.issuer);
    assert_eq!(world.upstream.hits(), 1);
    // One byte over: refused even though it is validly signed.
    world.assert_invalid_token(&over, "token_too_large");
    // Not even a JWS: the length is checked first.
    world.assert_invalid_token(&"x".repeat(limit + 1), "token_too_large");
    assert_eq!(world.upstream.hits(), 1);
}

#[test]
fn default_max_token_bytes_is_16384() {
    let world = World::ready();
    let at_limit = token_of_length(&world.issuer, 16_384);
    assert_admitted(&world.call(&at_limit), &world.issuer);
    let over = token_of_length(&world.issuer, 16_385);
    world.assert_invalid_token(&over, "token_too_large");
    assert_eq!(world.upstream.hits(), 1);
}

#[test]
fn two_authorization_headers_are_invalid_request() {
    let world = World::ready();
    let token = world.issuer.mint_github(AUD);
    let bearer = format!("Bearer {token}");
    let response = raw_request(
        world.gateway.addr,
        "GET",
        "/v1/things",
        &[("Authorization", &bearer), ("Authorization", &bearer)],
        b"",
    );
    assert_refusal(
        &response,
        400,
        Some("Bearer error=\"invalid_request\""),
        "invalid_request",
        &token,
    );
    let response = raw_request(
        world.gateway.addr,
        "GET",
        "/v1/things",
        &[
            ("Authorization", "Basic dXNlcjpwYXNz"),
            ("Authorization", &bearer),
        ],
        b"",
    );
    assert_refusal(
        &response,
        400,
        Some("Bearer error=\"invalid_request\""),
        "invalid_request",
        &token,
    );
    assert_eq!(world.upstream.hits(), 0);
}

#[test]
fn no_authorization_is_missing_token_with_a_bare_challenge() {
    let world = World::ready();
    let response = get(world.gateway.addr, "/v1/things");
    assert_refusal(
        &response,
        401,
        Some("Bearer realm=\"jobgate\""),
        "missing_token",
        "",
    );
    assert_eq!(world.upstream.hits(), 0);
}

#[test]
fn basic_scheme_is_missing_token() {
    let world = World::ready();
    for value in ["Basic dXNlcjpwYXNz", "Token abc.def.ghi", "Bearer-ish abc"] {
        let response = raw_request(
            world.gateway.addr,
            "GET",
            "/v1/things",
            &[("Authorization", value)],
            b"",
        );
        assert_refusal(
            &response,
            401,
            Some("Bearer realm=\"jobgate\""),
            "missing_token",
            "",
        );
    }
    assert_eq!(world.upstream.hits(), 0);
}

#[test]
fn bearer_without_a_token_or_with_two_is_invalid_request() {
    let world = World::ready();
    let token = world.issuer.mint_github(AUD);
    let two = format!("Bearer {token} {token}");
    for value in ["Bearer", "Bearer    ", two.as_str()] {
        let response = raw_request(
            world.gateway.addr,
            "GET",
            "/v1/things",
            &[("Authorization", value)],
            b"",
        );
        assert_refusal(
            &response,
            400,
            Some("Bearer error=\"invalid_request\""),
            "invalid_request",
            &token,
        );
    }
    assert_eq!(world.upstream.hits(), 0);
}

// ---------------------------------------------------------------------------------------
// Keys: rotation, unknown kids, outages (SPEC §3 steps 6–7, §5 /readyz).
// ---------------------------------------------------------------------------------------

#[test]
fn rotated_key_is_accepted_after_one_refetch_without_restart() {
    // A long refetch interval: the start-up fetch must not have spent the budget.
    let world = World::ready_with(TestIssuer::start(), "min_refetch_interval = \"10m\"\n");
    let old = world.issuer.mint_github(AUD);
    assert_admitted(&world.call(&old), &world.issuer);
    let fetches = world.issuer.jwks_fetches();

    let new_key = world.issuer.rotate("rsa-2");
    let new = world
        .issuer
        .mint_with_key(&new_key, world.issuer.github_claims(AUD));
    assert_admitted(&world.call(&new), &world.issuer);
    assert_eq!(
        world.issuer.jwks_fetches(),
        fetches + 1,
        "exactly one refetch for the new kid"
    );
    assert_admitted(&world.call(&new), &world.issuer);
    assert_eq!(world.issuer.jwks_fetches(), fetches + 1);

    // The retired key no longer verifies anything, cached or not; within the interval
    // that costs no fetch.
    world.assert_invalid_token(&old, "unknown_key");
    assert_eq!(world.issuer.jwks_fetches(), fetches + 1);
    assert_eq!(world.upstream.hits(), 3);
}

#[test]
fn two_hundred_unknown_kids_cause_a_single_refetch() {
    // Two worker threads: the refetch is shared across Pingora's runtimes.
    let world = World::start_with_server(
        TestIssuer::start(),
        "min_refetch_interval = \"10m\"\n",
        "threads = 2\n",
    );
    wait_ready(&world.gateway);
    let fetches = world.issuer.jwks_fetches();
    let discoveries = world.issuer.discovery_fetches();
    let stranger = TestKey::rsa("stranger");
    let claims = world.issuer.github_claims(AUD);
    let tokens: Vec<String> = (0..200)
        .map(|_| {
            let kid = format!("kid-{:016x}", fastrand::u64(..));
            mint_header(
                &stranger,
                json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
                &claims,
            )
        })
        .collect();
    // Four clients at once, so that some requests arrive while the refetch runs.
    let addr = world.gateway.addr;
    let responses: Vec<(String, RawResponse)> = std::thread::scope(|scope| {
        let handles: Vec<_> = tokens
            .chunks(50)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|token| {
                            let response = raw_request(
                                addr,
                                "GET",
                                "/v1/things",
                                &[("Authorization", &format!("Bearer {token}"))],
                                b"",
                            );
                            (token.clone(), response)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("client thread"))
            .collect()
    });
    assert_eq!(responses.len(), 200);
    for (token, response) in &responses {
        // The refetch succeeded, so every one of them is a plain unknown key, never 503.
        assert_invalid_token(response, "unknown_key", token);
    }
    assert_eq!(
        world.issuer.jwks_fetches() - fetches,
        1,
        "200 unknown kids within min_refetch_interval: exactly one refetch"
    );
    assert_eq!(world.issuer.discovery_fetches(), discoveries);
    assert_eq!(world.upstream.hits(), 0);
    wait_metric(
        &world.gateway,
        "jobgate_auth_failures_total{reason=\"unknown_key\",route=\"api\"}",
        |value| value >= 200.0,
    );
    // Genuine tokens are unaffected.
    assert_admitted(&world.call(&world.issuer.mint_github(AUD)), &world.issuer);
}

#[test]
fn unknown_kid_is_remembered_until_the_next_fetch() {
    let world = World::ready();
    let fetches = world.issuer.jwks_fetches();
    let late = TestKey::rsa("late");
    let token = world
        .issuer
        .mint_with_key(&late, world.issuer.github_claims(AUD));
    world.assert_invalid_token(&token, "unknown_key");
    assert_eq!(world.issuer.jwks_fetches(), fetches + 1);
    // Past min_refetch_interval (1 s), the same kid still costs nothing: it is remembered.
    std::thread::sleep(Duration::from_millis(1500));
    world.issuer.add_key(late.clone());
    world.assert_invalid_token(&token, "unknown_key");
    assert_eq!(world.issuer.jwks_fetches(), fetches + 1);
    // Another unknown kid does refetch; the new set has "late", so it is forgotten.
    let stranger = TestKey::rsa("stranger");
    let other = world
        .issuer
        .mint_with_key(&stranger, world.issuer.github_claims(AUD));
    world.assert_invalid_token(&other, "unknown_key");
    assert_eq!(world.issuer.jwks_fetches(), fetches + 2);
    assert_eq!(world.upstream.hits(), 0);
    assert_admitted(&world.call(&token), &world.issuer);
}

#[test]
fn jwks_endpoint_failing_after_start_keeps_valid_tokens_passing() {
    let world = World::ready_with(TestIssuer::start(), "refresh = \"1s\"\n");
    let cached = world.issuer.mint_github(AUD);
    assert_admitted(&world.call(&cached), &world.issuer);

    world.issuer.fail();
    // Several refreshes fail.
    let errors = format!("jobgate_jwks_refresh_total{{issuer=\"{ISSUER}\",result=\"error\"}}");
    wait_metric(&world.gateway, &errors, |value| value >= 2.0);

    // A token seen before and a new one both pass on the old keys.
    assert_admitted(&world.call(&cached), &world.issuer);
    let fresh = world.issuer.mint_github(AUD);
    assert_admitted(&world.call(&fresh), &world.issuer);
    assert_eq!(get(world.gateway.admin, "/readyz").status, 200);

    // A kid that cannot be checked because the refetch fails is an outage, not a bad token.
    let newcomer = TestKey::rsa("rsa-new");
    let unknown = world
        .issuer
        .mint_with_key(&newcomer, world.issuer.github_claims(AUD));
    let response = world.call(&unknown);
    assert_keys_unavailable(&response);
    assert_eq!(response.json()["route"], ROUTE);

    // Hanging instead of failing: the request gives up waiting for the refetch, still 503.
    world.issuer.set_hang_duration(Duration::from_secs(8));
    world.issuer.hang();
    // Past min_refetch_interval (1 s), so that this kid asks for a refetch of its own.
    std::thread::sleep(Duration::from_millis(1500));
    let other = TestKey::rsa("rsa-other");
    let unknown = world
        .issuer
        .mint_with_key(&other, world.issuer.github_claims(AUD));
    assert_keys_unavailable(&world.call(&unknown));
    assert_admitted(&world.call(&fresh), &world.issuer);
    assert_eq!(world.upstream.hits(), 4);
}

#[test]
fn jwks_url_skips_discovery() {
    let issuer = TestIssuer::start();
    let jwks_url = format!("jwks_url = \"{}\"\n", issuer.jwks_url());
    let world = World::ready_with(issuer, &jwks_url);
    assert_admitted(&world.call(&world.issuer.mint_github(AUD)), &world.issuer);
    assert_eq!(world.issuer.discovery_fetches(), 0);
    assert!(world.issuer.jwks_fetches() >= 1);
}

#[test]
fn keys_past_max_stale_are_dropped_and_the_issuer_fails_closed() {
    let world = World::ready_with(
        TestIssuer::start(),
        "refresh = \"1s\"\nmax_stale = \"3s\"\n",
    );
    let cached = world.issuer.mint_github(AUD);
    assert_admitted(&world.call(&cached), &world.issuer);

    world.issuer.fail();
    let deadline = Instant::now() + Duration::from_secs(20);
    let not_ready = loop {
        let ready = get(world.gateway.admin, "/readyz");
        if ready.status == 503 {
            break ready;
        }
        assert!(Instant::now() < deadline, "keys not dropped within 20 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        body_text(&not_ready).contains(ISSUER),
        "{}",
        body_text(&not_ready)
    );
    // Even the cached token: without keys nothing is admitted, and nothing is a 401.
    assert_keys_unavailable(&world.call(&cached));
    assert_keys_unavailable(&world.call(&world.issuer.mint_github(AUD)));
    assert_eq!(
        metric(
            &world.gateway,
            &format!("jobgate_jwks_keys{{issuer=\"{ISSUER}\"}}")
        ),
        0.0
    );
    assert_eq!(world.upstream.hits(), 1);

    world.issuer.heal();
    wait_ready(&world.gateway);
    assert_admitted(&world.call(&cached), &world.issuer);
    assert_eq!(world.upstream.hits(), 2);
}

#[test]
fn discovered_http_jwks_uri_off_loopback_is_never_fetched() {
    // 0.0.0.0 is not a loopback address, so http:// is not allowed there; yet on Linux a
    // connection to it reaches this host, where the counter would see it.
    let counter = ConnectionCounter::start();
    let issuer = TestIssuer::start();
    let port = counter.addr.port();
    issuer.set_jwks_uri(Some(&format!("http://0.0.0.0:{port}/jwks")));
    let world = World::start(issuer, "");
    let errors = format!("jobgate_jwks_refresh_total{{issuer=\"{ISSUER}\",result=\"error\"}}");
    wait_metric(&world.gateway, &errors, |value| value >= 2.0);
    assert!(world.issuer.discovery_fetches() >= 2);
    assert_eq!(counter.connections(), 0, "the http jwks_uri was fetched");
    let ready = get(world.gateway.admin, "/readyz");
    assert_eq!(ready.status, 503);
    assert!(body_text(&ready).contains(ISSUER), "{}", body_text(&ready));
    assert_keys_unavailable(&world.call(&world.issuer.mint_github(AUD)));
    assert_eq!(world.upstream.hits(), 0);
}

/// Started while the issuer is down: 503 and not ready; healed: 200 and ready, same process.
fn started_while_the_issuer_is_down(issuer: TestIssuer, issuer_extra: &str) {
    let world = World::start(issuer, issuer_extra);
    let token = world.issuer.mint_github(AUD);

    let ready = get(world.gateway.admin, "/readyz");
    assert_eq!(ready.status, 503, "{}", body_text(&ready));
    assert!(
        body_text(&ready).contains(ISSUER),
        "/readyz names the issuer: {}",
        body_text(&ready)
    );
    let response = world.call(&token);
    assert_keys_unavailable(&response);
    assert_eq!(response.json()["route"], ROUTE);
    // A forged token is no different while there are no keys: nothing looks like a 401.
    assert_keys_unavailable(&world.call(&flip_char(&token, 2)));
    assert_eq!(world.upstream.hits(), 0);
    let gateway = &world.gateway;
    assert_eq!(
        gateway.metric(&format!("jobgate_jwks_keys{{issuer=\"{ISSUER}\"}}")),
        Some(0.0)
    );
    wait_metric(
        gateway,
        "jobgate_auth_failures_total{reason=\"keys_unavailable\",route=\"api\"}",
        |value| value >= 2.0,
    );
    wait_metric(
        gateway,
        "jobgate_requests_total{outcome=\"unavailable\",route=\"api\"}",
        |value| value >= 2.0,
    );
    let pid = world.gateway.child.id();

    world.issuer.heal();
    // The key store retries with a backoff that starts at 1 s and doubles.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = get(world.gateway.admin, "/readyz");
        if ready.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz still {} 30 s after the issuer healed: {}",
            ready.status,
            body_text(&ready)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_admitted(&world.call(&token), &world.issuer);
    assert_eq!(world.gateway.child.id(), pid);
    assert_eq!(world.upstream.hits(), 1);
    assert_eq!(
        world
            .gateway
            .metric(&format!("jobgate_jwks_keys{{issuer=\"{ISSUER}\"}}")),
        Some(1.0)
    );
}

#[test]
fn started_with_the_issuer_failing_is_503_until_it_heals() {
    let issuer = TestIssuer::start();
    issuer.fail();
    started_while_the_issuer_is_down(issuer, "");
}

#[test]
fn started_with_the_issuer_hanging_is_503_until_it_heals() {
    let issuer = TestIssuer::start();
    issuer.set_hang_duration(Duration::from_secs(8));
    issuer.hang();
    // Each hung fetch costs jobgate's 5 s fetch timeout; `refresh` caps the retry backoff
    // so that healing is noticed within the 30 s the test allows.
    started_while_the_issuer_is_down(issuer, "refresh = \"2s\"\n");
}

// ---------------------------------------------------------------------------------------
// The verified-token cache (SPEC §3, the cache paragraph).
// ---------------------------------------------------------------------------------------

/// Sends `token` until it is no longer admitted (at most 30 s) and returns that response.
fn call_until_refused(world: &World, token: &str) -> RawResponse {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = world.call(token);
        if response.status != 200 {
            return response;
        }
        assert!(
            Instant::now() < deadline,
            "the token is still admitted after 30 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn cache_hits(gateway: &Jobgate) -> f64 {
    metric(
        gateway,
        "jobgate_auth_duration_seconds_count{cache=\"hit\"}",
    )
}

#[test]
fn cached_token_is_refused_once_its_key_leaves_the_jwks() {
    let issuer = TestIssuer::start_with_keys(vec![TestKey::rsa("rsa-1"), TestKey::rsa("rsa-2")]);
    let world = World::ready_with(issuer, "refresh = \"1s\"\n");
    let token = world.issuer.mint_github(AUD);
    assert_admitted(&world.call(&token), &world.issuer);
    let hits = cache_hits(&world.gateway);
    assert_admitted(&world.call(&token), &world.issuer);
    wait_metric(
        &world.gateway,
        "jobgate_auth_duration_seconds_count{cache=\"hit\"}",
        |value| value > hits,
    );

    assert!(world.issuer.remove_key("rsa-1"));
    let response = call_until_refused(&world, &token);
    assert_invalid_token(&response, "unknown_key", &token);
    // And it stays refused.
    world.assert_invalid_token(&token, "unknown_key");
    let upstream_hits = world.upstream.hits();
    // The key that stayed still works.
    let other = world.issuer.key("rsa-2").expect("rsa-2 is published");
    let fresh = world
        .issuer
        .mint_with_key(&other, world.issuer.github_claims(AUD));
    assert_admitted(&world.call(&fresh), &world.issuer);
    assert_eq!(world.upstream.hits(), upstream_hits + 1);
}

#[test]
fn cached_token_is_refused_once_its_kid_names_another_key() {
    let world = World::ready_with(TestIssuer::start(), "refresh = \"1s\"\n");
    let token = world.issuer.mint_github(AUD);
    assert_admitted(&world.call(&token), &world.issuer);
    assert_admitted(&world.call(&token), &world.issuer);

    // The issuer reuses the kid for new key material.
    let replacement = TestKey::rsa("rsa-1");
    assert!(world.issuer.remove_key("rsa-1"));
    world.issuer.add_key(replacement.clone());
    let response = call_until_refused(&world, &token);
    assert_invalid_token(&response, "bad_signature", &token);
    let upstream_hits = world.upstream.hits();
    let fresh = world
        .issuer
        .mint_with_key(&replacement, world.issuer.github_claims(AUD));
    assert_admitted(&world.call(&fresh), &world.issuer);
    assert_eq!(world.upstream.hits(), upstream_hits + 1);
}

#[test]
fn cache_hit_still_checks_audience_and_time() {
    let issuer = TestIssuer::start();
    let upstream = EchoUpstream::start("api");
    let config = format!(
        "[audit]\noutput = \"off\"\n\n{}{}{}",
        issuer_toml(&issuer, "leeway = \"0s\"\n"),
        route_toml(ROUTE, "/", AUD, &upstream),
        route_toml(
            "other",
            "/other",
            "https://other.internal.example",
            &upstream
        )
    );
    let gateway = Jobgate::start(&config);
    wait_ready(&gateway);
    let minted = now();
    let exp = minted + 10;
    let token = issuer.mint_github_with(
        AUD,
        json!({"iat": minted - 5, "nbf": minted - 5, "exp": exp}),
    );
    assert_admitted(&call(&gateway, "/v1/things", &token), &issuer);
    let hits = cache_hits(&gateway);

    // Cached, but not for this audience.
    let response = call(&gateway, "/other/x", &token);
    assert_eq!(response.status, 401, "{}", body_text(&response));
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\", error_description=\"wrong_audience\"")
    );
    assert_eq!(response.json()["reason"], "wrong_audience");
    assert_eq!(response.json()["route"], "other");
    wait_metric(
        &gateway,
        "jobgate_auth_duration_seconds_count{cache=\"hit\"}",
        |value| value > hits,
    );

    // Cached, and expired while in the cache (leeway 0).
    let deadline = Instant::now() + Duration::from_secs(40);
    let refused = loop {
        let response = call(&gateway, "/v1/things", &token);
        if response.status != 200 {
            break response;
        }
        assert!(Instant::now() < deadline, "still admitted 40 s later");
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_invalid_token(&refused, "expired", &token);
    assert!(now() >= exp, "refused as expired before its exp");
}

// ---------------------------------------------------------------------------------------
// Metrics (SPEC §5). Prometheus prints labels sorted by name.
// ---------------------------------------------------------------------------------------

#[test]
fn metrics_count_refusals_keys_and_cache_hits() {
    let world = World::ready();
    let now = now();
    for _ in 0..3 {
        let expired = world.issuer.mint_github_with(
            AUD,
            json!({"iat": now - 400, "nbf": now - 400, "exp": now - 100}),
        );
        world.assert_invalid_token(&expired, "expired");
    }
    let gateway = &world.gateway;
    assert_eq!(
        wait_metric(
            gateway,
            "jobgate_auth_failures_total{reason=\"expired\",route=\"api\"}",
            |value| value >= 3.0
        ),
        3.0
    );
    assert_eq!(
        wait_metric(
            gateway,
            "jobgate_requests_total{outcome=\"unauthenticated\",route=\"api\"}",
            |value| value >= 3.0
        ),
        3.0
    );
    assert_eq!(
        metric(
            gateway,
            &format!("jobgate_jwks_keys{{issuer=\"{ISSUER}\"}}")
        ),
        1.0
    );
    assert!(
        metric(
            gateway,
            &format!("jobgate_jwks_refresh_total{{issuer=\"{ISSUER}\",result=\"ok\"}}")
        ) >= 1.0
    );
    assert!(
        metric(
            gateway,
            &format!("jobgate_jwks_last_success_timestamp_seconds{{issuer=\"{ISSUER}\"}}")
        ) > 0.0
    );

    // 400 and 401 before any token is read count too.
    let response = get(gateway.addr, "/v1/things");
    assert_refusal(
        &response,
        401,
        Some("Bearer realm=\"jobgate\""),
        "missing_token",
        "",
    );
    let response = raw_request(
        gateway.addr,
        "GET",
        "/v1/things",
        &[("Authorization", "Bearer")],
        b"",
    );
    assert_refusal(
        &response,
        400,
        Some("Bearer error=\"invalid_request\""),
        "invalid_request",
        "",
    );
    wait_metric(
        gateway,
        "jobgate_auth_failures_total{reason=\"missing_token\",route=\"api\"}",
        |value| value >= 1.0,
    );
    wait_metric(
        gateway,
        "jobgate_auth_failures_total{reason=\"invalid_request\",route=\"api\"}",
        |value| value >= 1.0,
    );
    wait_metric(
        gateway,
        "jobgate_requests_total{outcome=\"bad_request\",route=\"api\"}",
        |value| value >= 1.0,
    );
    assert_eq!(
        wait_metric(
            gateway,
            "jobgate_requests_total{outcome=\"unauthenticated\",route=\"api\"}",
            |value| value >= 4.0
        ),
        4.0
    );

    // The same token three times: one miss, then hits.
    let token = world.issuer.mint_github(AUD);
    assert_admitted(&world.call(&token), &world.issuer);
    let hits = cache_hits(gateway);
    assert_admitted(&world.call(&token), &world.issuer);
    assert_admitted(&world.call(&token), &world.issuer);
    assert_eq!(
        wait_metric(
            gateway,
            "jobgate_auth_duration_seconds_count{cache=\"hit\"}",
            |value| value >= hits + 2.0
        ),
        hits + 2.0
    );
    assert_eq!(
        wait_metric(
            gateway,
            "jobgate_requests_total{outcome=\"allowed\",route=\"api\"}",
            |value| value >= 3.0
        ),
        3.0
    );
    assert_eq!(world.upstream.hits(), 3);
}
