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

mod support;

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as aws_sig, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use support::issuer::{Behaviour, Signer, TestIssuer, TestKey, b64url, b64url_decode, mint_raw};
use support::{ConnectionCounter, EchoUpstream, Jobgate, RawResponse, free_port, get, raw_request};

const AUD: &str = "https://api.attacks.example";
const ROUTE: &str = "api";
/// The issuer's name in the config.
const ISSUER: &str = "test";
/// Large enough for the 10 000-level nesting and the 10 000-character kid; the default
/// (16 384) is exercised in `tests/faults.rs`.
const MAX_TOKEN_BYTES: usize = 65_536;
/// The order n of the P-256 group: r = s = n is r = s = 0 modulo n.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

// ---------------------------------------------------------------------------------------
// Set-up.
// ---------------------------------------------------------------------------------------

/// One test's world: an issuer publishing an RSA key (`rsa-1`, signs by default) and a
/// P-256 key (`ec-1`), an echo upstream and a gateway with one authenticated route.
struct World {
    issuer: TestIssuer,
    upstream: EchoUpstream,
    gateway: Jobgate,
    /// Every token sent, to check that the audit log never contains one.
    sent: Mutex<Vec<String>>,
}

impl World {
    fn issuer() -> TestIssuer {
        TestIssuer::start_with_keys(vec![TestKey::rsa("rsa-1"), TestKey::p256("ec-1")])
    }

