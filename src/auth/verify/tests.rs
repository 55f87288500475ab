//! Token verification end to end: real keys, real signatures, every refusal of SPEC §3
//! step 6 in its order, and the cache.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::signature as aws_sig;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use super::authenticator::*;
use super::bearer::*;
use super::jose::*;
use super::payload::*;
use super::signature::*;
use super::token_cache::*;
use super::unverified::*;
use crate::auth::claims::Claims;
use crate::auth::keys::KeyStore;
use crate::auth::keys::jwks::KeyChoice;
use crate::auth::keys::jwks::test_keys::*;
use crate::auth::keys::jwks::{KeySet, parse_jwks};
use crate::config::{IssuerConfig, IssuerKind};
use crate::refusal::Reason;

const NOW: u64 = 1_760_000_000;
const ISS: &str = "https://token.actions.githubusercontent.com";
const AUD: &str = "https://deploy.internal.example";

#[test]
fn token68_class_is_exactly_rfc_9110() {
    for byte in 0..=u8::MAX {
        let expected = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
        assert_eq!(is_token68(byte), expected, "byte {byte:#04x}");
    }
    // A bad byte anywhere: in a whole chunk, in the remainder, first, last.
    let good = "a".repeat(100);
    for at in [0, 1, 31, 32, 63, 64, 95, 96, 99] {
        let mut bad = good.clone().into_bytes();
        bad[at] = b'!';
        assert!(!all_token68(&bad), "bad byte at {at}");
    }
    assert!(all_token68(good.as_bytes()));
    assert!(all_token68(b""));
    for byte in 0..=u8::MAX {
        let expected = byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_';
        assert_eq!(is_base64url_byte(byte), expected, "byte {byte:#04x}");
    }
}

/// The pre-parsed aws-lc key and `jsonwebtoken` agree on every signature, good or bad.
#[test]
fn parsed_key_path_agrees_with_jsonwebtoken() {
    let mut rsa_any_alg = rsa_jwk(rsa(0), "r");
    if let Some(members) = rsa_any_alg.as_object_mut() {
        members.remove("alg");
    }
    let jwks = json!({"keys": [rsa_any_alg, p256_jwk(p256(), "p")]});
    let keys = parse_jwks(
        jwks.to_string().as_bytes(),
        "test",
        &[Algorithm::RS256, Algorithm::PS256, Algorithm::ES256],
    )
    .expect("key set");
    let claims = json!({"sub": "x"});
    let rs256 = rs256(rsa(0), "r", &claims);
    let ps256 = token(&json!({"alg": "PS256", "kid": "r"}), &claims, |m| {
        sign_rsa(rsa(0), &aws_sig::RSA_PSS_SHA256, m)
    });
    let es256 = token(&json!({"alg": "ES256", "kid": "p"}), &claims, |m| {
        sign_p256(p256(), m)
    });
    let mut cases = Vec::new();
    for (token, alg, kid) in [
        (rs256, Algorithm::RS256, "r"),
        (ps256, Algorithm::PS256, "r"),
        (es256, Algorithm::ES256, "p"),
    ] {
        let (signing_input, signature) = token.rsplit_once('.').expect("three parts");
        let mut flipped = signature.as_bytes().to_vec();
        flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).expect("ascii");
        let variants = [
            (format!("{signing_input}.{signature}"), Ok(())),
            (
                format!("{signing_input}.{flipped}"),
                Err(Reason::BadSignature),
            ),
            (
                format!("{signing_input}x.{signature}"),
                Err(Reason::BadSignature),
            ),
            (
                format!("{signing_input}.{}", &signature[..20]),
                Err(Reason::BadSignature),
            ),
            (
                format!("{signing_input}.{signature}AAA"),
                Err(Reason::MalformedToken),
            ),
        ];
        cases.extend(variants.map(|(token, expected)| (token, alg, kid, expected)));
    }
    for (token, alg, kid, expected) in cases {
        let parts = split_token(&token).expect("well-formed");
        let KeyChoice::Key(key) = keys.select(Some(kid), alg) else {
            panic!("no key for {kid}");
        };
        assert_eq!(key.parsed_for(alg).is_some(), alg != Algorithm::PS256);
        assert_eq!(check_signature(&parts, key, alg), expected, "{alg:?}");
        assert_eq!(
            verify_with_library(&parts, key, alg),
            expected,
            "{alg:?} through jsonwebtoken"
        );
    }
}

