//! Header and signature attacks (SPEC §3 step 6): algorithms outside the list, tampering,
//! impostor keys, `crit`, and key references the gateway must never follow.

use serde_json::json;

use crate::support::issuer::{Signer, TestIssuer, TestKey, b64url, mint_with_header, now};
use crate::support::raw::RawServer;
use crate::{AUD, Api, flip_char, mint_header, payload, ready};

#[test]
fn alg_none_is_refused() {
    let world = ready();
    let claims = world.issuer().github_claims(AUD);
    for alg in ["none", "None", "NONE"] {
        let token = mint_with_header(
            &json!({"alg": alg, "typ": "JWT", "kid": "rsa-1"}),
            &claims,
            Signer::Unsigned,
        );
        world.assert_invalid_token(&token, "alg_not_allowed");
    }
    assert_eq!(world.upstream().hits(), 0);
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let world = ready();
    let key = world.issuer().signing_key();
    let claims = world.issuer().github_claims(AUD);
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": key.kid()});
    let der = key.public_key_der();
    let pem = key.public_key_pem();
    for secret in [der.as_slice(), pem.as_bytes()] {
        let token = mint_with_header(&header, &claims, Signer::Hs256(secret));
        world.assert_invalid_token(&token, "alg_not_allowed");
    }
    assert_eq!(world.upstream().hits(), 0);
}

#[test]
fn rs512_outside_the_allowed_list_is_refused() {
    let world = ready();
    let key = world.issuer().signing_key();
    let token = mint_with_header(
        &json!({"alg": "RS512", "typ": "JWT", "kid": key.kid()}),
        &world.issuer().github_claims(AUD),
        Signer::KeyAs(&key, "RS512"),
    );
    world.assert_invalid_token(&token, "alg_not_allowed");
    assert_eq!(world.upstream().hits(), 0);
}

#[test]
fn tampered_payload_is_refused() {
    let world = ready();
    let token = world.token();
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
    assert_eq!(world.upstream().hits(), 0);
    // The genuine token still passes: the forgeries did not poison anything.
    world.assert_admits(&token);
}

#[test]
fn tampered_signature_is_refused() {
    let world = ready();
    let token = world.token();
    world.assert_invalid_token(&flip_char(&token, 2), "bad_signature");
    assert_eq!(world.upstream().hits(), 0);
}

#[test]
fn signature_of_another_key_under_a_published_kid_is_refused() {
    let world = ready();
    // Same kid as the published key, different key material, never published.
    let impostor = TestKey::rsa("rsa-1");
    let token = world.token_signed_by(&impostor);
    world.assert_invalid_token(&token, "bad_signature");
    assert_eq!(world.upstream().hits(), 0);
}

#[test]
fn crit_header_is_refused() {
    let world = ready();
    let key = world.issuer().signing_key();
    let claims = world.issuer().github_claims(AUD);
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
    assert_eq!(world.upstream().hits(), 0);
}

#[test]
fn jku_x5u_x5c_and_jwk_headers_are_never_followed() {
    let world = ready();
    // The attacker runs a real issuer whose JWKS has the attacker's key, and a port that
    // counts every connection.
    let attacker_key = TestKey::rsa("evil-1");
    let evil = TestIssuer::start_with_keys(vec![attacker_key.clone()]);
    let counter = RawServer::tripwire();
    let claims = world.issuer().github_claims(AUD);

    // The attacker's kid, with its JWKS named by jku: the kid stays unknown.
    let by_jku = mint_header(
        &attacker_key,
        json!({"alg": "RS256", "typ": "JWT", "kid": "evil-1", "jku": evil.jwks_url(),
               "x5u": counter.url_of("/cert.pem")}),
        &claims,
    );
    world.assert_invalid_token(&by_jku, "unknown_key");

    // The published kid, with the attacker's key embedded and pointed to.
    let impostor = attacker_key.with_kid("rsa-1");
    let embedded = mint_header(
        &impostor,
        json!({"alg": "RS256", "typ": "JWT", "kid": "rsa-1", "jwk": impostor.jwk(),
               "jku": counter.url_of("/jwks"), "x5u": counter.url_of("/x5u"),
               "x5c": [b64url(&impostor.public_key_der())]}),
        &claims,
    );
    world.assert_invalid_token(&embedded, "bad_signature");

    // No kid at all: the only published RSA key is used, never the embedded one.
    let kidless = mint_header(
        &attacker_key,
        json!({"alg": "RS256", "typ": "JWT", "jwk": attacker_key.jwk(),
               "jku": evil.jwks_url(), "x5u": counter.url_of("/x5u")}),
        &claims,
    );
    world.assert_invalid_token(&kidless, "bad_signature");

    assert_eq!(world.upstream().hits(), 0);
    assert_eq!(evil.discovery_fetches(), 0, "the jku issuer was called");
    assert_eq!(evil.jwks_fetches(), 0, "the jku JWKS was fetched");
    assert_eq!(counter.connections(), 0, "an x5u/jku URL was called");
}