    /// A gateway for `issuer` (with `issuer_extra` keys), not waiting for its keys.
    fn start_with(issuer: TestIssuer, issuer_extra: &str) -> World {
        let upstream = EchoUpstream::start("api");
        let (port, admin_port) = (free_port(), free_port());
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin_port}\"\n\
             threads = 1\ngrace_period = \"2s\"\nmax_token_bytes = {MAX_TOKEN_BYTES}\n\n\
             [audit]\noutput = \"audit.jsonl\"\n\n\
             [[issuer]]\nname = \"{ISSUER}\"\nurl = \"{}\"\nalgorithms = [\"RS256\", \"ES256\"]\n\
             min_refetch_interval = \"1s\"\n{issuer_extra}\n\
             [[route]]\nname = \"{ROUTE}\"\npath_prefix = \"/\"\nupstream = \"{}\"\n\
             issuer = \"{ISSUER}\"\naudience = \"{AUD}\"\n\n[[route.allow]]\n",
            issuer.url(),
            upstream.url()
        );
        let gateway = Jobgate::start_raw(&config, port, admin_port);
        World {
            issuer,
            upstream,
            gateway,
            sent: Mutex::new(Vec::new()),
        }
    }

    /// A gateway whose issuer's keys are loaded.
    fn ready() -> World {
        World::ready_with("")
    }

    fn ready_with(issuer_extra: &str) -> World {
        let world = World::start_with(World::issuer(), issuer_extra);
        world.wait_ready();
        world
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let response = get(self.gateway.admin, "/readyz");
            if response.status == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz still {} after 20 s: {}",
                response.status,
                text(&response)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn rsa(&self) -> TestKey {
        self.issuer.key("rsa-1").expect("rsa-1 is published")
    }

    fn ec(&self) -> TestKey {
        self.issuer.key("ec-1").expect("ec-1 is published")
    }

    /// Valid GitHub-shaped claims for the route.
    fn claims(&self) -> Value {
        self.issuer.github_claims(AUD)
    }

    /// `GET /v1/things` with `Authorization: Bearer token`.
    fn call(&self, token: &str) -> RawResponse {
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(token.to_string());
        raw_request(
            self.gateway.addr,
            "GET",
            "/v1/things",
            &[("Authorization", &format!("Bearer {token}"))],
            b"",
        )
    }

    /// Sends `token` and checks the 401 `invalid_token` refusal for `reason`.
    #[track_caller]
    fn refused(&self, token: &str, reason: &str, what: &str) {
        let response = self.call(token);
        assert_invalid_token(&response, reason, token, what);
    }

    /// Sends `token` and checks the 503 `keys_unavailable` refusal.
    #[track_caller]
    fn unavailable(&self, token: &str, what: &str) {
        let response = self.call(token);
        assert_keys_unavailable(&response, what);
    }

    #[track_caller]
    fn admitted(&self, token: &str, what: &str) {
        let response = self.call(token);
        assert_eq!(
            response.status,
            200,
            "{what}: expected 200, got {}: {}",
            response.status,
            text(&response)
        );
        assert_eq!(response.header("x-upstream"), Some("api"), "{what}");
    }

    /// The end of every attack test: the upstream saw nothing, the process is alive,
    /// `/healthz` is 200, genuine tokens of both key types still pass, and the audit log
    /// holds no token.
    #[track_caller]
    fn finish(mut self) {
        assert_eq!(
            self.upstream.hits(),
            0,
            "an attack request reached the upstream"
        );
        self.assert_alive();
        let genuine_rsa = self.issuer.mint_github(AUD);
        self.admitted(&genuine_rsa, "a genuine RS256 token after the attacks");
        let genuine_ec = self.issuer.mint_with_key(&self.ec(), self.claims());
        self.admitted(&genuine_ec, "a genuine ES256 token after the attacks");
        assert_eq!(self.upstream.hits(), 2);
        self.assert_audit_has_no_token();
        self.assert_alive();
    }

    #[track_caller]
    fn assert_alive(&mut self) {
        match self.gateway.child.try_wait() {
            Ok(None) => {}
            Ok(Some(status)) => panic!("jobgate exited during the attacks: {status}"),
            Err(error) => panic!("cannot poll jobgate: {error}"),
        }
        let health = get(self.gateway.admin, "/healthz");
        assert_eq!(health.status, 200, "/healthz: {}", text(&health));
    }

    /// Waits (bounded) for the audit writer to catch up, then checks that no line contains
    /// a token that was sent.
    #[track_caller]
    fn assert_audit_has_no_token(&self) {
        let path = self.gateway.dir.path().join("audit.jsonl");
        let sent = self
            .sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let deadline = Instant::now() + Duration::from_secs(5);
        let log = loop {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            // The writer may be mid-line when the file is read: wait for whole lines.
            let whole = log.ends_with('\n');
            if (whole && log.lines().count() >= sent.len()) || Instant::now() >= deadline {
                break log;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let complete = log.rfind('\n').map_or("", |end| &log[..=end]);
        assert!(
            complete.lines().count() > 0,
            "the audit log {} is empty",
            path.display()
        );
        for line in complete.lines() {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|error| panic!("audit line is not JSON ({error}): {line}"));
        }
        // Short inputs ("abc", "a.b") can occur in any text; real tokens cannot.
        for token in sent.iter().filter(|token| token.len() >= 40) {
            assert!(!log.contains(token.as_str()), "the audit log holds a token");
        }
    }
}

fn text(response: &RawResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

/// 401 with `Bearer error="invalid_token", error_description="<reason>"` (SPEC §3 step 6),
/// the JSON reason and route, and no echo of the token.
#[track_caller]
fn assert_invalid_token(response: &RawResponse, reason: &str, token: &str, what: &str) {
    assert_eq!(
        response.status,
        401,
        "{what}: expected 401 {reason}, got {}: {}",
        response.status,
        text(response)
    );
    let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{reason}\"");
    assert_eq!(
        response.header("www-authenticate"),
        Some(challenge.as_str()),
        "{what}"
    );
    let body = response.json();
    assert_eq!(body["reason"], reason, "{what}: {body}");
    assert_eq!(body["route"], ROUTE, "{what}: {body}");
    if token.len() >= 16 {
        assert!(
            !text(response).contains(token),
            "{what}: the token is echoed"
        );
    }
}

/// 503 `keys_unavailable` with a `Retry-After` of whole seconds, and nothing that makes it
/// look like a bad token (SPEC §3 step 7).
#[track_caller]
fn assert_keys_unavailable(response: &RawResponse, what: &str) {
    assert_eq!(
        response.status,
        503,
        "{what}: expected 503 keys_unavailable, got {}: {}",
        response.status,
        text(response)
    );
    let body = response.json();
    assert_eq!(body["reason"], "keys_unavailable", "{what}: {body}");
    assert_eq!(body["route"], ROUTE, "{what}: {body}");
    let retry_after = response
        .header("retry-after")
        .unwrap_or_else(|| panic!("{what}: a keys_unavailable refusal carries Retry-After"));
    let seconds: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("{what}: Retry-After {retry_after:?} is not whole seconds"));
    assert!(seconds > 0, "{what}: Retry-After {seconds}");
    assert!(
        !response
            .header("www-authenticate")
            .is_some_and(|value| value.contains("invalid_token")),
        "{what}: an outage looks like a bad token: {:?}",
        response.header("www-authenticate")
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

/// HMAC-SHA-256/384/512 of `message` with `secret`, by JOSE name.
fn hmac_sign(alg: &str, secret: &[u8], message: &[u8]) -> Vec<u8> {
    let algorithm = match alg {
        "HS256" => hmac::HMAC_SHA256,
        "HS384" => hmac::HMAC_SHA384,
        "HS512" => hmac::HMAC_SHA512,
        other => panic!("not an HMAC alg: {other}"),
    };
    hmac::sign(&hmac::Key::new(algorithm, secret), message)
        .as_ref()
        .to_vec()
}

/// The parts of a compact token.
fn parts(token: &str) -> Vec<String> {
    token.split('.').map(str::to_string).collect()
}

// ---------------------------------------------------------------------------------------
// alg: none.
// ---------------------------------------------------------------------------------------

#[test]
fn alg_none_in_any_spelling_is_refused_with_or_without_a_signature() {
    let world = World::ready();
    let claims = world.claims();
    let genuine = world.issuer.mint(claims.clone());
    let genuine_signature = b64url_decode(&parts(&genuine)[2]);
    for alg in ["none", "None", "NONE", "nOnE"] {
        for kid in [None, Some("rsa-1")] {
            let header = json_bytes(&header(alg, kid));
            let payload = json_bytes(&claims);
            let what = format!("alg {alg:?}, kid {kid:?}");
            // The classic form: an empty signature part.
            let unsigned = mint_raw(&header, &payload, Signer::Unsigned);
            assert!(unsigned.ends_with('.'));
            world.refused(
                &unsigned,
                "alg_not_allowed",
                &format!("{what}, empty signature"),
            );
            // With a signature: the issuer's genuine signature of another token, and junk.
            let replayed = mint_raw(&header, &payload, Signer::Raw(&genuine_signature));
            world.refused(
                &replayed,
                "alg_not_allowed",
                &format!("{what}, replayed signature"),
            );
            let junk = mint_raw(&header, &payload, Signer::Raw(b"signature"));
            world.refused(&junk, "alg_not_allowed", &format!("{what}, junk signature"));
            // No signature part at all is not a compact JWS.
            let two_parts = unsigned.trim_end_matches('.');
            world.refused(two_parts, "malformed_token", &format!("{what}, two parts"));
        }
    }
    // Near misses of allowed names are not allowed either.
    for alg in [
        "rs256",
        "RS256 ",
        " RS256",
        "RS256\u{0}",
        "RSA256",
        "ES256K",
        "EdDSA",
    ] {
        let token = mint_raw(
            &json_bytes(&header(alg, Some("rsa-1"))),
            &json_bytes(&claims),
            Signer::Raw(&genuine_signature),
        );
        world.refused(&token, "alg_not_allowed", &format!("alg {alg:?}"));
    }
    world.finish();
}

// ---------------------------------------------------------------------------------------
// Algorithm confusion: HMAC keyed with the public key (CVE-2015-9235).
// ---------------------------------------------------------------------------------------

#[test]
fn hmac_keyed_with_the_published_public_key_is_refused() {
    let world = World::ready();
    let claims = json_bytes(&world.claims());
    let rsa = world.rsa();
    let ec = world.ec();
    let rsa_pem = rsa.public_key_pem();
    let ec_pem = ec.public_key_pem();
    let rsa_jwk = rsa.jwk().to_string();
    let secrets: Vec<(&str, &str, Vec<u8>)> = vec![
        ("rsa-1", "RSA SPKI DER", rsa.public_key_der()),
        ("rsa-1", "RSA PEM", rsa_pem.clone().into_bytes()),
        (
            "rsa-1",
            "RSA PEM without the final newline",
            rsa_pem.trim_end().as_bytes().to_vec(),
        ),
        ("rsa-1", "RSA JWK text", rsa_jwk.into_bytes()),
        ("ec-1", "P-256 SPKI DER", ec.public_key_der()),
        ("ec-1", "P-256 PEM", ec_pem.into_bytes()),
    ];
    for alg in ["HS256", "HS384", "HS512"] {
        for (kid, name, secret) in &secrets {
            for kid in [Some(*kid), None] {
                let header = json_bytes(&header(alg, kid));
                let message = signing_input(&header, &claims);
                let signature = hmac_sign(alg, secret, message.as_bytes());
                let token = format!("{message}.{}", b64url(&signature));
                world.refused(
                    &token,
                    "alg_not_allowed",
                    &format!("{alg} keyed with the {name}, kid {kid:?}"),
                );
            }
        }
    }
    world.finish();
}

// ---------------------------------------------------------------------------------------
// ECDSA "psychic signatures" (CVE-2022-21449).
// ---------------------------------------------------------------------------------------

#[test]
fn ecdsa_signature_with_r_and_s_zero_is_refused() {
    let world = World::ready();
    let claims = json_bytes(&world.claims());
    let zero = [0u8; 32];
    let fixed = |r: &[u8], s: &[u8]| [r, s].concat();
    // DER SEQUENCE { INTEGER r, INTEGER s }, as some libraries accept.
    let der = |r: &[u8], s: &[u8]| {
        let mut body = vec![0x02, r.len() as u8];
        body.extend_from_slice(r);
        body.extend_from_slice(&[0x02, s.len() as u8]);
        body.extend_from_slice(s);
        let mut out = vec![0x30, body.len() as u8];
        out.extend(body);
        out
    };
    let signatures: Vec<(&str, Vec<u8>)> = vec![
        ("r = s = 0, 64 zero bytes", fixed(&zero, &zero)),
        ("r = s = n", fixed(&P256_ORDER, &P256_ORDER)),
        ("r = 0, s = n", fixed(&zero, &P256_ORDER)),
        ("r = n, s = 0", fixed(&P256_ORDER, &zero)),
        ("DER r = s = 0, one byte each", der(&[0], &[0])),
        ("DER r = s = 0, 32 bytes each", der(&zero, &zero)),
        (
            "DER r = s = n",
            der(
                &[&[0][..], &P256_ORDER].concat(),
                &[&[0][..], &P256_ORDER].concat(),
            ),
        ),
        (
            "DER with empty integers",
            vec![0x30, 0x04, 0x02, 0x00, 0x02, 0x00],
        ),
        ("an empty DER sequence", vec![0x30, 0x00]),
        ("a single zero byte", vec![0]),
        ("65 zero bytes", vec![0; 65]),
        ("no bytes at all", Vec::new()),
    ];
    for (name, signature) in &signatures {
        for kid in [Some("ec-1"), None] {
            let token = mint_raw(
                &json_bytes(&header("ES256", kid)),
                &claims,
                Signer::Raw(signature),
            );
            world.refused(
                &token,
                "bad_signature",
                &format!("ES256 {name}, kid {kid:?}"),
            );
        }
    }
    // The same zero signature under the RSA key's kid: that key cannot verify ES256.
    let token = mint_raw(
        &json_bytes(&header("ES256", Some("rsa-1"))),
        &claims,
        Signer::Raw(&[0; 64]),
    );
    world.refused(
        &token,
        "bad_signature",
        "ES256 zero signature, kid of the RSA key",
    );
    world.finish();
}

// ---------------------------------------------------------------------------------------
// Keys from the token itself: jwk (CVE-2018-0114), jku, x5u, x5c.
// ---------------------------------------------------------------------------------------

#[test]
fn embedded_jwk_with_the_attackers_own_key_is_ignored() {
    let world = World::ready();
    let claims = world.claims();
    let attacker = TestKey::rsa("attacker-1");
    let attacker_ec = TestKey::p256("attacker-ec");
    let cases: Vec<(&str, Value, &TestKey, &str)> = vec![
        (
            "jwk, no kid",
            json!({"alg": "RS256", "typ": "JWT", "jwk": attacker.jwk()}),
            &attacker,
            "bad_signature",
        ),
        (
            "jwk and the attacker's kid",
            json!({"alg": "RS256", "typ": "JWT", "kid": "attacker-1", "jwk": attacker.jwk()}),
            &attacker,
            "unknown_key",
        ),
        (
            "jwk under the published kid",
            json!({"alg": "RS256", "typ": "JWT", "kid": "rsa-1",
                   "jwk": attacker.with_kid("rsa-1").jwk()}),
            &attacker,
            "bad_signature",
        ),
        (
            "EC jwk, no kid",
            json!({"alg": "ES256", "typ": "JWT", "jwk": attacker_ec.jwk()}),
            &attacker_ec,
            "bad_signature",
        ),
        (
            "EC jwk under the published EC kid",
            json!({"alg": "ES256", "typ": "JWT", "kid": "ec-1",
                   "jwk": attacker_ec.with_kid("ec-1").jwk()}),
            &attacker_ec,
            "bad_signature",
        ),
    ];
    for (what, header, key, reason) in cases {
        let token = mint_raw(&json_bytes(&header), &json_bytes(&claims), Signer::Key(key));
        world.refused(&token, reason, what);
    }
    world.finish();
}

#[test]
fn jku_and_x5u_are_never_fetched() {
    let world = World::ready();
    let claims = world.claims();
    // The attacker runs a real issuer whose JWKS holds the attacker's key, and a port that
    // counts every connection.
    let attacker = TestKey::rsa("attacker-1");
    let evil = TestIssuer::start_with_keys(vec![attacker.clone()]);
    let tripwire = ConnectionCounter::start();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "jku to the attacker's JWKS, attacker's kid",
            json!({"alg": "RS256", "kid": "attacker-1", "jku": evil.jwks_url()}),
            "unknown_key",
        ),
        (
            "jku to the attacker's issuer, published kid",
            json!({"alg": "RS256", "kid": "rsa-1", "jku": evil.url()}),
            "bad_signature",
        ),
        (
            "jku to the tripwire, no kid",
            json!({"alg": "RS256", "jku": tripwire.url("/jwks.json")}),
            "bad_signature",
        ),
        (
            "x5u to the tripwire, attacker's kid",
            json!({"alg": "RS256", "kid": "attacker-1", "x5u": tripwire.url("/cert.pem")}),
            "unknown_key",
        ),
        (
            "jku and x5u, published kid",
            json!({"alg": "RS256", "kid": "rsa-1", "jku": tripwire.url("/jwks"),
                   "x5u": tripwire.url("/x5u")}),
            "bad_signature",
        ),
    ];
    for (what, header, reason) in cases {
        let token = mint_raw(
            &json_bytes(&header),
            &json_bytes(&claims),
            Signer::Key(&attacker),
        );
        world.refused(&token, reason, what);
    }
    // Anything fetched would have been fetched while the request waited; allow a moment for
    // a stray background fetch anyway.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(evil.discovery_fetches(), 0, "the jku issuer was called");
    assert_eq!(evil.jwks_fetches(), 0, "the jku JWKS was fetched");
    assert_eq!(tripwire.connections(), 0, "a jku/x5u URL was called");
    world.finish();
}

