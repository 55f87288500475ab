//! What one token check costs: a cold RS256 verification (header, key choice, signature,
//! claims) against a cached one, and the whole `Authenticator` step for a cached token.
//! A raw aws-lc RS256 verify with a pre-parsed key is measured as the floor.
//!
//! `cargo bench --bench verify -- --warm-up-time 1 --measurement-time 3`

#[path = "../tests/support/issuer.rs"]
mod issuer;

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use jobgate::auth::keys::KeyStore;
use jobgate::auth::keys::jwks::{KeyChoice, KeySet, parse_jwks};
use jobgate::auth::verify::token_cache::{CacheCheck, TokenCache, TokenKey};
use jobgate::auth::verify::{
    Authenticator, check_request, check_signature, parse_claims, parse_header, verify_with_key,
};
use jobgate::config::{IssuerConfig, IssuerKind};
use jsonwebtoken::Algorithm;
use serde_json::json;

const ISS: &str = "https://token.actions.githubusercontent.com";
const AUD: &str = "https://deploy.internal.example";

struct Fixture {
    issuer: Arc<IssuerConfig>,
    keys: KeySet,
    key: issuer::TestKey,
    token: String,
    now: u64,
}

fn fixture() -> Fixture {
    let issuer = Arc::new(IssuerConfig {
        name: "github".into(),
        url: ISS.into(),
        jwks_url: None,
        kind: IssuerKind::Github,
        server_url: "https://github.com".into(),
        algorithms: vec![Algorithm::RS256],
        leeway: Duration::from_secs(60),
        refresh: Duration::from_secs(600),
        min_refetch_interval: Duration::from_secs(30),
        max_stale: Duration::from_secs(86_400),
        max_token_age: None,
        headers: Vec::new(),
    });
    let key = issuer::TestKey::rsa("bench-1");
    let other = issuer::TestKey::rsa("bench-2");
    let document = json!({"keys": [key.jwk(), other.jwk()]});
    let keys = parse_jwks(
        document.to_string().as_bytes(),
        "github",
        &issuer.algorithms,
    )
    .expect("a key set");
    // A realistic GitHub token: ~1 KB of claims.
    let claims = issuer::github_claims(ISS, AUD, &json!({}));
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "bench-1",
                        "x5t": "cgI9Mq7yyvpNZnHA4Vtk1nZ9Qbc"});
    let token = issuer::mint_with_header(&header, &claims, issuer::Signer::Key(&key));
    Fixture {
        issuer,
        keys,
        key,
        token,
        now: issuer::now(),
    }
}

/// Polls a future that is expected to finish without waiting (a cached token never waits).
fn poll_once<F: Future>(future: F) -> F::Output {
    let mut context = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a cached authentication waited"),
    }
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    println!("token length: {} bytes", f.token.len());
    let names = jobgate::auth::identity::wire_names(&f.issuer);

    c.bench_function("rs256_cold_verify", |b| {
        b.iter(|| {
            let (header, parts) =
                parse_header(black_box(&f.token), &f.issuer.algorithms).expect("header");
            let KeyChoice::Key(key) = f.keys.select(header.kid.as_deref(), header.alg) else {
                panic!("no key");
            };
            let verified =
                verify_with_key(&f.issuer, 1, &names, key, &header, &parts).expect("valid");
            check_request(&verified, &f.issuer, AUD, f.now).expect("accepted");
            verified
        })
    });

    let (header, parts) = parse_header(&f.token, &f.issuer.algorithms).expect("header");
    let KeyChoice::Key(key) = f.keys.select(header.kid.as_deref(), header.alg) else {
        panic!("no key");
    };
    c.bench_function("rs256_signature_only", |b| {
        b.iter(|| check_signature(black_box(&parts), key, Algorithm::RS256).expect("valid"))
    });

    // The JSON side of a cold verification, as `verify` does it: decode, parse with
    // duplicate names refused, claim types, `iss`, index.
    c.bench_function("claims_parse", |b| {
        b.iter(|| parse_claims(black_box(parts.payload), &f.issuer).expect("valid claims"))
    });

    let der = f.key.public_key_der();
    let parsed = aws_lc_rs::signature::ParsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        der,
    )
    .expect("public key");
    let (signing_input, signature) = f.token.rsplit_once('.').expect("three parts");
    let signature = issuer::b64url_decode(signature);
    c.bench_function("rs256_raw_aws_lc_parsed_key_floor", |b| {
        b.iter(|| {
            parsed
                .verify_sig(black_box(signing_input.as_bytes()), &signature)
                .expect("valid")
        })
    });

    // The cache alone: keyed hash, set lookup, byte compare, per-request checks.
    let cache = TokenCache::new(100_000);
    let verified =
        Arc::new(verify_with_key(&f.issuer, 1, &names, key, &header, &parts).expect("valid"));
    cache.insert(
        TokenKey::of(&f.token),
        &f.token,
        Arc::clone(&verified),
        f.now,
    );
    c.bench_function("cached_verify", |b| {
        b.iter(|| {
            let token = black_box(&f.token);
            let hit = cache
                .get(&TokenKey::of(token), token, f.now, |_| CacheCheck::Use)
                .expect("a hit");
            check_request(&hit, &f.issuer, AUD, f.now).expect("accepted");
            hit
        })
    });

    // The proxy's whole step: store lookup, cache, key-still-current check, checks, metric.
    let store = Arc::new(KeyStore::with_keys(
        Arc::clone(&f.issuer),
        parse_jwks(
            json!({"keys": [f.key.jwk()]}).to_string().as_bytes(),
            "github",
            &f.issuer.algorithms,
        )
        .expect("a key set"),
    ));
    let auth = Authenticator::from_stores(vec![store], Arc::new(TokenCache::new(100_000)));
    let first = poll_once(auth.authenticate(0, AUD, &f.token, f.now)).expect("accepted");
    assert!(!first.cache_hit);
    c.bench_function("authenticate_cached", |b| {
        b.iter(|| {
            let done =
                poll_once(auth.authenticate(0, AUD, black_box(&f.token), f.now)).expect("ok");
            debug_assert!(done.cache_hit);
            done
        })
    });
    c.bench_function("authenticate_cold_no_cache", |b| {
        let cold = Authenticator::from_stores(auth.stores().to_vec(), Arc::new(TokenCache::new(0)));
        b.iter(|| poll_once(cold.authenticate(0, AUD, black_box(&f.token), f.now)).expect("ok"))
    });
}

criterion_group!(verify, benches);
criterion_main!(verify);
