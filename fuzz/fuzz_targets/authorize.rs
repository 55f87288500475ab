//! The whole decision of an authenticated route (`authorize`): bearer extraction, header,
//! key choice, signature, claims, token cache, revocation, rules and identity headers.
//!
//! The gateway state is built once per process from a fixed config; its authenticator is
//! swapped for one whose issuer serves a fixed key set (an RSA and a P-256 key made at
//! start-up), so nothing touches the network. Inputs are either raw `Authorization` bytes
//! or a structured token (header and claims as JSON with fuzzed members) SIGNED WITH THE
//! REAL KEY, so the fuzzer gets past the signature check into claims, rules and headers.
//!
//! Checked on every input: no panic; a second, cached decision equals the first; an
//! admitted token really is from the issuer, for the route's audience, within its time
//! window; identity headers are visible ASCII only.
#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::{Arbitrary, Unstructured};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jobgate::proxy::authorize::authorize;
use jobgate::auth::claims::ClaimValue;
use jobgate::config::{Mode, RouteAuth};
use jobgate::auth::keys::jwks::parse_jwks;
use jobgate::auth::keys::KeyStore;
use jobgate::refusal::Reason;
use jobgate::policy::revocation::RevocationStore;
use jobgate::proxy::state::GatewayState;
use jobgate::auth::verify::token_cache::TokenCache;
use jobgate::auth::verify::Authenticator;
use jobgate_fuzz::{AUDIENCES, ISSUER, NOW, forwardable, parse_config, runtime};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

struct Fixture {
    state: GatewayState,
    rsa: RsaKeyPair,
    ec: EcdsaKeyPair,
    rng: SystemRandom,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rsa = RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA keygen");
        let ec = EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).expect("EC keygen");
        let components = sig::RsaPublicKeyComponents::<Vec<u8>>::from(rsa.public_key());
        let point = ec.public_key().as_ref();
        let jwks = json!({"keys": [
            {"kty": "RSA", "kid": "rsa-1", "use": "sig", "alg": "RS256",
             "n": b64(&components.n), "e": b64(&components.e)},
            {"kty": "EC", "kid": "ec-1", "use": "sig", "crv": "P-256",
             "x": b64(&point[1..33]), "y": b64(&point[33..65])},
        ]});
        let config = parse_config();
        let issuer = Arc::clone(&config.issuers[0]);
        let keys = parse_jwks(jwks.to_string().as_bytes(), "gh", &issuer.algorithms)
            .expect("the fuzz JWKS parses");
        assert_eq!(keys.len(), 2, "both fuzz keys usable");
        let mut state = GatewayState::build(config, None, Arc::new(RevocationStore::default()))
            .expect("the fuzz gateway state builds");
        // The fetching stores `build` started are dropped here (they stop); this issuer
        // serves the fixed key set and never fetches.
        let store = Arc::new(KeyStore::with_keys(issuer, keys));
        state.authenticator = Arc::new(Authenticator::from_stores(
            vec![store],
            Arc::new(TokenCache::new(1024)),
        ));
        Fixture {
            state,
            rsa,
            ec,
            rng: SystemRandom::new(),
        }
    })
}

/// A JSON value the fuzzer builds: mostly useful values, sometimes anything.
#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Known(u8),
    Text(String),
    List(Vec<Json>),
    Object(Vec<(String, Json)>),
}

/// Values the config's rules and the identity headers care about.
const KNOWN: &[&str] = &[
    "acme",
    "acme/app",
    "acme/other",
    "evil/app",
    "refs/heads/main",
    "refs/tags/v1.2",
    "refs/heads/wip/x",
    "production",
    "prod",
    "staging-12",
    "self-hosted",
    "github-hosted",
    "1",
    "true",
    "42",
    "1234567",
    "repo:acme/app:ref:refs/heads/main",
    ISSUER,
    "https://deploy.example",
    "https://shadow.example",
    "acme/app/.github/workflows/release.yml@refs/heads/main",
    "value\r\nx-injected: 1",
    "caf\u{e9}",
    "",
];

impl Json {
    fn to_value(&self, depth: u8) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(flag) => Value::Bool(*flag),
            Json::Int(number) => json!(number),
            Json::Float(number) => json!(number),
            Json::Known(index) => json!(KNOWN[usize::from(*index) % KNOWN.len()]),
            Json::Text(text) => json!(text),
            Json::List(items) if depth < 3 => {
                Value::Array(items.iter().map(|item| item.to_value(depth + 1)).collect())
            }
            Json::Object(members) if depth < 3 => Value::Object(
                members
                    .iter()
                    .map(|(name, value)| (name.clone(), value.to_value(depth + 1)))
                    .collect(),
            ),
            Json::List(_) | Json::Object(_) => Value::Null,
        }
    }
}

const CLAIM_NAMES: &[&str] = &[
    "iss",
    "aud",
    "sub",
    "exp",
    "iat",
    "nbf",
    "jti",
    "repository",
    "repository_owner",
    "repository_id",
    "ref",
    "ref_protected",
    "environment",
    "runner_environment",
    "run_attempt",
    "run_id",
    "check_run_id",
    "actor",
    "sha",
    "job_workflow_ref",
    "workflow_ref",
];