#[test]
fn parsed_claims_match_the_json_object_and_refuse_duplicates() {
    let issuer = issuer_with(vec![Algorithm::RS256]);
    let payload = json!({
        "iss": ISS, "aud": [AUD, "other"], "sub": "repo:acme/app:ref:refs/heads/main",
        "exp": NOW + 300, "iat": NOW, "nbf": NOW - 5, "run_attempt": "1",
        "run_number": 7, "ok": true, "nothing": null, "nested": {"a": [1, {"b": 2}]},
        "mixed": [1, "x", null], "Zed": "upper", "émoji": "\u{1F600}",
    });
    let encoded = b64(payload.to_string().as_bytes());
    let (claims, times) = parse_claims(&encoded, &issuer).expect("valid payload");
    assert_eq!(
        claims,
        Claims::from_json_object(payload.as_object().expect("object"))
    );
    assert_eq!(
        (times.exp, times.iat, times.nbf),
        (NOW + 300, NOW, Some(NOW - 5))
    );

    let duplicate = format!(
        r#"{{"iss":"{ISS}","exp":{},"iat":{NOW},"sub":"a","sub":"b"}}"#,
        NOW + 300
    );
    assert_eq!(
        parse_claims(&b64(duplicate.as_bytes()), &issuer).map(|_| ()),
        Err(Reason::MalformedToken)
    );
    let wrong_issuer = json!({"iss": "https://evil.example", "exp": NOW + 300, "iat": NOW});
    assert_eq!(
        parse_claims(&b64(wrong_issuer.to_string().as_bytes()), &issuer).map(|_| ()),
        Err(Reason::WrongIssuer)
    );
    for not_an_object in ["[]", "\"text\"", "{} x", "{\"exp\": 1,}"] {
        assert_eq!(
            parse_claims(&b64(not_an_object.as_bytes()), &issuer).map(|_| ()),
            Err(Reason::MalformedToken),
            "{not_an_object}"
        );
    }
}

#[test]
fn bearer_refusal_reasons_keep_their_order() {
    fn bearer(value: &str, max: usize) -> Result<&str, Reason> {
        extract_bearer([value.as_bytes()], max)
    }
    assert_eq!(bearer("Bearer abc.def.ghi", 64), Ok("abc.def.ghi"));
    assert_eq!(bearer("Bearer abc def", 4), Err(Reason::InvalidRequest));
    assert_eq!(bearer("Bearer abc\tdef", 4), Err(Reason::InvalidRequest));
    assert_eq!(bearer("Bearer abc!def", 4), Err(Reason::TokenTooLarge));
    assert_eq!(bearer("Bearer abcdefgh", 4), Err(Reason::TokenTooLarge));
    assert_eq!(bearer("Bearer abc!", 64), Err(Reason::MalformedToken));
    assert_eq!(bearer("Bearer ab\u{e9}", 64), Err(Reason::MalformedToken));
    assert_eq!(bearer("Bearer   ", 64), Err(Reason::InvalidRequest));
}

fn issuer_with(algorithms: Vec<Algorithm>) -> Arc<IssuerConfig> {
    Arc::new(IssuerConfig {
        name: "github".into(),
        url: ISS.into(),
        jwks_url: None,
        kind: IssuerKind::Github,
        server_url: "https://github.com".into(),
        algorithms,
        leeway: Duration::from_secs(60),
        refresh: Duration::from_secs(600),
        min_refetch_interval: Duration::from_secs(30),
        max_stale: Duration::from_secs(86_400),
        max_token_age: None,
        headers: Vec::new(),
    })
}

fn key_set(algorithms: &[Algorithm]) -> KeySet {
    let document =
        json!({"keys": [rsa_jwk(rsa(0), "k1"), rsa_jwk(rsa(1), "k2"), p256_jwk(p256(), "ec1")]});
    parse_jwks(document.to_string().as_bytes(), "github", algorithms).expect("set")
}

fn authenticator_for(issuer: Arc<IssuerConfig>) -> Authenticator {
    let keys = key_set(&issuer.algorithms);
    let store = Arc::new(KeyStore::with_keys(issuer, keys));
    Authenticator::from_stores(vec![store], Arc::new(TokenCache::new(1000)))
}

fn authenticator() -> Authenticator {
    authenticator_for(issuer_with(vec![Algorithm::RS256]))
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "repo:acme/app:ref:refs/heads/main",
        "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 300,
        "repository": "acme/app", "repository_owner": "acme", "run_id": "42",
    })
}

