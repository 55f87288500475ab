//! The key stores in process, against the real test issuer over HTTP (SPEC §2 `refresh`,
//! §3 steps 6–7): what `tests/auth/` cannot see from outside the binary — whether a
//! request was a cache hit, how long an unknown-kid request waits for a hung issuer, how a
//! garbage JWKS is treated, and the schedule of refreshes (`Cache-Control: max-age`, a
//! dropped store stops fetching). Rotation, outages, `max_stale` and the refetch budget
//! end to end are in `tests/auth/keys.rs`.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use jobgate::auth::keys::{KeyStore, REFETCH_WAIT};
use jobgate::auth::verify::{AuthError, Authenticated, Authenticator};
use jobgate::config::{IssuerConfig, IssuerKind};
use jobgate::refusal::Reason;
use jsonwebtoken::Algorithm;
use support::issuer::{Behaviour, TestIssuer, TestKey, now};

const AUD: &str = "https://api.example";

fn config(issuer: &TestIssuer, min_refetch: Duration) -> Arc<IssuerConfig> {
    Arc::new(IssuerConfig {
        name: "test".into(),
        url: issuer.url(),
        jwks_url: None,
        kind: IssuerKind::Generic,
        server_url: "https://github.com".into(),
        algorithms: vec![Algorithm::RS256, Algorithm::ES256],
        leeway: Duration::from_secs(60),
        refresh: Duration::from_secs(600),
        min_refetch_interval: min_refetch,
        max_stale: Duration::from_secs(86_400),
        max_token_age: None,
        headers: Vec::new(),
    })
}

/// Waits (at most 20 s) until `check` holds.
#[track_caller]
fn wait_for(what: &str, check: impl FnMut() -> bool) {
    assert!(
        support::wait_until(Duration::from_secs(20), check),
        "{what}: not within 20 s"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a test runtime")
}

fn authenticate(
    rt: &tokio::runtime::Runtime,
    auth: &Authenticator,
    token: &str,
) -> Result<Authenticated, AuthError> {
    rt.block_on(auth.authenticate(0, AUD, token, now()))
}

#[track_caller]
fn refused(rt: &tokio::runtime::Runtime, auth: &Authenticator, token: &str) -> Reason {
    authenticate(rt, auth, token)
        .expect_err("the token is refused")
        .reason
}

/// Lets `min_refetch_interval` (1 s in these tests) pass, so the next unknown kid may ask
/// for a refetch of its own.
fn budget_passes() {
    std::thread::sleep(Duration::from_millis(1100));
}

#[test]
fn first_fetch_serves_rsa_and_ec_keys_and_a_second_use_is_a_cache_hit() {
    let issuer = TestIssuer::start();
    let p256 = issuer.add_p256_key("ec-1");
    let auth = Authenticator::new(&[config(&issuer, Duration::from_secs(1))], 1000);
    wait_for("keys", || auth.has_keys(0));
    assert_eq!(issuer.discovery_fetches(), 1);
    assert_eq!(issuer.jwks_fetches(), 1);
    let rt = runtime();

    let token = issuer.mint_github(AUD);
    let first = authenticate(&rt, &auth, &token).expect("a valid RS256 token");
    assert!(!first.cache_hit);
    assert_eq!(first.token.claims.text("check_run_id"), Some("52711234567"));
    let second = authenticate(&rt, &auth, &token).expect("the same token again");
    assert!(second.cache_hit, "the second use skips the signature check");

    let es = issuer.mint_with_key(&p256, issuer.github_claims(AUD));
    let es = authenticate(&rt, &auth, &es).expect("a valid ES256 token");
    assert!(!es.cache_hit);
    assert_eq!(issuer.jwks_fetches(), 1, "known kids cost no fetch");
    auth.shutdown();
}

#[test]
fn failed_garbage_or_hung_refetch_is_keys_unavailable_while_old_keys_serve() {
    let issuer = TestIssuer::start();
    let auth = Authenticator::new(&[config(&issuer, Duration::from_secs(1))], 1000);
    wait_for("keys", || auth.has_keys(0));
    let rt = runtime();
    let known = issuer.mint_github(AUD);
    assert!(authenticate(&rt, &auth, &known).is_ok());
    let newcomer = TestKey::rsa("newcomer");
    let unknown = issuer.mint_with_key(&newcomer, issuer.github_claims(AUD));

    // The issuer answers 500.
    issuer.fail();
    assert_eq!(refused(&rt, &auth, &unknown), Reason::KeysUnavailable);
    let hit = authenticate(&rt, &auth, &known).expect("old keys keep serving");
    assert!(hit.cache_hit);

    // The JWKS is not JSON (discovery still works).
    budget_passes();
    issuer.heal();
    issuer.set_jwks_behaviour(Behaviour::Garbage);
    let before = issuer.jwks_fetches();
    assert_eq!(refused(&rt, &auth, &unknown), Reason::KeysUnavailable);
    assert!(
        issuer.jwks_fetches() > before,
        "the garbage JWKS was fetched"
    );
    let fresh = issuer.mint_github(AUD);
    assert!(authenticate(&rt, &auth, &fresh).is_ok(), "old keys serve");

    // The issuer hangs longer than the fetch timeout: the request stops waiting on its
    // own, well before the fetch gives up (5 s) or the issuer answers (8 s).
    budget_passes();
    issuer.set_hang_duration(Duration::from_secs(8));
    issuer.set_behaviour(Behaviour::Hang);
    let started = Instant::now();
    assert_eq!(refused(&rt, &auth, &unknown), Reason::KeysUnavailable);
    let waited = started.elapsed();
    assert!(
        waited < REFETCH_WAIT + Duration::from_millis(2500),
        "an unknown-kid request waited {waited:?}"
    );
    assert!(auth.has_keys(0));

    // Healed: once a refetch succeeds, the same kid is a plain unknown key, not an outage.
    issuer.heal();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        budget_passes();
        match refused(&rt, &auth, &unknown) {
            Reason::UnknownKey => break,
            Reason::KeysUnavailable if Instant::now() < deadline => {}
            other => panic!("after healing: {other:?}"),
        }
    }
    auth.shutdown();
}

#[test]
fn max_age_shortens_the_refresh_and_a_dropped_store_stops_fetching() {
    let issuer = TestIssuer::start();
    issuer.set_cache_control(Some("public, max-age=1"));
    // `refresh` is 10 min: only the max-age can make it fetch this often.
    let store = KeyStore::start(config(&issuer, Duration::from_secs(1)));
    assert!(
        issuer.wait_for_jwks_fetches(3, Duration::from_secs(20)),
        "fetches: {}",
        issuer.jwks_fetches()
    );
    assert!(store.has_keys());
    drop(store);
    // A fetch already under way may still land.
    std::thread::sleep(Duration::from_millis(1000));
    let after = issuer.jwks_fetches();
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        issuer.jwks_fetches(),
        after,
        "a dropped store stops fetching"
    );
}