#[derive(Arbitrary, Debug)]
enum ClaimName {
    Known(u8),
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Alg {
    Rs256,
    Es256,
    None,
    Hs256,
    Other(String),
}

#[derive(Arbitrary, Debug)]
enum Kid {
    Absent,
    Rsa,
    Ec,
    Other(String),
    Json(Json),
}

#[derive(Arbitrary, Debug)]
enum Signer {
    Rsa,
    Ec,
    /// Arbitrary signature bytes.
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Time {
    Absent,
    /// Seconds relative to `NOW`.
    Relative(i32),
    Json(Json),
}

#[derive(Arbitrary, Debug)]
struct Structured {
    alg: Alg,
    kid: Kid,
    crit: bool,
    header_extra: Vec<(String, Json)>,
    signer: Signer,
    /// `iss`: the issuer's URL unless set.
    iss: Option<Json>,
    /// `aud`: the route's audience unless set.
    aud: Option<Json>,
    exp: Time,
    iat: Time,
    nbf: Time,
    /// The rule-relevant claims of an admitted `acme/app` job on main, unless cleared.
    good_base: bool,
    claims: Vec<(ClaimName, Json)>,
    /// Raw payload JSON instead of the claims object.
    raw_payload: Option<String>,
    /// Flip one byte of the finished token.
    tamper: Option<(u16, u8)>,
    /// Authorization scheme and spacing variants.
    scheme: u8,
}

#[derive(Arbitrary, Debug)]
enum Input {
    /// Authorization header values as given (NUL separates several).
    Raw(Vec<u8>),
    /// `Bearer ` then the bytes.
    Bearer(Vec<u8>),
    Structured(Box<Structured>),
}

#[derive(Arbitrary, Debug)]
struct Case {
    route: bool,
    /// Seconds relative to `NOW` at which the request arrives.
    now: i16,
    /// Decide twice: the second decision may come from the token cache.
    twice: bool,
    input: Input,
}

fn time(time: &Time, default: i64) -> Option<Value> {
    match time {
        Time::Absent if default == i64::MIN => None,
        Time::Absent => Some(json!(NOW as i64 + default)),
        Time::Relative(offset) => Some(json!(NOW as i64 + i64::from(*offset))),
        Time::Json(value) => Some(value.to_value(0)),
    }
}

fn build_token(fixture: &Fixture, input: &Structured, audience: &str) -> Vec<u8> {
    let mut header = Map::new();
    let alg = match &input.alg {
        Alg::Rs256 => json!("RS256"),
        Alg::Es256 => json!("ES256"),
        Alg::None => json!("none"),
        Alg::Hs256 => json!("HS256"),
        Alg::Other(name) => json!(name),
    };
    header.insert("alg".into(), alg);
    match &input.kid {
        Kid::Absent => {}
        Kid::Rsa => drop(header.insert("kid".into(), json!("rsa-1"))),
        Kid::Ec => drop(header.insert("kid".into(), json!("ec-1"))),
        Kid::Other(kid) => drop(header.insert("kid".into(), json!(kid))),
        Kid::Json(value) => drop(header.insert("kid".into(), value.to_value(0))),
    }
    if input.crit {
        header.insert("crit".into(), json!(["exp"]));
    }
    for (name, value) in input.header_extra.iter().take(4) {
        header.insert(name.clone(), value.to_value(0));
    }

    let payload = match &input.raw_payload {
        Some(raw) => raw.clone(),
        None => {
            let mut claims = Map::new();
            if input.good_base {
                for (name, value) in [
                    ("sub", "repo:acme/app:ref:refs/heads/main"),
                    ("repository", "acme/app"),
                    ("repository_owner", "acme"),
                    ("repository_id", "89012345"),
                    ("ref", "refs/heads/main"),
                    ("environment", "production"),
                    ("runner_environment", "github-hosted"),
                    ("run_id", "42"),
                    ("check_run_id", "7"),
                    ("run_attempt", "1"),
                    ("ref_protected", "true"),
                ] {
                    claims.insert(name.into(), json!(value));
                }
            }
            claims.insert(
                "iss".into(),
                input.iss.as_ref().map_or(json!(ISSUER), |v| v.to_value(0)),
            );
            claims.insert(
                "aud".into(),
                input
                    .aud
                    .as_ref()
                    .map_or(json!(audience), |v| v.to_value(0)),
            );
            for (name, value, default) in [
                ("exp", &input.exp, 300),
                ("iat", &input.iat, -10),
                ("nbf", &input.nbf, i64::MIN),
            ] {
                if let Some(value) = time(value, default) {
                    claims.insert(name.into(), value);
                }
            }
            for (name, value) in input.claims.iter().take(12) {
                let name = match name {
                    ClaimName::Known(index) => {
                        CLAIM_NAMES[usize::from(*index) % CLAIM_NAMES.len()].to_string()
                    }
                    ClaimName::Other(name) => name.clone(),
                };
                match value.to_value(0) {
                    Value::Null => drop(claims.remove(&name)),
                    value => drop(claims.insert(name, value)),
                }
            }
            Value::Object(claims).to_string()
        }
    };
    let message = format!(
        "{}.{}",
        b64(Value::Object(header).to_string().as_bytes()),
        b64(payload.as_bytes())
    );
    let signature = match &input.signer {
        Signer::Rsa => {
            let mut signature = vec![0; fixture.rsa.public_modulus_len()];
            fixture
                .rsa
                .sign(
                    &sig::RSA_PKCS1_SHA256,
                    &fixture.rng,
                    message.as_bytes(),
                    &mut signature,
                )
                .expect("RSA signing");
            signature
        }
        Signer::Ec => fixture
            .ec
            .sign(&fixture.rng, message.as_bytes())
            .expect("EC signing")
            .as_ref()
            .to_vec(),
        Signer::Bytes(bytes) => bytes.clone(),
    };
    let token = format!("{message}.{}", b64(&signature));
    let scheme = match input.scheme % 4 {
        0 => "Bearer ",
        1 => "bearer\t",
        2 => "  BEARER   ",
        _ => "Basic ",
    };
    let mut value = format!("{scheme}{token}").into_bytes();
    if let Some((at, byte)) = input.tamper {
        let len = value.len();
        value[usize::from(at) % len] ^= byte.max(1);
    }
    value
}

/// What a decision came to, comparable across the cached and the uncached path.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Allowed {
        would_deny: bool,
        rule: Option<String>,
        headers: Vec<(String, Vec<u8>)>,
    },
    Refused {
        reason: Reason,
        rule: Option<String>,
    },
}

