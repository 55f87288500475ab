//! Known JWT attacks and malformed JOSE against the real gateway (issue "[hardening]").
//!
//! The anchors fail in known ways: JWT libraries have accepted `alg: none`, HMAC keyed with
//! the RSA public key (CVE-2015-9235), ECDSA signatures with r = s = 0 (CVE-2022-21449) and
//! keys embedded in the token's own header (CVE-2018-0114); mod_auth_openidc accepts tokens
//! without `exp` and with `nbf` in the future; Envoy answers 401 to everything while a JWKS
//! fetch fails (and has crashed on one, CVE-2025-64527). Each test here replays one family
//! of those attacks, or of malformed JOSE, against the real `jobgate` binary with a real
//! OIDC test issuer and a real echo upstream, all on 127.0.0.1.
//!
//! Every refusal is checked for its status, its exact `WWW-Authenticate`, the JSON body's
//! `reason` and `route`, and that the body does not echo the token. Every test ends by
//! checking that the upstream saw none of the attacks, that the process is still alive,
//! that `/healthz` answers 200, that genuine RS256 and ES256 tokens are still admitted (the
//! attacks poisoned nothing) and that the audit log never contains a token.
//!
//! One test binary; each family of attacks is a module. Here: the world every test starts
//! from, what an attack test checks at its end, and the forging tools the families share.

#[path = "../support/mod.rs"]
mod support;

mod algorithms;
mod dates;
mod encoding;
mod json;
mod keys;
mod outages;

use std::time::Duration;

use serde_json::{Value, json};
use support::issuer::{TestIssuer, TestKey, b64url};
use support::world::{World, WorldBuilder, any_token_route};
use support::{RawResponse, expect, wait_until};

const AUD: &str = "https://api.attacks.example";
const ROUTE: &str = "api";
/// The issuer's name in the config.
const ISSUER: &str = "test";
/// Large enough for the 10 000-level nesting and the 10 000-character kid; the default
/// (16 384) is exercised in `tests/faults/limits.rs`.
const MAX_TOKEN_BYTES: usize = 65_536;

// ---------------------------------------------------------------------------------------
// Set-up.
// ---------------------------------------------------------------------------------------

/// An issuer publishing an RSA key (`rsa-1`, signs by default) and a P-256 key (`ec-1`).
fn attacked_issuer() -> TestIssuer {
    TestIssuer::start_with_keys(vec![TestKey::rsa("rsa-1"), TestKey::p256("ec-1")])
}

/// `issuer` behind one authenticated route `api` on `/` to the echo upstream `api`, with
/// an audit file to search for tokens; add issuer keys, then start.
fn besieged(issuer: TestIssuer) -> WorldBuilder {
    World::builder()
        .issuer(issuer)
        .audience(AUD)
        .upstream("api")
        .server(&format!("max_token_bytes = {MAX_TOKEN_BYTES}"))
        .audit_file()
        .route(&any_token_route("api", "/", "{issuer}"))
}

/// The world of most attack tests, its issuer's keys loaded.
fn ready() -> World {
    besieged(attacked_issuer()).start()
}

/// What every attack test does to its world and checks at the end.
trait Siege {
    fn rsa(&self) -> TestKey;
    fn ec(&self) -> TestKey;
    /// Valid GitHub-shaped claims for the route.
    fn claims(&self) -> Value;
    /// `GET /v1/things` with `Authorization: Bearer token`.
    fn call(&self, token: &str) -> RawResponse;
    /// Sends `token` and checks the 401 `invalid_token` refusal for `reason`.
    fn refused(&self, token: &str, reason: &str, what: &str);
    /// Sends `token` and checks the 503 `keys_unavailable` refusal.
    fn unavailable(&self, token: &str, what: &str);
    fn admitted(&self, token: &str, what: &str);
    /// The end of every attack test: the upstream saw nothing, the process is alive,
    /// `/healthz` is 200, genuine tokens of both key types still pass, and the audit log
    /// holds no token.
    fn finish(self);
    /// Waits (bounded) for the audit writer to catch up, then checks that no line
    /// contains a token that was sent.
    fn assert_audit_has_no_token(&self);
}

impl Siege for World {
    fn rsa(&self) -> TestKey {
        self.issuer().key("rsa-1").expect("rsa-1 is published")
    }

    fn ec(&self) -> TestKey {
        self.issuer().key("ec-1").expect("ec-1 is published")
    }