#[test]
fn x5c_with_the_attackers_certificate_chain_is_ignored() {
    let world = World::ready();
    let claims = json_bytes(&world.claims());
    // The attacker's CA and a leaf for the issuer's name, with the leaf's P-256 key signing.
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let ca = rcgen::Issuer::new(ca_params, &ca_key);
    let leaf_key = rcgen::KeyPair::generate().expect("leaf key");
    let leaf =
        rcgen::CertificateParams::new(vec!["token.actions.githubusercontent.com".to_string()])
            .expect("leaf params")
            .signed_by(&leaf_key, &ca)
            .expect("leaf certificate");
    let signer = EcdsaKeyPair::from_pkcs8(
        &aws_sig::ECDSA_P256_SHA256_FIXED_SIGNING,
        &leaf_key.serialize_der(),
    )
    .expect("the leaf key as PKCS#8");
    let chain = vec![STANDARD.encode(leaf.der()), STANDARD.encode(ca_cert.der())];
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "x5c, no kid",
            json!({"alg": "ES256", "x5c": chain}),
            "bad_signature",
        ),
        (
            "x5c under the published EC kid",
            json!({"alg": "ES256", "kid": "ec-1", "x5c": chain}),
            "bad_signature",
        ),
        (
            "x5c with a kid of its own",
            json!({"alg": "ES256", "kid": "attacker-cert", "x5c": chain,
                   "x5t#S256": b64url(&[7; 32])}),
            "unknown_key",
        ),
    ];
    for (what, header, reason) in cases {
        let message = signing_input(&json_bytes(&header), &claims);
        let signature = signer
            .sign(&SystemRandom::new(), message.as_bytes())
            .expect("ECDSA signing");
        let token = format!("{message}.{}", b64url(signature.as_ref()));
        world.refused(&token, reason, what);
    }
    world.finish();
}

