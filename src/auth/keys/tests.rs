//! The key store against a real issuer on 127.0.0.1: discovery, refresh, single-flight
//! refetch for unknown kids, failures and stale keys; and the timing rules without a clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::fetch::*;
use super::refresh::*;
use super::store::*;
use crate::auth::keys::jwks::test_keys;
use crate::config::{IssuerConfig, IssuerKind};
use crate::refusal::Reason;

fn policy() -> RefreshPolicy {
    RefreshPolicy {
        refresh: Duration::from_secs(600),
        min_refetch_interval: Duration::from_secs(30),
        max_stale: Duration::from_secs(86_400),
        initial_backoff: Duration::from_secs(1),
    }
}

#[test]
fn success_schedule_uses_refresh_max_age_and_the_floor() {
    let p = policy();
    assert_eq!(p.after_success(None, 0.0), Duration::from_secs(600));
    assert_eq!(p.after_success(None, 1.0), Duration::from_secs(660));
    assert_eq!(p.after_success(None, -1.0), Duration::from_secs(540));
    // Jitter is clamped to ±10 %.
    assert_eq!(p.after_success(None, 5.0), Duration::from_secs(660));
    // A shorter max-age wins, a longer one does not.
    assert_eq!(
        p.after_success(Some(Duration::from_secs(120)), 0.0),
        Duration::from_secs(120)
    );
    assert_eq!(
        p.after_success(Some(Duration::from_secs(3600)), 0.0),
        Duration::from_secs(600)
    );
    // Never more often than min_refetch_interval, even for no-cache.
    assert_eq!(
        p.after_success(Some(Duration::ZERO), 0.0),
        Duration::from_secs(30)
    );
    assert_eq!(
        p.after_success(Some(Duration::from_secs(31)), -1.0),
        Duration::from_secs(30)
    );
    let zero = RefreshPolicy {
        min_refetch_interval: Duration::ZERO,
        ..p
    };
    assert_eq!(zero.after_success(Some(Duration::ZERO), 0.0), FLOOR);
}

#[test]
fn failure_backoff_doubles_up_to_refresh() {
    let p = policy();
    let delays: Vec<u64> = (1..=12)
        .map(|n| p.after_failure(n, 0.0).as_secs())
        .collect();
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
    assert_eq!(p.after_failure(u32::MAX, 0.0), Duration::from_secs(600));
    assert_eq!(p.after_failure(1, 1.0), Duration::from_millis(1100));
    assert_eq!(p.after_failure(1, -1.0), Duration::from_millis(900));
}

#[test]
fn keys_go_stale_after_max_stale() {
    let p = policy();
    let fetched = Instant::now();
    assert!(!p.is_stale(fetched, fetched));
    assert!(!p.is_stale(fetched, fetched + Duration::from_secs(86_399)));
    assert!(p.is_stale(fetched, fetched + Duration::from_secs(86_400)));
    assert_eq!(
        p.stale_at(fetched),
        Some(fetched + Duration::from_secs(86_400))
    );
}

#[test]
fn cache_control_max_age() {
    assert_eq!(
        cache_max_age("public, max-age=300"),
        Some(Duration::from_secs(300))
    );
    assert_eq!(
        cache_max_age("Max-Age = \"60\""),
        Some(Duration::from_secs(60))
    );
    assert_eq!(cache_max_age("no-store"), Some(Duration::ZERO));
    assert_eq!(cache_max_age("private, no-cache"), Some(Duration::ZERO));
    assert_eq!(cache_max_age("public"), None);
    assert_eq!(cache_max_age("max-age=soon"), None);
}

#[test]
fn fetch_urls_must_be_https_unless_loopback() {
    assert!(fetch_url("https://token.actions.githubusercontent.com/.well-known/jwks").is_ok());
    assert!(fetch_url("http://127.0.0.1:8080/jwks").is_ok());
    assert!(fetch_url("http://127.9.9.9/jwks").is_ok());
    assert!(fetch_url("http://[::1]:80/jwks").is_ok());
    assert!(fetch_url("http://LOCALHOST/jwks").is_ok());
    assert!(fetch_url("http://example.com/jwks").is_err());
    assert!(fetch_url("http://10.0.0.1/jwks").is_err());
    assert!(fetch_url("http://localhost.example.com/jwks").is_err());
    assert!(fetch_url("ftp://127.0.0.1/jwks").is_err());
    assert!(fetch_url("file:///etc/passwd").is_err());
    assert!(fetch_url("not a url").is_err());
}

// --- A minimal HTTP issuer for the store tests (the full one is in tests/support). ---

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Serve,
    Fail,
    Hang,
}

struct MiniIssuer {
    addr: std::net::SocketAddr,
    jwks: Arc<Mutex<String>>,
    mode: Arc<Mutex<Mode>>,
    discovery_hits: Arc<AtomicUsize>,
    jwks_hits: Arc<AtomicUsize>,
    cache_control: Arc<Mutex<Option<String>>>,
}