fn with(overrides: Value) -> Value {
    let mut claims = claims();
    for (name, value) in overrides.as_object().expect("object") {
        if value.is_null() {
            claims.as_object_mut().expect("object").remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

fn good_token() -> String {
    rs256(rsa(0), "k1", &claims())
}

fn check(auth: &Authenticator, token: &str) -> Result<Authenticated, Reason> {
    check_at(auth, token, NOW)
}

fn check_at(auth: &Authenticator, token: &str, now: u64) -> Result<Authenticated, Reason> {
    match auth.authenticate_sync(0, AUD, token, now) {
        Some(result) => result,
        None => futures_lite_block_on(auth.authenticate(0, AUD, token, now)),
    }
    .map_err(|error| error.reason)
}

fn reason(auth: &Authenticator, token: &str) -> Reason {
    match check(auth, token) {
        Ok(_) => panic!("token was accepted"),
        Err(reason) => reason,
    }
}

fn header_token(header: Value, claims: &Value) -> String {
    token(&header, claims, |m| {
        sign_rsa(rsa(0), &aws_sig::RSA_PKCS1_SHA256, m)
    })
}

#[test]
fn good_token_is_accepted_then_cached() {
    let auth = authenticator();
    let token = good_token();
    let first = check(&auth, &token).expect("accepted");
    assert!(!first.cache_hit);
    assert_eq!(first.token.claims.text("repository"), Some("acme/app"));
    assert_eq!(first.token.kid(), Some("k1"));
    assert_eq!(first.token.exp, NOW + 300);
    assert_eq!(first.token.iat, NOW - 10);
    let second = check(&auth, &token).expect("accepted");
    assert!(second.cache_hit);
    assert!(Arc::ptr_eq(&first.token, &second.token));
}

#[test]
fn es256_token_is_accepted() {
    let auth = authenticator_for(issuer_with(vec![Algorithm::RS256, Algorithm::ES256]));
    let token = token(&json!({"alg": "ES256", "kid": "ec1"}), &claims(), |m| {
        sign_p256(p256(), m)
    });
    assert!(check(&auth, &token).is_ok());
}

#[test]
fn alg_none_is_refused_before_any_key() {
    let auth = authenticator();
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(claims().to_string().as_bytes());
    assert_eq!(
        reason(&auth, &format!("{header}.{payload}.")),
        Reason::AlgNotAllowed
    );
    let header = b64(br#"{"alg":"None"}"#);
    assert_eq!(
        reason(&auth, &format!("{header}.{payload}.")),
        Reason::AlgNotAllowed
    );
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let (n, _) = rsa_components(rsa(0));
    fn hmac(secret: &[u8]) -> impl FnOnce(&[u8]) -> Vec<u8> + '_ {
        move |message| {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
            aws_lc_rs::hmac::sign(&key, message).as_ref().to_vec()
        }
    }
    let der = {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::KeyPair;
        rsa(0).public_key().as_der().expect("der").as_ref().to_vec()
    };
    for secret in [n.as_slice(), der.as_slice()] {
        let forged = token(
            &json!({"alg": "HS256", "kid": "k1"}),
            &claims(),
            hmac(secret),
        );
        assert_eq!(reason(&authenticator(), &forged), Reason::AlgNotAllowed);
        // Even an issuer wrongly configured with HS256 never uses an RSA key for it.
        let careless = authenticator_for(issuer_with(vec![Algorithm::RS256, Algorithm::HS256]));
        assert_eq!(reason(&careless, &forged), Reason::BadSignature);
        let no_kid = token(&json!({"alg": "HS256"}), &claims(), hmac(secret));
        assert_eq!(reason(&careless, &no_kid), Reason::UnknownKey);
    }
}

#[test]
fn algorithms_outside_the_list_are_refused() {
    let auth = authenticator();
    let rs512 = token(&json!({"alg": "RS512", "kid": "k1"}), &claims(), |m| {
        sign_rsa(rsa(0), &aws_sig::RSA_PKCS1_SHA512, m)
    });
    assert_eq!(reason(&auth, &rs512), Reason::AlgNotAllowed);
    let ps256 = token(&json!({"alg": "PS256", "kid": "k1"}), &claims(), |m| {
        sign_rsa(rsa(0), &aws_sig::RSA_PSS_SHA256, m)
    });
    assert_eq!(reason(&auth, &ps256), Reason::AlgNotAllowed);
    assert_eq!(
        reason(&auth, &header_token(json!({"alg": "XYZ"}), &claims())),
        Reason::AlgNotAllowed
    );
    // A key is used only with an algorithm of its family: the RSA key k1 with ES256.
    let mixed = authenticator_for(issuer_with(vec![Algorithm::RS256, Algorithm::ES256]));
    let confused = token(&json!({"alg": "ES256", "kid": "k1"}), &claims(), |m| {
        sign_p256(p256(), m)
    });
    assert_eq!(reason(&mixed, &confused), Reason::BadSignature);
}

#[test]
fn tampering_is_a_bad_signature() {
    let auth = authenticator();
    let token = good_token();
    let (signing_input, signature) = token.rsplit_once('.').expect("three parts");
    let (header, _) = signing_input.split_once('.').expect("three parts");
    let evil = b64(with(json!({"repository_owner": "evil"}))
        .to_string()
        .as_bytes());
    assert_eq!(
        reason(&auth, &format!("{header}.{evil}.{signature}")),
        Reason::BadSignature
    );
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).expect("b64");
    bytes[10] ^= 1;
    assert_eq!(
        reason(&auth, &format!("{signing_input}.{}", b64(&bytes))),
        Reason::BadSignature
    );
    assert_eq!(
        reason(&auth, &format!("{signing_input}.")),
        Reason::BadSignature
    );
    // Signed by a key the issuer does not publish, under a published kid.
    assert_eq!(
        reason(&auth, &rs256(rsa(2), "k1", &claims())),
        Reason::BadSignature
    );
    // Signed by k2, claiming k1.
    assert_eq!(
        reason(&auth, &rs256(rsa(1), "k1", &claims())),
        Reason::BadSignature
    );
    assert!(check(&auth, &rs256(rsa(1), "k2", &claims())).is_ok());
}

#[test]
fn crit_is_malformed_and_key_url_parameters_are_ignored() {
    let auth = authenticator();
    let crit = header_token(
        json!({"alg": "RS256", "kid": "k1", "crit": ["exp"]}),
        &claims(),
    );
    assert_eq!(reason(&auth, &crit), Reason::MalformedToken);
    let crit_null = header_token(
        json!({"alg": "RS256", "kid": "k1", "crit": null}),
        &claims(),
    );
    assert_eq!(reason(&auth, &crit_null), Reason::MalformedToken);
    // The attacker's key, offered in every header parameter that can carry one.
    let attacker = rsa_jwk(rsa(2), "k1");
    let header = json!({"alg": "RS256", "kid": "k1", "jwk": attacker,
            "jku": "https://evil.example/jwks", "x5u": "https://evil.example/cert",
            "x5c": ["MIIB"]});
    let signed_by_attacker = token(&header, &claims(), |m| {
        sign_rsa(rsa(2), &aws_sig::RSA_PKCS1_SHA256, m)
    });
    assert_eq!(reason(&auth, &signed_by_attacker), Reason::BadSignature);
    let mut other_kid = header.clone();
    other_kid["kid"] = json!("attacker");
    let signed = token(&other_kid, &claims(), |m| {
        sign_rsa(rsa(2), &aws_sig::RSA_PKCS1_SHA256, m)
    });
    assert_eq!(reason(&auth, &signed), Reason::UnknownKey);
    // A genuine token carrying these parameters is fine: they are simply not read.
    let genuine = header_token(header, &claims());
    assert!(check(&auth, &genuine).is_ok());
}

#[test]
fn malformed_tokens() {
    let auth = authenticator();
    let good = good_token();
    let (signing_input, signature) = good.rsplit_once('.').expect("parts");
    let (_, payload) = signing_input.split_once('.').expect("parts");
    for bad in [
        String::new(),
        "abc".into(),
        "a.b".into(),
        format!("{good}.extra"),
        format!(".{payload}.{signature}"),
        format!("!!!.{payload}.{signature}"),
        format!("{}.{payload}.{signature}", b64(b"not json")),
        format!("{}.{payload}.{signature}", b64(br#"["RS256"]"#)),
        format!("{}.{payload}.{signature}", b64(br#"{"typ":"JWT"}"#)),
        format!("{}.{payload}.{signature}", b64(br#"{"alg":256}"#)),
        format!(
            "{}.{payload}.{signature}",
            b64(br#"{"alg":"RS256","alg":"none"}"#)
        ),
        format!(
            "{}.{payload}.{signature}",
            b64(br#"{"alg":"RS256","kid":7}"#)
        ),
        format!("{signing_input}.{signature}="),
        format!("{signing_input}.{signature}x"),
    ] {
        assert_eq!(reason(&auth, &bad), Reason::MalformedToken, "{bad:?}");
    }
}

#[test]
fn claim_types_and_required_claims() {
    let auth = authenticator();
    for overrides in [
        json!({"exp": null}),
        json!({"iat": null}),
        json!({"exp": "9999999999"}),
        json!({"iat": true}),
        json!({"nbf": "0"}),
        json!({"iss": 7}),
        json!({"aud": 7}),
        json!({"aud": [AUD, 7]}),
        json!({"sub": {"a": 1}}),
    ] {
        let token = rs256(rsa(0), "k1", &with(overrides.clone()));
        assert_eq!(reason(&auth, &token), Reason::MalformedToken, "{overrides}");
    }
    let not_object = header_token(json!({"alg": "RS256", "kid": "k1"}), &json!([1, 2]));
    assert_eq!(reason(&auth, &not_object), Reason::MalformedToken);
    // Fractional NumericDates are numbers too.
    let fractional = rs256(
        rsa(0),
        "k1",
        &with(json!({"exp": (NOW + 300) as f64 + 0.5})),
    );
    assert!(check(&auth, &fractional).is_ok());
}

#[test]
fn issuer_must_match_exactly() {
    let auth = authenticator();
    for iss in [
        json!(format!("{ISS}/")),
        json!("https://evil.example"),
        Value::Null,
    ] {
        let token = rs256(rsa(0), "k1", &with(json!({ "iss": iss })));
        assert_eq!(reason(&auth, &token), Reason::WrongIssuer, "{iss}");
    }
}

#[test]
fn audience_string_or_array() {
    let auth = authenticator();
    let wrong = rs256(rsa(0), "k1", &with(json!({"aud": "https://other.example"})));
    assert_eq!(reason(&auth, &wrong), Reason::WrongAudience);
    let missing = rs256(rsa(0), "k1", &with(json!({"aud": null})));
    assert_eq!(reason(&auth, &missing), Reason::WrongAudience);
    let array = rs256(rsa(0), "k1", &with(json!({"aud": ["x", AUD]})));
    assert!(check(&auth, &array).is_ok());
    let array_without = rs256(rsa(0), "k1", &with(json!({"aud": ["x", "y"]})));
    assert_eq!(reason(&auth, &array_without), Reason::WrongAudience);
    let empty = rs256(rsa(0), "k1", &with(json!({"aud": []})));
    assert_eq!(reason(&auth, &empty), Reason::WrongAudience);
}

#[test]
fn time_checks_with_leeway() {
    let auth = authenticator();
    let expired = rs256(rsa(0), "k1", &with(json!({"exp": NOW - 61})));
    assert_eq!(reason(&auth, &expired), Reason::Expired);
    let within_leeway = rs256(rsa(0), "k1", &with(json!({"exp": NOW - 59})));
    assert!(check(&auth, &within_leeway).is_ok());
    let at_leeway = rs256(rsa(0), "k1", &with(json!({"exp": NOW - 60})));
    assert_eq!(reason(&auth, &at_leeway), Reason::Expired);
    let not_yet = rs256(rsa(0), "k1", &with(json!({"nbf": NOW + 61})));
    assert_eq!(reason(&auth, &not_yet), Reason::NotYetValid);
    let nbf_in_leeway = rs256(rsa(0), "k1", &with(json!({"nbf": NOW + 60})));
    assert!(check(&auth, &nbf_in_leeway).is_ok());
    let future = rs256(rsa(0), "k1", &with(json!({"iat": NOW + 61, "nbf": null})));
    assert_eq!(reason(&auth, &future), Reason::IssuedInFuture);
    let iat_in_leeway = rs256(rsa(0), "k1", &with(json!({"iat": NOW + 60, "nbf": null})));
    assert!(check(&auth, &iat_in_leeway).is_ok());
    // Order of SPEC §3: audience before time.
    let both = rs256(rsa(0), "k1", &with(json!({"exp": NOW - 1000, "aud": "x"})));
    assert_eq!(reason(&auth, &both), Reason::WrongAudience);
}

#[test]
fn max_token_age() {
    let mut issuer = (*issuer_with(vec![Algorithm::RS256])).clone();
    issuer.max_token_age = Some(Duration::from_secs(900));
    let auth = authenticator_for(Arc::new(issuer));
    let old = rs256(
        rsa(0),
        "k1",
        &with(json!({"iat": NOW - 961, "nbf": null, "exp": NOW + 3600})),
    );
    assert_eq!(reason(&auth, &old), Reason::Expired);
    let fresh = rs256(
        rsa(0),
        "k1",
        &with(json!({"iat": NOW - 959, "nbf": null, "exp": NOW + 3600})),
    );
    assert!(check(&auth, &fresh).is_ok());
}

#[test]
fn key_selection_by_kid() {
    let auth = authenticator();
    let no_kid = token(&json!({"alg": "RS256"}), &claims(), |m| {
        sign_rsa(rsa(0), &aws_sig::RSA_PKCS1_SHA256, m)
    });
    // Two RSA keys: without kid there is no telling which.
    assert_eq!(reason(&auth, &no_kid), Reason::UnknownKey);
    let single = KeySet::from_keys(vec![
        crate::auth::keys::jwks::parse_key(&rsa_jwk(rsa(0), "k1"), &[Algorithm::RS256])
            .expect("key"),
    ]);
    let store = Arc::new(KeyStore::with_keys(
        issuer_with(vec![Algorithm::RS256]),
        single,
    ));
    let one_key = Authenticator::from_stores(vec![store], Arc::new(TokenCache::new(10)));
    assert!(check(&one_key, &no_kid).is_ok());
    // A fixed store never refetches: unknown kid is unknown_key.
    let unknown = rs256(rsa(0), "nope", &claims());
    let result = futures_lite_block_on(auth.authenticate(0, AUD, &unknown, NOW));
    assert_eq!(result.map_err(|e| e.reason).err(), Some(Reason::UnknownKey));
    assert!(auth.authenticate_sync(0, AUD, &unknown, NOW).is_none());
}

/// Runs a future that never waits on a timer (a fixed store never refetches).
fn futures_lite_block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

#[test]
fn cache_hit_still_checks_audience_and_time() {
    let auth = authenticator();
    let token = good_token();
    assert!(check(&auth, &token).is_ok());
    let other_route = auth
        .authenticate_sync(0, "https://other.example", &token, NOW)
        .expect("sync");
    let error = other_route.expect_err("refused");
    assert_eq!(error.reason, Reason::WrongAudience);
    assert!(error.cache_hit);
    assert!(error.verified.is_some());
    assert_eq!(
        check_at(&auth, &token, NOW + 400).err(),
        Some(Reason::Expired)
    );
}

#[test]
fn cache_entry_dies_with_its_key() {
    let issuer = issuer_with(vec![Algorithm::RS256]);
    let store = Arc::new(KeyStore::with_keys(
        Arc::clone(&issuer),
        key_set(&issuer.algorithms),
    ));
    let auth = Authenticator::from_stores(vec![Arc::clone(&store)], Arc::new(TokenCache::new(10)));
    let token = good_token();
    assert!(check(&auth, &token).is_ok());
    assert!(check(&auth, &token).expect("hit").cache_hit);
    // k1 rotated out: the cached entry is not used, and the token has no key now.
    let rotated = parse_jwks(
        json!({"keys": [rsa_jwk(rsa(1), "k2")]})
            .to_string()
            .as_bytes(),
        "github",
        &[Algorithm::RS256],
    )
    .expect("set");
    store.replace_keys(Some(rotated));
    assert_eq!(check(&auth, &token).err(), Some(Reason::UnknownKey));
    assert_eq!(auth.cache().len(), 0);
    // Same kid, new material: also a miss, then a bad signature.
    let reused_kid = parse_jwks(
        json!({"keys": [rsa_jwk(rsa(1), "k1")]})
            .to_string()
            .as_bytes(),
        "github",
        &[Algorithm::RS256],
    )
    .expect("set");
    store.replace_keys(Some(key_set(&issuer.algorithms)));
    assert!(check(&auth, &token).is_ok());
    store.replace_keys(Some(reused_kid));
    assert_eq!(check(&auth, &token).err(), Some(Reason::BadSignature));
    // No keys at all: an outage, not a bad token.
    store.replace_keys(None);
    assert_eq!(check(&auth, &token).err(), Some(Reason::KeysUnavailable));
    assert!(!auth.has_keys(0));
    assert_eq!(auth.issuers_without_keys(), ["github"]);
    // The header is still judged first.
    assert_eq!(check(&auth, "x.y.z").err(), Some(Reason::MalformedToken));
}

#[test]
fn a_token_cached_for_one_issuer_is_not_a_hit_for_another() {
    let github = issuer_with(vec![Algorithm::RS256]);
    let mut other = (*github).clone();
    other.name = "other".into();
    other.url = "https://other.example".into();
    let stores = vec![
        Arc::new(KeyStore::with_keys(
            Arc::clone(&github),
            key_set(&github.algorithms),
        )),
        Arc::new(KeyStore::with_keys(
            Arc::new(other),
            key_set(&github.algorithms),
        )),
    ];
    let auth = Authenticator::from_stores(stores, Arc::new(TokenCache::new(10)));
    let token = good_token();
    assert!(
        auth.authenticate_sync(0, AUD, &token, NOW)
            .expect("sync")
            .is_ok()
    );
    let second = auth.authenticate_sync(1, AUD, &token, NOW).expect("sync");
    let error = second.expect_err("refused");
    assert_eq!(error.reason, Reason::WrongIssuer);
    assert!(!error.cache_hit);
    // The entry for the first issuer survived.
    assert!(
        auth.authenticate_sync(0, AUD, &token, NOW)
            .expect("sync")
            .expect("ok")
            .cache_hit
    );
    // An index the config does not have is an outage, not a panic.
    let missing = auth.authenticate_sync(9, AUD, &token, NOW).expect("sync");
    assert_eq!(
        missing.err().map(|e| e.reason),
        Some(Reason::KeysUnavailable)
    );
}

#[test]
fn reload_keeps_unchanged_stores() {
    let github = issuer_with(vec![Algorithm::RS256]);
    let store = Arc::new(KeyStore::with_keys(
        Arc::clone(&github),
        key_set(&github.algorithms),
    ));
    let auth =
        Authenticator::from_stores(vec![Arc::clone(&store)], Arc::new(TokenCache::new(1000)));
    let token = good_token();
    assert!(check(&auth, &token).is_ok());
    // Equal settings in a new Arc: the same store, and the cached token is still a hit.
    let same = Arc::new((*github).clone());
    let reloaded = auth.reload(&[same], 1000);
    assert!(Arc::ptr_eq(&reloaded.stores()[0], &store));
    assert!(check(&reloaded, &token).expect("ok").cache_hit);
    let mut changed = (*github).clone();
    changed.leeway = Duration::from_secs(5);
    let changed = auth.reload(&[Arc::new(changed)], 1000);
    assert!(!Arc::ptr_eq(&changed.stores()[0], &store));
    changed.shutdown();
}

#[test]
fn bearer_extraction() {
    let max = 64;
    let one = |value: &'static str| extract_bearer([value.as_bytes()], max);
    assert_eq!(
        extract_bearer(std::iter::empty(), max),
        Err(Reason::MissingToken)
    );
    assert_eq!(one("Basic dXNlcjpwYXNz"), Err(Reason::MissingToken));
    assert_eq!(one(""), Err(Reason::MissingToken));
    assert_eq!(one("Bearerx abc"), Err(Reason::MissingToken));
    assert_eq!(one("Bearer a.b.c"), Ok("a.b.c"));
    assert_eq!(one("bEaReR   a.b.c  "), Ok("a.b.c"));
    assert_eq!(one("Bearer\ta.b.c"), Ok("a.b.c"));
    assert_eq!(one("Bearer"), Err(Reason::InvalidRequest));
    assert_eq!(one("Bearer   "), Err(Reason::InvalidRequest));
    assert_eq!(one("Bearer a.b.c d.e.f"), Err(Reason::InvalidRequest));
    assert_eq!(
        extract_bearer(
            [b"Bearer a.b.c".as_slice(), b"Bearer a.b.c".as_slice()],
            max
        ),
        Err(Reason::InvalidRequest)
    );
    assert_eq!(
        extract_bearer([b"Basic x".as_slice(), b"Bearer a.b.c".as_slice()], max),
        Err(Reason::InvalidRequest)
    );
    let long = format!("Bearer {}", "a".repeat(max + 1));
    assert_eq!(
        extract_bearer([long.as_bytes()], max),
        Err(Reason::TokenTooLarge)
    );
    let exact = format!("Bearer {}", "a".repeat(max));
    assert!(extract_bearer([exact.as_bytes()], max).is_ok());
    assert_eq!(
        extract_bearer([b"Bearer a.b\xff.c".as_slice()], max),
        Err(Reason::MalformedToken)
    );
    assert_eq!(one("Bearer a,b"), Err(Reason::MalformedToken));
}

#[test]
fn unverified_claims_for_the_audit_log() {
    let token = rs256(
        rsa(2),
        "k1",
        &with(json!({"run_id": 42, "jti": "j".repeat(300)})),
    );
    let claims = unverified_claims(&token);
    assert_eq!(claims.iss.as_deref(), Some(ISS));
    assert_eq!(claims.repository.as_deref(), Some("acme/app"));
    assert_eq!(claims.run_id.as_deref(), Some("42"));
    assert_eq!(claims.jti.map(|j| j.len()), Some(256));
    assert_eq!(claims.check_run_id, None);
    assert_eq!(unverified_claims("garbage"), UnverifiedClaims::default());
}

#[test]
fn arbitrary_bytes_never_panic() {
    let auth = authenticator();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let alphabet = b"ABCxyz019-_.={}\":,[] ";
    for length in 0..400 {
        let text: String = (0..length)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                char::from(alphabet[(seed % alphabet.len() as u64) as usize])
            })
            .collect();
        let _ = auth.authenticate_sync(0, AUD, &text, NOW);
        let header = b64(text.as_bytes());
        let _ = auth.authenticate_sync(0, AUD, &format!("{header}.{header}.{header}"), NOW);
    }
}

/// The claims of a GitHub Actions job token, as `benches/load/mint.py` makes them (35
/// claims, a ~1.9 KB token once signed).
fn github_claims() -> Value {
    json!({
        "jti": "6f0d1c2e-0000-4000-8000-000000000007", "sub": "repo:acme/app:environment:production",
        "aud": AUD, "ref": "refs/heads/main", "sha": "3f786850e387550fdab836ed7e6dc881de23001b",
        "repository": "acme/app", "repository_owner": "acme", "repository_owner_id": "51234567",
        "run_id": "14000000007", "run_number": "107", "run_attempt": "1",
        "repository_visibility": "private", "repository_id": "812345678", "actor_id": "7654321",
        "actor": "octocat", "workflow": "release", "head_ref": "", "base_ref": "",
        "event_name": "push", "ref_protected": "true", "ref_type": "branch",
        "workflow_ref": "acme/app/.github/workflows/release.yml@refs/heads/main",
        "workflow_sha": "3f786850e387550fdab836ed7e6dc881de23001b",
        "job_workflow_ref": "acme/app/.github/workflows/release.yml@refs/heads/main",
        "job_workflow_sha": "3f786850e387550fdab836ed7e6dc881de23001b",
        "runner_environment": "github-hosted", "environment": "production",
        "environment_node_id": "EN_kwDOABCDEF4AAAAB", "check_run_id": "40000000007",
        "iss": ISS, "nbf": NOW - 5, "exp": NOW + 7200, "iat": NOW - 5,
    })
}

/// Issue #14: a cached GitHub token keeps its claims, the parts of the token the cache
/// compares and its identity headers in under 2 KiB of heap (the stored token alone was
/// ~1.9 KB, and all of it ~8 KiB with a `String` per claim and a header value per header),
/// and the headers it gives are exactly those the list form builds.
#[test]
fn a_cached_github_token_is_compact_and_gives_the_same_headers() {
    use crate::auth::identity::identity_headers;
    use crate::config::validate::DEFAULT_GITHUB_HEADERS;
    let headers = DEFAULT_GITHUB_HEADERS
        .iter()
        .map(|(name, claim)| {
            let name = http::HeaderName::from_bytes(name.as_bytes()).expect("a header name");
            (name, (*claim).to_owned())
        })
        .collect();
    let issuer = Arc::new(IssuerConfig {
        headers,
        ..(*issuer_with(vec![Algorithm::RS256])).clone()
    });
    let auth = authenticator_for(Arc::clone(&issuer));
    let token = rs256(rsa(0), "k1", &github_claims());
    let verified = check(&auth, &token).expect("accepted").token;
    let heap = verified.heap_bytes();
    // 1 969 bytes when written: the decoded payload (~1.06 KB), the signature (256), the
    // header segment, the job URL, the claim index (35 × 12) and the header slots (16 × 8).
    assert!(
        heap < 2_048,
        "{heap} bytes of heap for a {}-byte token",
        token.len()
    );
    let built: Vec<(String, String)> = verified
        .identity_headers()
        .expect("forwardable")
        .iter(&verified.claims)
        .map(|(name, value)| {
            let name = String::from_utf8(name.to_vec()).expect("ascii");
            (name, value.to_str().expect("ascii").to_owned())
        })
        .collect();
    let listed: Vec<(String, String)> = identity_headers(&issuer, &verified.claims, "r")
        .expect("forwardable")
        .into_iter()
        .filter(|(name, _)| name.as_str() != "x-jobgate-route")
        .map(|(name, value)| (name.to_string(), value.to_str().expect("ascii").to_owned()))
        .collect();
    assert_eq!(built, listed);
    assert!(built.len() >= 15, "{built:?}");
    assert!(built.contains(&(
        "x-github-job-url".to_owned(),
        "https://github.com/acme/app/actions/runs/14000000007/job/40000000007".to_owned()
    )));
    assert!(check(&auth, &token).expect("a hit").cache_hit);
}
