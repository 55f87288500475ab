//! Authentication end to end (issue "[auth]", acceptance point 1): the real `jobgate`
//! binary in front of a real echo upstream, verifying tokens of a real OIDC test issuer
//! (discovery and JWKS over HTTP), all on 127.0.0.1. SPEC §2 issuer keys, §3 steps 5–7 and
//! the verified-token cache, §5 metrics and `/readyz`.
//!
//! Every test has its own world: issuer, upstream and gateway. Every refusal is checked for
//! its status, its exact `WWW-Authenticate`, the JSON body's `reason` and route, the absence
//! of the token in the body, and that the upstream saw nothing.
//!
//! One test binary; each theme is a module. Here: the world most tests start from and what
//! the themes share.

#[path = "../support/mod.rs"]
mod support;

mod authorization;
mod cache;
mod claims;
mod keys;
mod metrics;
mod signatures;

use serde_json::Value;
use support::issuer::{Signer, TestIssuer, TestKey, b64url_decode, mint_with_header};
use support::world::{World, WorldBuilder, any_token_route};
use support::{RawResponse, expect};

const AUD: &str = "https://api.internal.example";
const ROUTE: &str = "api";
/// The issuer's name in the config, in metric labels and in `/readyz`.
const ISSUER: &str = "test";

/// `issuer` (named `test`) behind the route `api` to the echo upstream `api`; add issuer or
/// server keys, then start.
fn api_world(issuer: TestIssuer) -> WorldBuilder {
    World::builder()
        .issuer(issuer)
        .audience(AUD)
        .upstream("api")
        .route(&any_token_route("api", "/", "{issuer}"))
}

/// [`api_world`] with an issuer of one RSA key, its keys loaded.
fn ready() -> World {
    api_world(TestIssuer::start()).start()
}

/// [`ready`] with more lines in the `[[issuer]]` table.
fn ready_with(issuer_keys: &str) -> World {
    api_world(TestIssuer::start())
        .issuer_keys(issuer_keys)
        .start()
}

/// How the tests here talk to their world.
trait Api {
    /// `GET /v1/things` with `Authorization: Bearer token`.
    fn call(&self, token: &str) -> RawResponse;
    /// Sends `token` and checks that it is admitted (see [`assert_admitted`]).
    fn assert_admits(&self, token: &str);
    /// Sends `token` and checks the 401 `invalid_token` refusal for `reason`.
    fn assert_invalid_token(&self, token: &str, reason: &str);
}

impl Api for World {
    fn call(&self, token: &str) -> RawResponse {
        self.get("/v1/things").bearer(token).send()
    }

    #[track_caller]
    fn assert_admits(&self, token: &str) {
        assert_admitted(&self.call(token), self.issuer());
    }

    #[track_caller]
    fn assert_invalid_token(&self, token: &str, reason: &str) {
        let response = self.call(token);
        assert_invalid_token(&response, reason, token);
    }
}

/// The count of verifications answered from the token cache.
fn cache_hits(world: &World) -> f64 {
    world.metric_or_zero("jobgate_auth_duration_seconds_count", &[("cache", "hit")])
}

// ---------------------------------------------------------------------------------------
// Assertions.
// ---------------------------------------------------------------------------------------

/// A refusal on the route `api`: status, exact `WWW-Authenticate` (or none), JSON `reason`
/// and `route`, and no token echo.
#[track_caller]
fn assert_refusal(
    response: &RawResponse,
    status: u16,
    www_authenticate: Option<&str>,
    reason: &str,
    token: &str,
) {
    expect::refusal(response, status, reason, ROUTE, reason);
    expect::challenge(response, www_authenticate, reason);
    expect::token_not_echoed(response, token, reason);
}

/// `GET /v1/things` with exactly these `Authorization` lines, in order.
fn call_with_authorization(world: &World, values: &[&str]) -> RawResponse {
    values
        .iter()
        .fold(world.get("/v1/things"), |request, value| {
            request.header("Authorization", value)
        })
        .send()
}

/// 400 `invalid_request` with its challenge, not echoing `token`.
#[track_caller]
fn assert_invalid_request(response: &RawResponse, token: &str) {
    assert_refusal(
        response,
        400,
        Some("Bearer error=\"invalid_request\""),
        "invalid_request",
        token,
    );
}

/// 401 `missing_token` with the bare challenge.
#[track_caller]
fn assert_missing_token(response: &RawResponse) {
    assert_refusal(
        response,
        401,
        Some("Bearer realm=\"jobgate\""),
        "missing_token",
        "",
    );
}

/// 401 `invalid_token` for `reason` on the route `api`.
#[track_caller]
fn assert_invalid_token(response: &RawResponse, reason: &str, token: &str) {
    expect::invalid_token(response, reason, ROUTE, token, reason);
}

/// 503 `keys_unavailable` on the route `api`.
#[track_caller]
fn assert_keys_unavailable(response: &RawResponse) {
    expect::keys_unavailable(response, ROUTE, "keys_unavailable");
}

/// 200 from the echo upstream, with the identity the gateway set.
#[track_caller]
fn assert_admitted(response: &RawResponse, issuer: &TestIssuer) {
    expect::status(response, 200, "an admitted token");
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