impl MiniIssuer {
    async fn start(jwks: serde_json::Value) -> MiniIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let issuer = MiniIssuer {
            addr,
            jwks: Arc::new(Mutex::new(jwks.to_string())),
            mode: Arc::new(Mutex::new(Mode::Serve)),
            discovery_hits: Arc::new(AtomicUsize::new(0)),
            jwks_hits: Arc::new(AtomicUsize::new(0)),
            cache_control: Arc::new(Mutex::new(None)),
        };
        let (jwks, mode, discovery_hits, jwks_hits, cache_control) = (
            Arc::clone(&issuer.jwks),
            Arc::clone(&issuer.mode),
            Arc::clone(&issuer.discovery_hits),
            Arc::clone(&issuer.jwks_hits),
            Arc::clone(&issuer.cache_control),
        );
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (jwks, mode, discovery_hits, jwks_hits, cache_control) = (
                    Arc::clone(&jwks),
                    Arc::clone(&mode),
                    Arc::clone(&discovery_hits),
                    Arc::clone(&jwks_hits),
                    Arc::clone(&cache_control),
                );
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&request).into_owned();
                    let mode = *mode.lock().expect("lock");
                    let (status, body) =
                        if head.starts_with("GET /.well-known/openid-configuration ") {
                            discovery_hits.fetch_add(1, Ordering::SeqCst);
                            let body = format!(
                                r#"{{"issuer":"http://{addr}","jwks_uri":"http://{addr}/jwks"}}"#
                            );
                            ("200 OK", body)
                        } else if head.starts_with("GET /jwks ") {
                            jwks_hits.fetch_add(1, Ordering::SeqCst);
                            match mode {
                                Mode::Serve => ("200 OK", jwks.lock().expect("lock").clone()),
                                Mode::Fail => ("500 Internal Server Error", String::from("{}")),
                                Mode::Hang => {
                                    tokio::time::sleep(Duration::from_secs(10)).await;
                                    return;
                                }
                            }
                        } else {
                            ("404 Not Found", String::new())
                        };
                    let extra = cache_control
                        .lock()
                        .expect("lock")
                        .as_ref()
                        .map(|value| format!("cache-control: {value}\r\n"))
                        .unwrap_or_default();
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        issuer
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_mode(&self, mode: Mode) {
        *self.mode.lock().expect("lock") = mode;
    }

    fn set_jwks(&self, jwks: serde_json::Value) {
        *self.jwks.lock().expect("lock") = jwks.to_string();
    }
}

fn issuer_config(url: &str, min_refetch: Duration) -> Arc<IssuerConfig> {
    Arc::new(IssuerConfig {
        name: "mini".into(),
        url: url.into(),
        jwks_url: None,
        kind: IssuerKind::Generic,
        server_url: "https://github.com".into(),
        algorithms: vec![Algorithm::RS256],
        leeway: Duration::from_secs(60),
        refresh: Duration::from_secs(600),
        min_refetch_interval: min_refetch,
        max_stale: Duration::from_secs(86_400),
        max_token_age: None,
        headers: Vec::new(),
    })
}

fn short_limits() -> FetchLimits {
    FetchLimits {
        connect_timeout: Duration::from_millis(500),
        total_timeout: Duration::from_secs(3),
        max_body_bytes: 64 * 1024,
    }
}

async fn wait_for_keys(store: &KeyStore) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store.has_keys() {
        assert!(Instant::now() < deadline, "no keys within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn jwks(kids: &[(&str, usize)]) -> serde_json::Value {
    let keys: Vec<_> = kids
        .iter()
        .map(|(kid, index)| test_keys::rsa_jwk(test_keys::rsa(*index), kid))
        .collect();
    serde_json::json!({ "keys": keys })
}

#[tokio::test]
async fn discovery_then_unknown_kid_refetch_is_single_flight_and_budgeted() {
    let issuer = MiniIssuer::start(jwks(&[("k1", 0)])).await;
    let store = Arc::new(KeyStore::start_with(
        issuer_config(&issuer.url(), Duration::from_secs(60)),
        short_limits(),
    ));
    wait_for_keys(&store).await;
    assert_eq!(issuer.discovery_hits.load(Ordering::SeqCst), 1);
    assert_eq!(issuer.jwks_hits.load(Ordering::SeqCst), 1);

    // The issuer rotates in k2: many concurrent requests cause one fetch.
    issuer.set_jwks(jwks(&[("k1", 0), ("k2", 1)]));
    let waits: Vec<_> = (0..20)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.refetch_for("k2").await.map(|s| s.generation) })
        })
        .collect();
    for wait in waits {
        assert_eq!(wait.await.expect("join"), Ok(2));
    }
    assert_eq!(issuer.jwks_hits.load(Ordering::SeqCst), 2);
    assert_eq!(issuer.discovery_hits.load(Ordering::SeqCst), 1);

    // Budget spent: an unknown kid is unknown_key at once, without a fetch.
    assert_eq!(
        store.refetch_for("k3").await.err(),
        Some(Reason::UnknownKey)
    );
    assert_eq!(issuer.jwks_hits.load(Ordering::SeqCst), 2);
    assert!(store.is_known_unknown("k3", 2));
    store.shutdown();
}

