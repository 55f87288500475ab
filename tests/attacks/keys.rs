//! Keys the token chooses: keys embedded or referenced in its header (`jwk`, CVE-2018-0114;
//! `jku`, `x5u`, `x5c`), a kid that is an injection, key substitution under a published kid,
//! and genuine tokens meant for someone else.

use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as aws_sig, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::support::expect;
use crate::support::issuer::{Signer, TestIssuer, TestKey, b64url, mint_raw};
use crate::support::raw::RawServer;
use crate::{AUD, ROUTE, Siege, header, json_bytes, ready, signing_input};

#[test]
fn embedded_jwk_with_the_attackers_own_key_is_ignored() {
    let world = ready();
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
    let world = ready();
    let claims = world.claims();
    // The attacker runs a real issuer whose JWKS holds the attacker's key, and a port that
    // counts every connection.
    let attacker = TestKey::rsa("attacker-1");
    let evil = TestIssuer::start_with_keys(vec![attacker.clone()]);
    let tripwire = RawServer::tripwire();
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
            json!({"alg": "RS256", "jku": tripwire.url_of("/jwks.json")}),
            "bad_signature",
        ),
        (
            "x5u to the tripwire, attacker's kid",
            json!({"alg": "RS256", "kid": "attacker-1", "x5u": tripwire.url_of("/cert.pem")}),
            "unknown_key",
        ),
        (
            "jku and x5u, published kid",
            json!({"alg": "RS256", "kid": "rsa-1", "jku": tripwire.url_of("/jwks"),
                   "x5u": tripwire.url_of("/x5u")}),
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
    let world = ready();
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

#[test]
fn kid_with_path_traversal_sql_huge_length_or_nul_is_only_a_lookup_key() {
    let world = ready();
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
    let fetches = world.issuer().jwks_fetches();
    for (what, kid) in &kids {
        // Signed by the real key: only the kid is wrong.
        let token = mint_raw(
            &json_bytes(&header("RS256", Some(kid))),
            &claims,
            Signer::Key(&rsa),
        );
        let response = world.call(&token);
        expect::invalid_token(&response, "unknown_key", ROUTE, &token, what);
        let body = response.text();
        assert!(
            !body.contains("passwd") && !body.contains("OR 1=1") && !body.contains("kkkk"),
            "{what}: the refusal echoes the kid: {body}"
        );
    }
    // The unknown-kid refetch is budgeted (one per second here): never one per request.
    let extra = world.issuer().jwks_fetches() - fetches;
    assert!(
        extra <= kids.len().div_ceil(2) + 1,
        "{extra} JWKS fetches for {} unknown kids",
        kids.len()
    );
    // No kid ever becomes a metric label.
    let metrics = world.metrics_page();
    for needle in ["passwd", "OR 1=1", "DROP TABLE", "kkkkkkkk", "X-Injected"] {
        assert!(!metrics.contains(needle), "/metrics mentions {needle:?}");
    }
    world.finish();
}

#[test]
fn key_substitution_under_a_published_kid_is_refused() {
    let world = ready();
    let claims = world.claims();
    // A second RSA key the attacker made, under the published kid, signing a token that is
    // otherwise perfect.
    let impostor = TestKey::rsa("rsa-1");
    world.refused(
        &world.issuer().mint_with_key(&impostor, claims.clone()),
        "bad_signature",
        "another RSA key under kid rsa-1",
    );
    let ec_impostor = TestKey::p256("ec-1");
    world.refused(
        &world.issuer().mint_with_key(&ec_impostor, claims.clone()),
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
    let world = ready();
    // Our issuer's genuine token, minted for another service.
    world.refused(
        &world.issuer().mint_github("https://other-service.example"),
        "wrong_audience",
        "another service's audience",
    );
    world.refused(
        &world
            .issuer()
            .mint_github_with(AUD, json!({"aud": ["https://other-service.example"]})),
        "wrong_audience",
        "an audience list without ours",
    );
    world.refused(
        &world
            .issuer()
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