// ---------------------------------------------------------------------------------------
// kid injection.
// ---------------------------------------------------------------------------------------

#[test]
fn kid_with_path_traversal_sql_huge_length_or_nul_is_only_a_lookup_key() {
    let world = World::ready();
    let rsa = world.rsa();
    let claims = json_bytes(&world.claims());
    let long = "k".repeat(10_000);
    let kids: Vec<(&str, &str)> = vec![
        ("path traversal", "../../etc/passwd"),
        ("deep path traversal", "../../../../../../../../dev/null"),
        ("absolute path", "/etc/passwd"),
        ("encoded traversal", "..%2F..%2Fetc%2Fpasswd"),
        ("SQL", "' OR 1=1 --"),
        ("SQL with a statement", "x'; DROP TABLE keys; --"),
        ("a 10 000-character kid", &long),
        ("a NUL after the published kid", "rsa-1\u{0}"),
        ("only a NUL", "\u{0}"),
        ("a NUL then traversal", "rsa-1\u{0}../../etc/passwd"),
        ("CRLF", "rsa-1\r\nX-Injected: 1"),
        ("a URL", "http://127.0.0.1:1/jwks"),
        ("the published kid with a space", "rsa-1 "),
    ];
    let fetches = world.issuer.jwks_fetches();
    for (what, kid) in &kids {
        // Signed by the real key: only the kid is wrong.
        let token = mint_raw(
            &json_bytes(&header("RS256", Some(kid))),
            &claims,
            Signer::Key(&rsa),
        );
        let response = world.call(&token);
        assert_invalid_token(&response, "unknown_key", &token, what);
        let body = text(&response);
        assert!(
            !body.contains("passwd") && !body.contains("OR 1=1") && !body.contains("kkkk"),
            "{what}: the refusal echoes the kid: {body}"
        );
    }
    // The unknown-kid refetch is budgeted (one per second here): never one per request.
    let extra = world.issuer.jwks_fetches() - fetches;
    assert!(
        extra <= kids.len().div_ceil(2) + 1,
        "{extra} JWKS fetches for {} unknown kids",
        kids.len()
    );
    // No kid ever becomes a metric label.
    let metrics = text(&get(world.gateway.admin, "/metrics"));
    for needle in ["passwd", "OR 1=1", "DROP TABLE", "kkkkkkkk", "X-Injected"] {
        assert!(!metrics.contains(needle), "/metrics mentions {needle:?}");
    }
    world.finish();
}

// ---------------------------------------------------------------------------------------
// Malformed compact serialisation.
// ---------------------------------------------------------------------------------------

/// Changes the last character of a base64url part so that its unused low bits are not
/// zero: the same bytes for a lenient decoder, an error for a strict one. `None` when the
/// part has no unused bits (length a multiple of 4).
fn with_nonzero_padding_bits(part: &str) -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let unused_bits_mask = match part.len() % 4 {
        2 => 0b1111,
        3 => 0b11,
        _ => return None,
    };
    let last = *part.as_bytes().last()?;
    let value = ALPHABET.iter().position(|&c| c == last)?;
    let changed = ALPHABET[value | unused_bits_mask] as char;
    Some(format!("{}{changed}", &part[..part.len() - 1]))
}

/// Cuts a base64url part to a length that no base64 text can have (4k + 1).
fn with_impossible_length(part: &str) -> String {
    let mut cut = part.to_string();
    while cut.len() % 4 != 1 {
        cut.pop();
    }
    cut
}

#[test]
fn bad_base64_in_any_part_is_malformed() {
    let world = World::ready();
    let rsa = world.rsa();
    let claims = world.claims();
    let genuine = world.issuer.mint(claims.clone());
    let original = parts(&genuine);
    let middle = |part: &str, insert: &str| {
        let half = part.len() / 2;
        format!("{}{insert}{}", &part[..half], &part[half..])
    };
    // The same edits in each of the three parts.
    for (index, name) in ["header", "payload", "signature"].iter().enumerate() {
        let part = &original[index];
        let mut edits: Vec<(String, String)> = vec![
            ("padding `=`".into(), format!("{part}=")),
            ("padding `==`".into(), format!("{part}==")),
            ("`+` of the standard alphabet".into(), middle(part, "+")),
            ("`/` of the standard alphabet".into(), middle(part, "/")),
            ("`~`".into(), middle(part, "~")),
            ("`!`".into(), middle(part, "!")),
            ("`*`".into(), middle(part, "*")),
            ("`%`-encoding".into(), middle(part, "%41")),
            ("`,`".into(), middle(part, ",")),
            ("a non-ASCII character".into(), middle(part, "é")),
        ];
        if index != 1 {
            // Header and signature are decoded before anything is verified. (Payload
            // edits that stay in the alphabet change what the signature covers: below.)
            if let Some(loose) = with_nonzero_padding_bits(part) {
                edits.push(("non-zero padding bits".into(), loose));
            }
            edits.push(("an impossible length".into(), with_impossible_length(part)));
        }
        for (edit, replaced) in edits {
            let mut token_parts = original.clone();
            token_parts[index] = replaced;
            let token = token_parts.join(".");
            world.refused(&token, "malformed_token", &format!("{name}: {edit}"));
        }
    }
    // A payload that is not canonical base64url, under a signature that covers it: the
    // signature verifies, the payload does not decode.
    let header_bytes = json_bytes(&header("RS256", Some("rsa-1")));
    let payload = b64url(&json_bytes(&claims));
    let mut payloads = vec![("an impossible length", with_impossible_length(&payload))];
    if let Some(loose) = with_nonzero_padding_bits(&payload) {
        payloads.push(("non-zero padding bits", loose));
    }
    payloads.push(("an empty payload", String::new()));
    for (what, payload) in payloads {
        let message = format!("{}.{payload}", b64url(&header_bytes));
        let signature = rsa.sign(message.as_bytes());
        let token = format!("{message}.{}", b64url(&signature));
        world.refused(
            &token,
            "malformed_token",
            &format!("signed payload: {what}"),
        );
    }
    // The same payload edits without a matching signature fail at the signature first.
    let mut token_parts = original.clone();
    token_parts[1] = with_impossible_length(&original[1]);
    world.refused(
        &token_parts.join("."),
        "bad_signature",
        "payload edit under the old signature",
    );
    world.finish();
}