#[tokio::test]
async fn kid_unknown_after_a_successful_refetch_is_remembered() {
    let issuer = MiniIssuer::start(jwks(&[("k1", 0)])).await;
    let store = KeyStore::start_with(issuer_config(&issuer.url(), Duration::ZERO), short_limits());
    wait_for_keys(&store).await;
    assert_eq!(
        store.refetch_for("ghost").await.err(),
        Some(Reason::UnknownKey)
    );
    assert_eq!(issuer.jwks_hits.load(Ordering::SeqCst), 2);
    // Remembered: no new fetch even though the budget (0 s) allows one.
    assert_eq!(
        store.refetch_for("ghost").await.err(),
        Some(Reason::UnknownKey)
    );
    assert_eq!(issuer.jwks_hits.load(Ordering::SeqCst), 2);
    // Another kid does fetch, and a refresh (new generation) forgets "ghost".
    assert_eq!(
        store.refetch_for("other").await.err(),
        Some(Reason::UnknownKey)
    );
    assert_eq!(issuer.jwks_hits.load(Ordering::SeqCst), 3);
    let generation = store.current().as_ref().map(|s| s.generation);
    assert_eq!(generation, Some(3));
    assert!(!store.is_known_unknown("ghost", 3));
}

#[tokio::test]
async fn failed_or_slow_refetch_is_keys_unavailable_and_old_keys_keep_serving() {
    let issuer = MiniIssuer::start(jwks(&[("k1", 0)])).await;
    let store = KeyStore::start_with(issuer_config(&issuer.url(), Duration::ZERO), short_limits());
    wait_for_keys(&store).await;
    issuer.set_mode(Mode::Fail);
    assert_eq!(
        store.refetch_for("k2").await.err(),
        Some(Reason::KeysUnavailable)
    );
    assert!(store.has_keys(), "the old set still serves");
    // A failed JWKS fetch makes the next one rediscover.
    issuer.set_mode(Mode::Hang);
    let started = Instant::now();
    assert_eq!(
        store.refetch_for("k2").await.err(),
        Some(Reason::KeysUnavailable)
    );
    assert!(started.elapsed() < REFETCH_WAIT + Duration::from_millis(500));
    assert!(store.has_keys());
    assert_eq!(issuer.discovery_hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn budget_spent_after_a_failed_fetch_is_keys_unavailable() {
    let issuer = MiniIssuer::start(jwks(&[("k1", 0)])).await;
    let store = KeyStore::start_with(
        issuer_config(&issuer.url(), Duration::from_secs(60)),
        short_limits(),
    );
    wait_for_keys(&store).await;
    issuer.set_mode(Mode::Fail);
    assert_eq!(
        store.refetch_for("k2").await.err(),
        Some(Reason::KeysUnavailable)
    );
    assert_eq!(
        store.refetch_for("k3").await.err(),
        Some(Reason::KeysUnavailable)
    );
    assert_eq!(issuer.jwks_hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn no_keys_yet_is_keys_unavailable_and_a_bad_url_never_fetches() {
    let store = KeyStore::start_with(
        issuer_config("http://example.com", Duration::ZERO),
        short_limits(),
    );
    assert!(!store.has_keys());
    assert_eq!(
        store.refetch_for("k1").await.err(),
        Some(Reason::KeysUnavailable)
    );
}

#[tokio::test]
async fn oversized_and_garbage_bodies_are_refused() {
    let issuer = MiniIssuer::start(serde_json::json!({"keys": []})).await;
    let config = issuer_config(&issuer.url(), Duration::ZERO);
    let mut fetcher = Fetcher::new(Arc::clone(&config), short_limits()).expect("fetcher");
    assert!(matches!(
        fetcher.fetch().await,
        Err(FetchError::NoUsableKeys)
    ));
    issuer.set_jwks(serde_json::json!({"pad": "x".repeat(70 * 1024)}));
    assert!(matches!(
        fetcher.fetch().await,
        Err(FetchError::TooLarge(_))
    ));
    *issuer.jwks.lock().expect("lock") = String::from("<html>");
    assert!(matches!(fetcher.fetch().await, Err(FetchError::Jwks(_))));
    issuer.set_jwks(jwks(&[("k1", 0)]));
    *issuer.cache_control.lock().expect("lock") = Some("max-age=42".into());
    let fetched = fetcher.fetch().await.expect("a set");
    assert_eq!(fetched.keys.len(), 1);
    assert_eq!(fetched.max_age, Some(Duration::from_secs(42)));
}

#[tokio::test]
async fn fixed_store_never_fetches() {
    let config = issuer_config("https://issuer.example", Duration::ZERO);
    let keys = crate::auth::keys::jwks::parse_jwks(
        jwks(&[("k1", 0)]).to_string().as_bytes(),
        "t",
        &[Algorithm::RS256],
    )
    .expect("set");
    let store = KeyStore::with_keys(config, keys);
    assert!(store.has_keys());
    assert_eq!(
        store.refetch_for("k2").await.err(),
        Some(Reason::UnknownKey)
    );
}