    fn claims(&self) -> Value {
        self.issuer().github_claims(AUD)
    }

    fn call(&self, token: &str) -> RawResponse {
        self.get("/v1/things").bearer(token).send()
    }

    #[track_caller]
    fn refused(&self, token: &str, reason: &str, what: &str) {
        let response = self.call(token);
        expect::invalid_token(&response, reason, ROUTE, token, what);
    }

    #[track_caller]
    fn unavailable(&self, token: &str, what: &str) {
        let response = self.call(token);
        expect::keys_unavailable(&response, ROUTE, what);
    }

    #[track_caller]
    fn admitted(&self, token: &str, what: &str) {
        let response = self.call(token);
        expect::status(&response, 200, what);
        assert_eq!(response.header("x-upstream"), Some("api"), "{what}");
    }

    #[track_caller]
    fn finish(mut self) {
        assert_eq!(
            self.upstream().hits(),
            0,
            "an attack request reached the upstream"
        );
        self.assert_alive();
        let genuine_rsa = self.token();
        self.admitted(&genuine_rsa, "a genuine RS256 token after the attacks");
        let genuine_ec = self.token_signed_by(&self.ec());
        self.admitted(&genuine_ec, "a genuine ES256 token after the attacks");
        assert_eq!(self.upstream().hits(), 2);
        self.assert_audit_has_no_token();
        self.assert_alive();
    }

    #[track_caller]
    fn assert_audit_has_no_token(&self) {
        let sent = self.sent_tokens();
        // The writer may be mid-line when the file is read: wait (at most 5 s) for whole
        // lines, then judge what was written.
        wait_until(Duration::from_secs(5), || {
            let log = self.audit_text();
            log.ends_with('\n') && log.lines().count() >= sent.len()
        });
        // Every complete line is JSON.
        let lines = self.audit_lines();
        assert!(!lines.is_empty(), "the audit log is empty");
        let log = self.audit_text();
        // Short inputs ("abc", "a.b") can occur in any text; real tokens cannot.
        for token in sent.iter().filter(|token| token.len() >= 40) {
            assert!(!log.contains(token.as_str()), "the audit log holds a token");
        }
    }
}

/// Sends every `(what, token)` and panics, with a table of every outcome, unless each one
/// is 401 `malformed_token`.
#[track_caller]
fn assert_all_malformed(world: &World, cases: &[(String, String)]) {
    let outcomes: Vec<(String, u16, String)> = cases
        .iter()
        .map(|(what, token)| {
            let response = world.call(token);
            let reason = serde_json::from_slice::<Value>(&response.body)
                .ok()
                .and_then(|body| body["reason"].as_str().map(str::to_string))
                .unwrap_or_else(|| "(upstream answered)".to_string());
            (what.clone(), response.status, reason)
        })
        .collect();
    let wrong: Vec<_> = outcomes
        .iter()
        .filter(|(_, status, reason)| *status != 401 || reason != "malformed_token")
        .collect();
    assert!(
        wrong.is_empty(),
        "expected 401 malformed_token for every case; got:\n{}",
        outcomes
            .iter()
            .map(|(what, status, reason)| format!("  {status} {reason:<20} {what}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Token forging.
// ---------------------------------------------------------------------------------------

/// `b64url(header).b64url(payload)`: what a signature covers.
fn signing_input(header: &[u8], payload: &[u8]) -> String {
    format!("{}.{}", b64url(header), b64url(payload))
}

fn json_bytes(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

/// A header naming `alg` and, when given, `kid`.
fn header(alg: &str, kid: Option<&str>) -> Value {
    match kid {
        Some(kid) => json!({"alg": alg, "typ": "JWT", "kid": kid}),
        None => json!({"alg": alg, "typ": "JWT"}),
    }
}

/// `claims` as JSON text with `name` set to the raw JSON text `raw` (numbers serde_json
/// cannot hold, duplicate members, …), as the first member.
fn with_raw_member(claims: &Value, name: &str, raw: &str) -> Vec<u8> {
    let mut claims = claims.clone();
    if let Some(object) = claims.as_object_mut() {
        object.remove(name);
    }
    let rest = claims.to_string();
    let rest = rest.strip_prefix('{').expect("a JSON object");
    let separator = if rest == "}" { "" } else { "," };
    format!("{{\"{name}\":{raw}{separator}{rest}").into_bytes()
}

/// The parts of a compact token.
fn parts(token: &str) -> Vec<String> {
    token.split('.').map(str::to_string).collect()
}