#[test]
fn wrong_number_of_parts_or_empty_parts_is_malformed() {
    let world = World::ready();
    let genuine = world.issuer.mint_github(AUD);
    let p = parts(&genuine);
    let (h, pl, s) = (&p[0], &p[1], &p[2]);
    let jwe_header = b64url(br#"{"alg":"RSA-OAEP","enc":"A256GCM","kid":"rsa-1"}"#);
    let cases: Vec<(&str, String, &str)> = vec![
        ("one part", h.clone(), "malformed_token"),
        ("two parts", format!("{h}.{pl}"), "malformed_token"),
        ("four parts", format!("{genuine}.{s}"), "malformed_token"),
        (
            "six parts",
            format!("{genuine}.{h}.{pl}.{s}"),
            "malformed_token",
        ),
        (
            "JWE compact, five parts",
            format!(
                "{jwe_header}.{}.{}.{}.{}",
                b64url(&[1; 256]),
                b64url(&[2; 12]),
                pl,
                b64url(&[3; 16])
            ),
            "malformed_token",
        ),
        ("only dots", "..".into(), "malformed_token"),
        ("many dots", ".....".into(), "malformed_token"),
        ("empty header", format!(".{pl}.{s}"), "malformed_token"),
        (
            "empty header and payload",
            format!("..{s}"),
            "malformed_token",
        ),
        ("a leading dot", format!(".{genuine}"), "malformed_token"),
        ("a trailing dot", format!("{genuine}."), "malformed_token"),
        ("a doubled dot", format!("{h}..{pl}.{s}"), "malformed_token"),
        // A well-formed header and payload with an empty or foreign signature are not
        // malformed: the signature is simply wrong.
        ("empty signature", format!("{h}.{pl}."), "bad_signature"),
        ("empty payload", format!("{h}..{s}"), "bad_signature"),
    ];
    for (what, token, reason) in cases {
        world.refused(&token, reason, what);
    }
    world.finish();
}

// ---------------------------------------------------------------------------------------
// Malformed JSON.
// ---------------------------------------------------------------------------------------

#[test]
fn duplicate_members_in_the_header_are_malformed() {
    let world = World::ready();
    let rsa = world.rsa();
    let claims = json_bytes(&world.claims());
    let headers: [(&str, &[u8]); 5] = [
        (
            "alg RS256 then none",
            br#"{"alg":"RS256","alg":"none","kid":"rsa-1"}"#,
        ),
        (
            "alg none then RS256",
            br#"{"alg":"none","alg":"RS256","kid":"rsa-1"}"#,
        ),
        (
            "alg RS256 twice",
            br#"{"alg":"RS256","alg":"RS256","kid":"rsa-1"}"#,
        ),
        (
            "kid twice",
            br#"{"alg":"RS256","kid":"attacker","kid":"rsa-1"}"#,
        ),
        (
            "the published kid twice",
            br#"{"alg":"RS256","kid":"rsa-1","kid":"rsa-1"}"#,
        ),
    ];
    for (what, header) in headers {
        // Signed by the issuer's real key: only the duplicate is wrong.
        let token = mint_raw(header, &claims, Signer::Key(&rsa));
        world.refused(&token, "malformed_token", what);
    }
    world.finish();
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

#[test]
fn duplicate_claims_in_the_payload_are_malformed() {
    // RFC 7519 §4 lets a parser either reject duplicate claim names or keep the last one;
    // a security gateway that already rejects duplicate header members should reject them
    // here too, so that no consumer with a first-wins parser (an upstream given the token
    // with strip_authorization = false, a log pipeline) can read another identity.
    let world = World::ready();
    let rsa = world.rsa();
    let claims = world.claims();
    let evil_aud = json!("https://other.example").to_string();
    let good_aud = json!(AUD).to_string();
    let evil_iss = json!("https://token.actions.githubusercontent.com").to_string();
    let good_iss = json!(world.issuer.url()).to_string();
    let header = json_bytes(&header("RS256", Some("rsa-1")));
    let members: Vec<(&str, &str, String)> = vec![
        (
            "aud: another service's, then ours",
            "aud",
            format!("{evil_aud},\"aud\":{good_aud}"),
        ),
        (
            "aud: ours, then another service's",
            "aud",
            format!("{good_aud},\"aud\":{evil_aud}"),
        ),
        (
            "iss: another issuer, then ours",
            "iss",
            format!("{evil_iss},\"iss\":{good_iss}"),
        ),
        (
            "iss: ours, then another issuer",
            "iss",
            format!("{good_iss},\"iss\":{evil_iss}"),
        ),
        (
            "repository_owner: evil, then acme",
            "repository_owner",
            "\"evil\",\"repository_owner\":\"acme\"".to_string(),
        ),
    ];
    // Issuer-signed: only the duplicate is wrong.
    let cases: Vec<(String, String)> = members
        .into_iter()
        .map(|(what, name, raw)| {
            let payload = with_raw_member(&claims, name, &raw);
            (
                what.to_string(),
                mint_raw(&header, &payload, Signer::Key(&rsa)),
            )
        })
        .collect();
    assert_all_malformed(&world, &cases);
    world.finish();
}

#[test]
fn huge_negative_fractional_and_textual_numeric_dates() {
    let world = World::ready();
    let rsa = world.rsa();
    let claims = world.claims();
    let header = json_bytes(&header("RS256", Some("rsa-1")));
    let huge = "99999999999999999999999";
    let cases: Vec<(&str, &str, String, &str)> = vec![
        ("exp 1e400", "exp", "1e400".into(), "malformed_token"),
        ("exp -1e400", "exp", "-1e400".into(), "malformed_token"),
        (
            "exp with 400 digits",
            "exp",
            format!("1{}", "0".repeat(400)),
            "malformed_token",
        ),
        ("iat 1e400", "iat", "1e400".into(), "malformed_token"),
        ("nbf 1e400", "nbf", "1e400".into(), "malformed_token"),
        ("exp -1", "exp", "-1".into(), "expired"),
        (
            "exp -99999999999999999999999",
            "exp",
            format!("-{huge}"),
            "expired",
        ),
        ("exp 1.5e9 (2017)", "exp", "1.5e9".into(), "expired"),
        ("exp 0", "exp", "0".into(), "expired"),
        (
            "exp as a string",
            "exp",
            format!("\"{}\"", support::issuer::now() + 300),
            "malformed_token",
        ),
        (
            "exp as a huge string",
            "exp",
            format!("\"{huge}\""),
            "malformed_token",
        ),
        ("exp true", "exp", "true".into(), "malformed_token"),
        ("exp null", "exp", "null".into(), "malformed_token"),
        (
            "exp an array",
            "exp",
            format!("[{}]", support::issuer::now() + 300),
            "malformed_token",
        ),
        (
            "iat 99999999999999999999999",
            "iat",
            huge.into(),
            "issued_in_future",
        ),
        (
            "nbf 99999999999999999999999",
            "nbf",
            huge.into(),
            "not_yet_valid",
        ),
        (
            "iat u64::MAX",
            "iat",
            u64::MAX.to_string(),
            "issued_in_future",
        ),
        (
            "nbf u64::MAX + 1",
            "nbf",
            "18446744073709551616".into(),
            "not_yet_valid",
        ),
    ];
    for (what, name, raw, reason) in cases {
        // Issuer-signed, so that the claim checks are reached.
        let token = mint_raw(
            &header,
            &with_raw_member(&claims, name, &raw),
            Signer::Key(&rsa),
        );
        world.refused(&token, reason, what);
    }
    world.finish();
}

#[test]
fn far_future_exp_saturates_and_max_token_age_still_bounds_it() {
    // Not an attack the gateway can refuse by itself: an issuer may sign any exp. What
    // matters is that exp + leeway does not overflow (saturating arithmetic), and that
    // max_token_age still bounds such a token by its iat.
    let mut world = World::ready_with("max_token_age = \"15m\"\n");
    let rsa = world.rsa();
    let claims = world.claims();
    let header = json_bytes(&header("RS256", Some("rsa-1")));
    for raw in ["99999999999999999999999", "18446744073709551615", "1e300"] {
        let token = mint_raw(
            &header,
            &with_raw_member(&claims, "exp", raw),
            Signer::Key(&rsa),
        );
        world.admitted(&token, &format!("exp {raw}, iat now"));
        let mut old = claims.clone();
        let twenty_minutes_ago = support::issuer::now() - 20 * 60;
        old["iat"] = json!(twenty_minutes_ago);
        old["nbf"] = json!(twenty_minutes_ago);
        let token = mint_raw(
            &header,
            &with_raw_member(&old, "exp", raw),
            Signer::Key(&rsa),
        );
        world.refused(&token, "expired", &format!("exp {raw}, iat 20 min ago"));
    }
    assert_eq!(world.upstream.hits(), 3);
    world.assert_alive();
}

/// `depth` opening brackets, then as many closing ones when `balanced`.
fn nested(depth: usize, open: &str, close: &str, balanced: bool) -> String {
    let mut text = open.repeat(depth);
    if balanced {
        text.push_str(&close.repeat(depth));
    }
    text
}

#[test]
fn deeply_nested_json_neither_overflows_nor_passes() {
    let world = World::ready();
    let rsa = world.rsa();
    let attacker = TestKey::rsa("rsa-1");
    let claims = world.claims();
    let arrays = nested(10_000, "[", "]", true);
    let objects = nested(5_000, "{\"a\":", "}", false) + "1" + &"}".repeat(5_000);
    let unbalanced = nested(40_000, "[", "]", false);

    // In the header. The whole header is parsed as JSON once (so that no member escapes
    // validation), and serde_json's recursion limit makes any deep nesting malformed,
    // without a stack overflow.
    let header_cases: Vec<(&str, String, &str)> = vec![
        (
            "10 000 nested arrays in an unknown header member",
            format!(r#"{{"alg":"RS256","kid":"rsa-1","x":{arrays}}}"#),
            "malformed_token",
        ),
        (
            "5 000 nested objects in an unknown header member",
            format!(r#"{{"alg":"RS256","kid":"rsa-1","x":{objects}}}"#),
            "malformed_token",
        ),
        (
            "10 000 nested arrays as alg",
            format!(r#"{{"alg":{arrays},"kid":"rsa-1"}}"#),
            "malformed_token",
        ),
        (
            "10 000 nested arrays as kid",
            format!(r#"{{"alg":"RS256","kid":{arrays}}}"#),
            "malformed_token",
        ),
        (
            "40 000 unterminated arrays",
            format!(r#"{{"alg":"RS256","kid":"rsa-1","x":{unbalanced}"#),
            "malformed_token",
        ),
        (
            "a header that is only arrays",
            arrays.clone(),
            "malformed_token",
        ),
    ];
    for (what, header, reason) in header_cases {
        let token = mint_raw(
            header.as_bytes(),
            &json_bytes(&claims),
            Signer::Key(&attacker),
        );
        world.refused(&token, reason, what);
    }

    // In the payload, signed by the issuer so that the claims are parsed: past the JSON
    // recursion limit, malformed.
    let header = json_bytes(&header("RS256", Some("rsa-1")));
    let payload_cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "10 000 nested arrays in a claim",
            with_raw_member(&claims, "deep", &arrays),
        ),
        (
            "5 000 nested objects in a claim",
            with_raw_member(&claims, "deep", &objects),
        ),
        (
            "10 000 nested arrays as sub",
            with_raw_member(&claims, "sub", &arrays),
        ),
        ("a payload that is only arrays", arrays.clone().into_bytes()),
        (
            "40 000 unterminated arrays",
            unbalanced.clone().into_bytes(),
        ),
    ];
    for (what, payload) in payload_cases {
        let token = mint_raw(&header, &payload, Signer::Key(&rsa));
        world.refused(&token, "malformed_token", what);
        // And forged: the signature fails before the payload is read.
        let forged = mint_raw(&header, &payload, Signer::Key(&attacker));
        world.refused(&forged, "bad_signature", &format!("{what}, forged"));
    }
    world.finish();
}

#[test]
fn non_utf8_header_or_payload_is_malformed() {
    let world = World::ready();
    let rsa = world.rsa();
    let claims = world.claims();
    let claims_text = claims.to_string();
    // Every header below is signed by the issuer's real key.
    let headers: Vec<(&str, Vec<u8>)> = vec![
        (
            "0xff in alg",
            b"{\"alg\":\"RS\xff256\",\"kid\":\"rsa-1\"}".to_vec(),
        ),
        (
            "0xff in kid",
            b"{\"alg\":\"RS256\",\"kid\":\"rsa-1\xff\"}".to_vec(),
        ),
        (
            "overlong UTF-8 '/' in kid",
            b"{\"alg\":\"RS256\",\"kid\":\"..\xc0\xafetc\"}".to_vec(),
        ),
        (
            "a lone surrogate escape in kid",
            b"{\"alg\":\"RS256\",\"kid\":\"\\ud800\"}".to_vec(),
        ),
        (
            "0xff between members",
            b"{\"alg\":\"RS256\",\xff\"kid\":\"rsa-1\"}".to_vec(),
        ),
        (
            "a UTF-8 byte-order mark",
            b"\xef\xbb\xbf{\"alg\":\"RS256\",\"kid\":\"rsa-1\"}".to_vec(),
        ),
        (
            "UTF-16",
            "{\"alg\":\"RS256\"}"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect(),
        ),
        (
            "Latin-1 bytes",
            b"{\"alg\":\"RS256\",\"kid\":\"r\xe9sa\"}".to_vec(),
        ),
    ];
    for (what, header) in headers {
        let token = mint_raw(&header, claims_text.as_bytes(), Signer::Key(&rsa));
        world.refused(&token, "malformed_token", &format!("header: {what}"));
    }
    // Payloads signed by the issuer's real key, with a valid header.
    let header = json_bytes(&header("RS256", Some("rsa-1")));
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        (
            "0xff in sub",
            raw_replace(
                &with_raw_member(&claims, "sub", "\"repo:@@\""),
                b"@@",
                b"\xff",
            ),
        ),
        (
            "a raw NUL byte in sub",
            with_raw_member(&claims, "sub", "\"repo:\u{0}\""),
        ),
        (
            "an escaped NUL in sub",
            with_raw_member(&claims, "sub", "\"repo:\\u0000\""),
        ),
        (
            "0xff in a claim value",
            raw_replace(
                &with_raw_member(&claims, "repository", "\"acme/app@@\""),
                b"@@",
                b"\xff\xfe",
            ),
        ),
        (
            "0xff in a claim name",
            raw_replace(&with_raw_member(&claims, "x@@", "1"), b"@@", b"\xff"),
        ),
        (
            "a lone surrogate escape",
            with_raw_member(&claims, "repository", "\"\\udc00\""),
        ),
        (
            "a byte-order mark",
            [b"\xef\xbb\xbf".as_slice(), claims_text.as_bytes()].concat(),
        ),
    ];
    for (what, payload) in payloads {
        let token = mint_raw(&header, &payload, Signer::Key(&rsa));
        // A NUL is valid UTF-8 and valid JSON ("\u0000"); it is refused later as a claim
        // that cannot be a header value.
        let reason = if what == "an escaped NUL in sub" {
            "unforwardable_claim"
        } else {
            "malformed_token"
        };
        world.refused(&token, reason, &format!("payload: {what}"));
    }
    world.finish();
}

/// `bytes` with every `from` replaced by `to`.
fn raw_replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

#[test]
fn non_utf8_in_an_unknown_header_member_is_malformed() {
    // RFC 7515 §4 and SPEC §3 step 6: the header must be JSON, which is UTF-8 (RFC 8259
    // §8.1); members jobgate skips are still part of it.
    let world = World::ready();
    let rsa = world.rsa();
    let attacker = TestKey::rsa("rsa-1");
    let claims = json_bytes(&world.claims());
    let headers: [(&str, &[u8]); 3] = [
        (
            "0xff in an unknown member",
            b"{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"x\":\"\xff\xfe\"}",
        ),
        (
            "0xff in typ",
            b"{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"typ\":\"JW\xffT\"}",
        ),
        (
            "a lone surrogate in an unknown member",
            b"{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"x\":\"\\ud800\"}",
        ),
    ];
    let mut cases = Vec::new();
    for (what, header) in headers {
        cases.push((
            format!("{what}, forged"),
            mint_raw(header, &claims, Signer::Key(&attacker)),
        ));
        cases.push((
            format!("{what}, issuer-signed"),
            mint_raw(header, &claims, Signer::Key(&rsa)),
        ));
    }
    assert_all_malformed(&world, &cases);
    world.finish();
}

#[test]
fn claims_of_the_wrong_json_type_are_malformed() {
    let world = World::ready();
    let cases: Vec<(&str, Value)> = vec![
        ("iss a number", json!({"iss": 42})),
        ("iss an object", json!({"iss": {"url": world.issuer.url()}})),
        (
            "iss an array of the right value",
            json!({"iss": [world.issuer.url()]}),
        ),
        ("aud an object", json!({"aud": {"aud": AUD}})),
        ("aud a number", json!({"aud": 1})),
        ("aud an array with null", json!({"aud": [AUD, null]})),
        ("aud an array with an array", json!({"aud": [AUD, [AUD]]})),
        (
            "sub an array",
            json!({"sub": ["repo:acme/app:environment:production"]}),
        ),
        ("sub a number", json!({"sub": 7})),
        ("jti an object", json!({"jti": {}})),
        ("nbf a string", json!({"nbf": "0"})),
        ("nbf a boolean", json!({"nbf": false})),
        ("iat a string", json!({"iat": "1700000000"})),
        ("exp an object", json!({"exp": {"seconds": 1}})),
    ];
    for (what, overrides) in cases {
        let token = world.issuer.mint_github_with(AUD, overrides);
        world.refused(&token, "malformed_token", what);
    }
    // A payload that is not an object at all.
    let rsa = world.rsa();
    let header = json_bytes(&header("RS256", Some("rsa-1")));
    for payload in ["[]", "null", "42", "\"claims\"", "true", ""] {
        let token = mint_raw(&header, payload.as_bytes(), Signer::Key(&rsa));
        world.refused(&token, "malformed_token", &format!("payload {payload:?}"));
    }
    world.finish();
}

#[test]
fn mod_auth_openidc_cases_missing_exp_or_iat_and_future_nbf_are_refused() {
    let world = World::ready();
    let now = support::issuer::now();
    world.refused(
        &world.issuer.mint_github_with(AUD, json!({"exp": null})),
        "malformed_token",
        "no exp",
    );
    world.refused(
        &world.issuer.mint_github_with(AUD, json!({"iat": null})),
        "malformed_token",
        "no iat",
    );
    world.refused(
        &world
            .issuer
            .mint_github_with(AUD, json!({"exp": null, "iat": null, "nbf": null})),
        "malformed_token",
        "no time claims at all",
    );
    // Beyond the 60 s leeway.
    world.refused(
        &world
            .issuer
            .mint_github_with(AUD, json!({"nbf": now + 120, "exp": now + 900})),
        "not_yet_valid",
        "nbf two minutes ahead",
    );
    world.refused(
        &world.issuer.mint_github_with(
            AUD,
            json!({"nbf": now + 86_400, "iat": now, "exp": now + 90_000}),
        ),
        "not_yet_valid",
        "nbf a day ahead",
    );
    world.finish();
}

// ---------------------------------------------------------------------------------------
// Keys and issuers that are not the route's.
// ---------------------------------------------------------------------------------------

#[test]
fn key_substitution_under_a_published_kid_is_refused() {
    let world = World::ready();
    let claims = world.claims();
    // A second RSA key the attacker made, under the published kid, signing a token that is
    // otherwise perfect.
    let impostor = TestKey::rsa("rsa-1");
    world.refused(
        &world.issuer.mint_with_key(&impostor, claims.clone()),
        "bad_signature",
        "another RSA key under kid rsa-1",
    );
    let ec_impostor = TestKey::p256("ec-1");
    world.refused(
        &world.issuer.mint_with_key(&ec_impostor, claims.clone()),
        "bad_signature",
        "another P-256 key under kid ec-1",
    );
    // Cross-type: the RSA kid with an ES256 token, the EC kid with an RS256 token, even
    // when the signature is valid for the attacker's key of the right type.
    let cross: Vec<(&str, Value, &TestKey)> = vec![
        (
            "ES256 under the RSA kid",
            header("ES256", Some("rsa-1")),
            &ec_impostor,
        ),
        (
            "RS256 under the EC kid",
            header("RS256", Some("ec-1")),
            &impostor,
        ),
    ];
    for (what, header, key) in cross {
        let token = mint_raw(&json_bytes(&header), &json_bytes(&claims), Signer::Key(key));
        world.refused(&token, "bad_signature", what);
    }
    // The genuine key with another RSA algorithm than the JWK's alg (RS256).
    let rsa = world.rsa();
    let token = mint_raw(
        &json_bytes(&header("RS384", Some("rsa-1"))),
        &json_bytes(&claims),
        Signer::KeyAs(&rsa, "RS384"),
    );
    world.refused(
        &token,
        "alg_not_allowed",
        "RS384 by the real key (not in the list)",
    );
    world.finish();
}

#[test]
fn tokens_meant_for_another_audience_or_from_another_issuer_are_refused() {
    let world = World::ready();
    // Our issuer's genuine token, minted for another service.
    world.refused(
        &world.issuer.mint_github("https://other-service.example"),
        "wrong_audience",
        "another service's audience",
    );
    world.refused(
        &world
            .issuer
            .mint_github_with(AUD, json!({"aud": ["https://other-service.example"]})),
        "wrong_audience",
        "an audience list without ours",
    );
    world.refused(
        &world
            .issuer
            .mint_github_with(AUD, json!({"aud": format!("{AUD}/")})),
        "wrong_audience",
        "our audience with a trailing slash",
    );
    // Another issuer's genuine tokens, for our audience.
    let other = TestIssuer::start_with_keys(vec![TestKey::rsa("other-1")]);
    world.refused(
        &other.mint_github(AUD),
        "unknown_key",
        "another issuer's token, its own kid",
    );
    let same_kid = TestIssuer::start_with_keys(vec![TestKey::rsa("rsa-1")]);
    world.refused(
        &same_kid.mint_github(AUD),
        "bad_signature",
        "another issuer's token under our kid",
    );
    let claiming_ours = same_kid.mint(world.claims());
    world.refused(
        &claiming_ours,
        "bad_signature",
        "another issuer's key claiming our iss",
    );
    assert_eq!(other.jwks_fetches() + same_kid.jwks_fetches(), 0);
    world.finish();
}

// ---------------------------------------------------------------------------------------
// The Envoy anchor: an outage is never a 401, and never a crash.
// ---------------------------------------------------------------------------------------

#[test]
fn issuer_outage_after_start_keeps_valid_tokens_working_and_is_never_a_401() {
    let mut world = World::ready();
    let valid = world.issuer.mint_github(AUD);
    world.admitted(&valid, "before the outage");
    let mut admitted = 1;
    for behaviour in [Behaviour::Fail, Behaviour::Garbage] {
        world.issuer.set_behaviour(behaviour);
        // Past min_refetch_interval, so that the unknown kid below asks for a refetch.
        std::thread::sleep(Duration::from_millis(1100));
        // Known keys keep serving: a token seen before (cached) and a fresh one.
        world.admitted(&valid, &format!("{behaviour:?}: cached token"));
        world.admitted(
            &world.issuer.mint_github(AUD),
            &format!("{behaviour:?}: fresh token"),
        );
        admitted += 2;
        // A kid that needs the failing refetch: an outage, not a bad token.
        let newcomer = TestKey::rsa(&format!("new-{behaviour:?}"));
        let token = world.issuer.mint_with_key(&newcomer, world.claims());
        world.unavailable(
            &token,
            &format!("{behaviour:?}: unknown kid, refetch fails"),
        );
        // Budget spent and the last fetch failed: still an outage.
        let another = TestKey::p256("another").with_kid(&format!("other-{behaviour:?}"));
        let token = world.issuer.mint_with_key(&another, world.claims());
        world.unavailable(&token, &format!("{behaviour:?}: unknown kid, budget spent"));
        // A forgery under a known kid is still judged: keys are there.
        let impostor = TestKey::rsa("rsa-1");
        world.refused(
            &world.issuer.mint_with_key(&impostor, world.claims()),
            "bad_signature",
            &format!("{behaviour:?}: forged under a known kid"),
        );
        world.assert_alive();
    }
    assert_eq!(world.upstream.hits(), admitted);
    world.issuer.heal();
    world.assert_alive();
}

#[test]
fn issuer_down_at_start_is_503_for_every_well_formed_token_never_401() {
    let issuer = World::issuer();
    issuer.fail();
    let mut world = World::start_with(issuer, "");
    let ready = get(world.gateway.admin, "/readyz");
    assert_eq!(ready.status, 503, "{}", text(&ready));
    let claims = world.claims();
    let rsa = world.rsa();
    let impostor = TestKey::rsa("rsa-1");
    let stranger = TestKey::rsa("stranger");
    let now = support::issuer::now();
    let expired = json!({"iat": now - 900, "nbf": now - 900, "exp": now - 600});
    let cases: Vec<(&str, String)> = vec![
        ("a valid token", world.issuer.mint(claims.clone())),
        (
            "a forged signature",
            world.issuer.mint_with_key(&impostor, claims.clone()),
        ),
        (
            "an unknown kid",
            world.issuer.mint_with_key(&stranger, claims.clone()),
        ),
        (
            "another audience",
            world.issuer.mint_github("https://other.example"),
        ),
        (
            "an expired token",
            world.issuer.mint_github_with(AUD, expired),
        ),
        (
            "an ES256 token",
            world.issuer.mint_with_key(&world.ec(), claims.clone()),
        ),
        (
            "no kid",
            mint_raw(
                &json_bytes(&header("RS256", None)),
                &json_bytes(&claims),
                Signer::Key(&rsa),
            ),
        ),
    ];
    // Several rounds: the key store keeps retrying; nothing changes the answer.
    for round in 0..3 {
        for (what, token) in &cases {
            world.unavailable(token, &format!("round {round}: {what}"));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // What cannot be a token at all, or is refused by name, is refused without keys.
    world.refused(
        "not-a-token",
        "malformed_token",
        "not a JWS, during the outage",
    );
    let none = mint_raw(
        &json_bytes(&header("none", None)),
        &json_bytes(&claims),
        Signer::Unsigned,
    );
    world.refused(&none, "alg_not_allowed", "alg none, during the outage");
    assert_eq!(world.upstream.hits(), 0);
    world.assert_alive();
    let ready = get(world.gateway.admin, "/readyz");
    assert_eq!(ready.status, 503, "{}", text(&ready));
    assert!(text(&ready).contains(ISSUER), "{}", text(&ready));
}