fn decide(state: &GatewayState, auth: &RouteAuth, values: &[&[u8]], now: u64) -> Outcome {
    let result = runtime().block_on(authorize(state, auth, values.iter().copied(), now));
    match result {
        Ok(allowed) => {
            let issuer = &state.config.issuers[auth.issuer];
            let claims = &allowed.token.claims;
            // Admitted: genuinely this issuer's, for this audience, in its time window.
            assert_eq!(
                claims.text("iss"),
                Some(issuer.url.as_str()),
                "wrong iss admitted"
            );
            let audience_ok = match claims.get("aud") {
                Some(ClaimValue::Text(aud)) => aud == auth.audience,
                Some(ClaimValue::List(auds)) => auds.iter().any(|a| a == auth.audience),
                _ => false,
            };
            assert!(audience_ok, "wrong audience admitted");
            let leeway = issuer.leeway.as_secs();
            assert!(
                now < allowed.token.exp.saturating_add(leeway),
                "expired admitted"
            );
            assert!(allowed.token.iat <= now + leeway, "future iat admitted");
            if let Some(nbf) = allowed.token.nbf {
                assert!(nbf <= now + leeway, "not-yet-valid admitted");
            }
            if auth.mode == Mode::Enforce {
                assert!(
                    !allowed.would_deny,
                    "enforce mode let a denied request through"
                );
                assert!(
                    allowed.rule.is_some(),
                    "enforce mode admitted without a rule"
                );
            }
            let headers = match allowed.token.identity_headers() {
                Ok(headers) => headers,
                Err(reason) => panic!("admitted, but its identity headers fail: {reason:?}"),
            };
            for (name, value) in headers.iter(claims) {
                // Names are kept as the wire bytes Pingora writes; they come from the config.
                let name = std::str::from_utf8(name).expect("header names are ASCII");
                assert!(
                    forwardable(value.as_bytes()),
                    "header {name} has a value outside visible ASCII: {value:?}"
                );
                assert!(
                    state.spoof_filter.is_reserved(name),
                    "identity header {name} is not stripped from client requests"
                );
            }
            Outcome::Allowed {
                would_deny: allowed.would_deny,
                rule: allowed.rule.map(|rule| rule.to_string()),
                headers: headers
                    .iter(claims)
                    .map(|(name, value)| {
                        (String::from_utf8_lossy(name).into_owned(), value.as_bytes().to_vec())
                    })
                    .collect(),
            }
        }
        Err(refused) => Outcome::Refused {
            reason: refused.reason,
            rule: refused.rule.map(|rule| rule.to_string()),
        },
    }
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    let Ok(case) = Case::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let state = &fixture.state;
    let route = &state.config.routes[usize::from(case.route)];
    let Some(auth) = route.auth.as_ref() else {
        return;
    };
    debug_assert_eq!(auth.audience, AUDIENCES[usize::from(case.route)]);
    let now = NOW.saturating_add_signed(i64::from(case.now));
    let built;
    let values: Vec<&[u8]> = match &case.input {
        Input::Raw(bytes) => bytes.split(|&b| b == 0).collect(),
        Input::Bearer(bytes) => {
            built = [b"Bearer ".as_slice(), bytes].concat();
            vec![built.as_slice()]
        }
        Input::Structured(structured) => {
            built = build_token(fixture, structured, &auth.audience);
            vec![built.as_slice()]
        }
    };
    let first = decide(state, auth, &values, now);
    if case.twice {
        let second = decide(state, auth, &values, now);
        assert_eq!(first, second, "the cached decision differs from the first");
    }
});
