//! Per-issuer key stores: where the keys that verify tokens come from, and how they stay
//! fresh (SPEC §2 issuer settings, §3 steps 6–7).
//!
//! A [`KeyStore`] publishes its issuer's current [`KeySet`] behind an `ArcSwapOption`, so
//! every Pingora worker thread reads it without a lock. The network work runs on a thread
//! and tokio runtime of the store's own: Pingora has several runtimes, and a fetch must not
//! depend on which one a request happens to run on. Requests only signal the worker and
//! wait on a `watch` channel, which works across runtimes.
//!
//! The worker fetches at start (nobody waits for it: until keys arrive, verification
//! answers `keys_unavailable`), then every `refresh` (jittered ±10 %, sooner when the
//! JWKS's `Cache-Control: max-age` is shorter, never more often than
//! `min_refetch_interval`). A failed fetch is retried with jittered exponential backoff
//! while the old set keeps serving; after `max_stale` without a success the set is dropped
//! and the issuer fails closed. An unknown `kid` asks for one single-flight refetch per
//! `min_refetch_interval`; a kid still unknown after a successful refetch is remembered
//! (in a bounded set) until the next refresh. The timing rules are pure functions of
//! [`RefreshPolicy`], unit-tested without a clock.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use prometheus::{IntCounter, IntGauge};
use reqwest::Url;
use tokio::sync::{Notify, watch};

use crate::config::IssuerConfig;
use crate::jwks::{JwksError, KeySet, parse_jwks, printable_kid};
use crate::metrics::metrics;
use crate::refusal::Reason;

/// How long a request waits for an unknown-kid refetch (SPEC §3 step 6).
pub const REFETCH_WAIT: Duration = Duration::from_secs(2);

/// Kids remembered as unknown until the next refresh; beyond this, new ones are not
/// remembered (the refetch budget still limits what they cost).
const MAX_UNKNOWN_KIDS: usize = 1024;
/// Longer kids are never remembered: they cannot be real and would cost memory.
const MAX_REMEMBERED_KID_BYTES: usize = 256;

/// Limits of one HTTP fetch (discovery or JWKS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    pub connect_timeout: Duration,
    /// The whole request, body included.
    pub total_timeout: Duration,
    /// Larger bodies are refused while they are read, not after.
    pub max_body_bytes: usize,
}

impl Default for FetchLimits {
    fn default() -> FetchLimits {
        FetchLimits {
            connect_timeout: Duration::from_secs(2),
            total_timeout: Duration::from_secs(5),
            max_body_bytes: 1024 * 1024,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Scheduling: pure arithmetic, the worker supplies the clock and the randomness.
// ---------------------------------------------------------------------------------------

/// The refresh timing rules of one issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshPolicy {
    pub refresh: Duration,
    pub min_refetch_interval: Duration,
    pub max_stale: Duration,
    /// The first retry delay after a failure; it doubles per failure up to `refresh`.
    pub initial_backoff: Duration,
}

/// No schedule ever fetches more often than this, whatever the config or the issuer's
/// `max-age` say: a zero interval must not become a busy loop.
const FLOOR: Duration = Duration::from_secs(1);

impl RefreshPolicy {
    pub fn of(issuer: &IssuerConfig) -> RefreshPolicy {
        RefreshPolicy {
            refresh: issuer.refresh,
            min_refetch_interval: issuer.min_refetch_interval,
            max_stale: issuer.max_stale,
            initial_backoff: Duration::from_secs(1),
        }
    }

    /// Delay from a successful fetch to the next scheduled one. `jitter` in [-1, 1] moves
    /// it by up to ±10 %.
    pub fn after_success(&self, max_age: Option<Duration>, jitter: f64) -> Duration {
        let base = match max_age {
            Some(max_age) if max_age < self.refresh => max_age,
            _ => self.refresh,
        };
        jittered(base, jitter)
            .max(self.min_refetch_interval)
            .max(FLOOR)
    }

    /// Delay from the `failures`-th consecutive failed fetch (1 for the first) to the
    /// next attempt: `initial_backoff` doubled per failure, at most `refresh`, ±10 %.
    pub fn after_failure(&self, failures: u32, jitter: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.refresh.max(self.initial_backoff));
        jittered(base, jitter).max(Duration::from_millis(100))
    }

    /// When keys last fetched at `last_success` stop being served.
    pub fn stale_at(&self, last_success: Instant) -> Option<Instant> {
        last_success.checked_add(self.max_stale)
    }

    /// Whether keys last fetched at `last_success` must be dropped at `now`.
    pub fn is_stale(&self, last_success: Instant, now: Instant) -> bool {
        now.saturating_duration_since(last_success) >= self.max_stale
    }
}

fn jittered(base: Duration, jitter: f64) -> Duration {
    let factor = 1.0 + 0.1 * jitter.clamp(-1.0, 1.0);
    base.mul_f64(factor)
}

/// A jitter value in [-1, 1].
fn random_jitter() -> f64 {
    fastrand::f64() * 2.0 - 1.0
}

/// The freshness lifetime a `Cache-Control` header grants: `max-age=N`, or zero for
/// `no-cache`/`no-store`. `None` when it says nothing about it.
pub fn cache_max_age(cache_control: &str) -> Option<Duration> {
    let mut result = None;
    for directive in cache_control.split(',') {
        let directive = directive.trim();
        if directive.eq_ignore_ascii_case("no-cache") || directive.eq_ignore_ascii_case("no-store")
        {
            return Some(Duration::ZERO);
        }
        if let Some((name, value)) = directive.split_once('=')
            && name.trim().eq_ignore_ascii_case("max-age")
            && result.is_none()
        {
            result = value
                .trim()
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    result
}

// ---------------------------------------------------------------------------------------
// URLs and the fetcher.
// ---------------------------------------------------------------------------------------

/// Whether `url`'s host is loopback (127.0.0.0/8, `::1`, `localhost`), where SPEC §2
/// allows plain `http://`.
pub fn is_loopback(url: &Url) -> bool {
    // `Url` has already normalised the host (IPv4 forms like `127.1`, IPv6 brackets).
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Parses a URL that keys may be fetched from: `https://`, or `http://` on loopback.
pub fn fetch_url(text: &str) -> Result<Url, FetchError> {
    let url = Url::parse(text).map_err(|_| FetchError::BadUrl(bounded(text)))?;
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        _ => Err(FetchError::BadUrl(bounded(text))),
    }
}

fn bounded(text: &str) -> String {
    printable_kid(text)
}

/// Why one refresh failed. Messages name URLs from the config or the issuer's discovery
/// document, never key material.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("not an https URL (http only on loopback): {0:?}")]
    BadUrl(String),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("response body larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Transport(String),
    #[error("discovery document: {0}")]
    Discovery(&'static str),
    #[error(transparent)]
    Jwks(#[from] JwksError),
    #[error("the JWKS has no usable key")]
    NoUsableKeys,
    #[error("cannot start the fetcher: {0}")]
    Setup(String),
}

impl From<reqwest::Error> for FetchError {
    /// Keeps the cause chain ("operation timed out", "connection refused"), which is
    /// what an operator needs, in one line.
    fn from(error: reqwest::Error) -> FetchError {
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        message.truncate(message.floor_char_boundary(512));
        FetchError::Transport(message)
    }
}

/// One successful JWKS fetch.
#[derive(Debug)]
pub struct Fetched {
    pub keys: KeySet,
    pub max_age: Option<Duration>,
}

/// Fetches one issuer's JWKS, through discovery unless `jwks_url` is set. The discovered
/// `jwks_uri` is kept and looked up again only after a failed JWKS fetch.
struct Fetcher {
    issuer: Arc<IssuerConfig>,
    client: reqwest::Client,
    limits: FetchLimits,
    configured: Option<Url>,
    discovered: Option<Url>,
}

impl Fetcher {
    fn new(issuer: Arc<IssuerConfig>, limits: FetchLimits) -> Result<Fetcher, FetchError> {
        let configured = issuer.jwks_url.as_deref().map(fetch_url).transpose()?;
        let issuer_url = fetch_url(&issuer.url)?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(limits.connect_timeout)
            .timeout(limits.total_timeout)
            .user_agent(concat!("jobgate/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                // Same scheme only (no https → http downgrade), and the same URL rules
                // as the config.
                let same_scheme = attempt
                    .previous()
                    .first()
                    .is_none_or(|first| first.scheme() == attempt.url().scheme());
                if attempt.previous().len() >= 5 {
                    attempt.error("too many redirects")
                } else if same_scheme && fetch_url(attempt.url().as_str()).is_ok() {
                    attempt.follow()
                } else {
                    attempt.error("redirect to a disallowed URL")
                }
            }));
        // A test or demo issuer on loopback must not be sent through an HTTP(S)_PROXY.
        if is_loopback(&issuer_url) && configured.as_ref().is_none_or(is_loopback) {
            builder = builder.no_proxy();
        }
        let client = builder
            .build()
            .map_err(|error| FetchError::Setup(error.to_string()))?;
        Ok(Fetcher {
            issuer,
            client,
            limits,
            configured,
            discovered: None,
        })
    }

    async fn fetch(&mut self) -> Result<Fetched, FetchError> {
        let jwks_uri = match (&self.configured, &self.discovered) {
            (Some(url), _) | (None, Some(url)) => url.clone(),
            (None, None) => {
                let url = self.discover().await?;
                self.discovered = Some(url.clone());
                url
            }
        };
        let result = self.fetch_jwks(jwks_uri).await;
        if result.is_err() {
            self.discovered = None;
        }
        result
    }

    async fn discover(&self) -> Result<Url, FetchError> {
        let url = fetch_url(&format!(
            "{}/.well-known/openid-configuration",
            self.issuer.url.trim_end_matches('/')
        ))?;
        let (body, _) = self.get(url).await?;
        let document: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| FetchError::Discovery("not JSON"))?;
        if let Some(issuer) = document.get("issuer").and_then(|v| v.as_str())
            && issuer != self.issuer.url
        {
            tracing::warn!(
                issuer = %self.issuer.name,
                discovered = %bounded(issuer),
                "the discovery document names another issuer; tokens must still carry the configured url"
            );
        }
        let jwks_uri = document
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or(FetchError::Discovery("no jwks_uri"))?;
        fetch_url(jwks_uri)
    }

    async fn fetch_jwks(&self, url: Url) -> Result<Fetched, FetchError> {
        let (body, max_age) = self.get(url).await?;
        let keys = parse_jwks(&body, &self.issuer.name, &self.issuer.algorithms)?;
        if keys.is_empty() {
            return Err(FetchError::NoUsableKeys);
        }
        Ok(Fetched { keys, max_age })
    }

    /// GETs `url` and reads at most `max_body_bytes` of a 2xx body, chunk by chunk.
    async fn get(&self, url: Url) -> Result<(Vec<u8>, Option<Duration>), FetchError> {
        let limit = self.limits.max_body_bytes;
        let mut response = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|length| length > limit as u64)
        {
            return Err(FetchError::TooLarge(limit));
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|value| value.to_str().ok())
            .and_then(cache_max_age);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > limit {
                return Err(FetchError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, max_age))
    }
}

// ---------------------------------------------------------------------------------------
// The store.
// ---------------------------------------------------------------------------------------

/// One published key set.
#[derive(Debug)]
pub struct KeySnapshot {
    pub keys: KeySet,
    /// Increases with every successful fetch; kids remembered as unknown belong to one.
    pub generation: u64,
}

/// What the worker says after each fetch. `seq` is the highest refetch request the fetch
/// covers (it started after that request was made).
#[derive(Debug, Clone, Copy, Default)]
struct FetchReport {
    seq: u64,
    ok: bool,
}

#[derive(Debug, Default)]
struct UnknownKids {
    generation: u64,
    kids: HashSet<Box<str>>,
}

#[derive(Debug, Default)]
struct Control {
    /// When the last unknown-kid refetch was asked for: the budget of SPEC §3 step 6.
    last_refetch: Option<Instant>,
    unknown: UnknownKids,
}

struct StoreMetrics {
    refresh_ok: IntCounter,
    refresh_error: IntCounter,
    keys: IntGauge,
    last_success: IntGauge,
}

impl StoreMetrics {
    fn new(issuer: &str) -> StoreMetrics {
        let m = metrics();
        StoreMetrics {
            refresh_ok: m.jwks_refresh_total.with_label_values(&[issuer, "ok"]),
            refresh_error: m.jwks_refresh_total.with_label_values(&[issuer, "error"]),
            keys: m.jwks_keys.with_label_values(&[issuer]),
            last_success: m
                .jwks_last_success_timestamp_seconds
                .with_label_values(&[issuer]),
        }
    }
}

struct Shared {
    issuer: Arc<IssuerConfig>,
    id: u64,
    current: ArcSwapOption<KeySnapshot>,
    control: Mutex<Control>,
    /// Refetch requests made so far; the worker covers them in order.
    requested: AtomicU64,
    report: watch::Sender<FetchReport>,
    /// Wakes the worker for a refetch.
    wake: Notify,
    stopping: AtomicBool,
    stop: Notify,
    /// Whether the most recent fetch (of any kind) succeeded.
    last_fetch_ok: AtomicBool,
    /// A store built from fixed keys never fetches.
    fixed: bool,
    metrics: Option<StoreMetrics>,
}

/// The keys of one issuer, shared by all worker threads. Dropping the last handle stops
/// its fetching.
pub struct KeyStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("issuer", &self.shared.issuer.name)
            .field("id", &self.shared.id)
            .field("has_keys", &self.has_keys())
            .finish()
    }
}

fn next_store_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn lock(control: &Mutex<Control>) -> std::sync::MutexGuard<'_, Control> {
    control.lock().unwrap_or_else(PoisonError::into_inner)
}

impl KeyStore {
    fn with_shared(issuer: Arc<IssuerConfig>, fixed: bool) -> Arc<Shared> {
        let metrics = (!fixed).then(|| StoreMetrics::new(&issuer.name));
        if let Some(metrics) = &metrics {
            metrics.keys.set(0);
        }
        Arc::new(Shared {
            issuer,
            id: next_store_id(),
            current: ArcSwapOption::empty(),
            control: Mutex::new(Control::default()),
            requested: AtomicU64::new(0),
            report: watch::Sender::new(FetchReport::default()),
            wake: Notify::new(),
            stopping: AtomicBool::new(false),
            stop: Notify::new(),
            last_fetch_ok: AtomicBool::new(fixed),
            fixed,
            metrics,
        })
    }

    /// Starts fetching `issuer`'s keys on a thread of its own and returns at once.
    pub fn start(issuer: Arc<IssuerConfig>) -> KeyStore {
        KeyStore::start_with(issuer, FetchLimits::default())
    }

    /// [`KeyStore::start`] with other fetch limits (tests use short timeouts).
    pub fn start_with(issuer: Arc<IssuerConfig>, limits: FetchLimits) -> KeyStore {
        let shared = KeyStore::with_shared(issuer, false);
        let worker_shared = Arc::clone(&shared);
        let thread_name = format!("jwks-{}", shared.issuer.name);
        let spawned = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || run_worker(worker_shared, limits));
        if let Err(error) = spawned {
            // Without a worker the issuer never gets keys and answers 503: fail closed.
            tracing::error!(issuer = %shared.issuer.name, %error, "cannot start the JWKS fetcher thread");
        }
        KeyStore { shared }
    }

    /// A store that serves `keys` and never fetches; an unknown kid is `unknown_key`.
    /// For tests and benchmarks.
    pub fn with_keys(issuer: Arc<IssuerConfig>, keys: KeySet) -> KeyStore {
        let shared = KeyStore::with_shared(issuer, true);
        shared.current.store(Some(Arc::new(KeySnapshot {
            keys,
            generation: 1,
        })));
        KeyStore { shared }
    }

    pub fn issuer(&self) -> &Arc<IssuerConfig> {
        &self.shared.issuer
    }

    /// Identifies this store (and so this issuer's settings) for the token cache: a token
    /// cached under one store is never a hit for another.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// Readiness: whether the issuer has a usable key set now.
    pub fn has_keys(&self) -> bool {
        self.shared
            .current
            .load()
            .as_ref()
            .is_some_and(|snapshot| !snapshot.keys.is_empty())
    }

    /// The current key set, read without a lock or a reference-count change.
    pub fn current(&self) -> arc_swap::Guard<Option<Arc<KeySnapshot>>> {
        self.shared.current.load()
    }

    /// Whether `kid` was found unknown after a successful refetch of the set of
    /// `generation` (and so must not trigger another).
    pub fn is_known_unknown(&self, kid: &str, generation: u64) -> bool {
        let control = lock(&self.shared.control);
        control.unknown.generation == generation && control.unknown.kids.contains(kid)
    }

    fn remember_unknown(&self, kid: &str, generation: u64) {
        if kid.len() > MAX_REMEMBERED_KID_BYTES {
            return;
        }
        let mut control = lock(&self.shared.control);
        let unknown = &mut control.unknown;
        if unknown.generation != generation {
            if unknown.generation > generation {
                return;
            }
            unknown.generation = generation;
            unknown.kids.clear();
        }
        if unknown.kids.len() < MAX_UNKNOWN_KIDS {
            unknown.kids.insert(kid.into());
        }
    }

    /// Resolves a `kid` the current set does not have (SPEC §3 steps 6–7): asks the worker
    /// for one refetch unless one was asked for within `min_refetch_interval` (then joins
    /// it if it is still running), and waits at most [`REFETCH_WAIT`].
    ///
    /// `Ok` is a set that has the kid. `unknown_key` when a successful fetch does not
    /// have it (it is then remembered until the next refresh), `keys_unavailable` when
    /// the fetch failed or took too long, or the budget is spent and the last fetch failed.
    pub async fn refetch_for(&self, kid: &str) -> Result<Arc<KeySnapshot>, Reason> {
        let shared = &self.shared;
        let generation = self.current().as_ref().map(|s| s.generation);
        let Some(generation) = generation else {
            return Err(Reason::KeysUnavailable);
        };
        if shared.fixed {
            return Err(Reason::UnknownKey);
        }
        let (target, mut reports) = {
            let mut control = lock(&shared.control);
            if control.unknown.generation == generation && control.unknown.kids.contains(kid) {
                return Err(Reason::UnknownKey);
            }
            let reports = shared.report.subscribe();
            let requested = shared.requested.load(Ordering::SeqCst);
            let covered = reports.borrow().seq;
            let now = Instant::now();
            let budget_left = control.last_refetch.is_none_or(|last| {
                now.saturating_duration_since(last) >= shared.issuer.min_refetch_interval
            });
            if budget_left {
                control.last_refetch = Some(now);
                let target = shared.requested.fetch_add(1, Ordering::SeqCst) + 1;
                shared.wake.notify_one();
                (target, reports)
            } else if covered < requested {
                // The refetch asked for earlier is still running: wait for it too.
                (requested, reports)
            } else if shared.last_fetch_ok.load(Ordering::SeqCst) {
                drop(control);
                self.remember_unknown(kid, generation);
                return Err(Reason::UnknownKey);
            } else {
                return Err(Reason::KeysUnavailable);
            }
        };
        let waited = tokio::time::timeout(REFETCH_WAIT, async {
            loop {
                let report = *reports.borrow_and_update();
                if report.seq >= target {
                    return Some(report.ok);
                }
                if reports.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        if !matches!(waited, Ok(Some(true))) {
            return Err(Reason::KeysUnavailable);
        }
        let snapshot = self.current().clone().ok_or(Reason::KeysUnavailable)?;
        if snapshot.keys.contains_kid(kid) {
            Ok(snapshot)
        } else {
            self.remember_unknown(kid, snapshot.generation);
            Err(Reason::UnknownKey)
        }
    }

    /// Replaces the published set as a fetch would (`None` drops it). Tests only.
    #[cfg(test)]
    pub(crate) fn replace_keys(&self, keys: Option<KeySet>) {
        let generation = self.current().as_ref().map_or(0, |s| s.generation) + 1;
        self.shared
            .current
            .store(keys.map(|keys| Arc::new(KeySnapshot { keys, generation })));
    }

    /// Stops fetching (the current keys stay readable). Idempotent.
    pub fn shutdown(&self) {
        if !self.shared.stopping.swap(true, Ordering::SeqCst) {
            self.shared.stop.notify_one();
        }
    }
}

impl Drop for KeyStore {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// ---------------------------------------------------------------------------------------
// The worker.
// ---------------------------------------------------------------------------------------

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

fn run_worker(shared: Arc<Shared>, limits: FetchLimits) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(issuer = %shared.issuer.name, %error, "cannot start the JWKS fetcher runtime");
            return;
        }
    };
    runtime.block_on(worker(shared, limits));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchKind {
    Startup,
    Scheduled,
    Retry,
    Refetch,
}

impl FetchKind {
    fn as_str(self) -> &'static str {
        match self {
            FetchKind::Startup => "startup",
            FetchKind::Scheduled => "scheduled",
            FetchKind::Retry => "retry",
            FetchKind::Refetch => "unknown-kid refetch",
        }
    }
}

async fn worker(shared: Arc<Shared>, limits: FetchLimits) {
    let name = shared.issuer.name.clone();
    let policy = RefreshPolicy::of(&shared.issuer);
    let mut fetcher = match Fetcher::new(Arc::clone(&shared.issuer), limits) {
        Ok(fetcher) => fetcher,
        Err(error) => {
            tracing::error!(issuer = %name, %error, "cannot fetch this issuer's keys");
            return;
        }
    };
    let mut failures = 0u32;
    let mut last_success: Option<Instant> = None;
    let mut covered = 0u64;
    let mut next_fetch = Instant::now();
    let mut kind = FetchKind::Startup;
    let mut generation = 0u64;
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let stale_at = last_success
            .filter(|_| shared.current.load().is_some())
            .and_then(|at| policy.stale_at(at));
        let wake_at = stale_at.map_or(next_fetch, |stale| stale.min(next_fetch));
        tokio::select! {
            () = shared.stop.notified() => break,
            () = shared.wake.notified() => {
                if shared.requested.load(Ordering::SeqCst) <= covered {
                    continue;
                }
                kind = FetchKind::Refetch;
            }
            () = tokio::time::sleep_until(wake_at.into()) => {
                let now = Instant::now();
                if let Some(at) = last_success
                    && policy.is_stale(at, now)
                    && shared.current.load().is_some()
                {
                    shared.current.store(None);
                    if let Some(metrics) = &shared.metrics {
                        metrics.keys.set(0);
                    }
                    tracing::error!(
                        issuer = %name,
                        max_stale_secs = policy.max_stale.as_secs(),
                        "no successful JWKS fetch within max_stale: keys dropped, tokens of this issuer are refused with 503"
                    );
                }
                if now < next_fetch {
                    continue;
                }
            }
        }
        let target = shared.requested.load(Ordering::SeqCst);
        let result = tokio::select! {
            () = shared.stop.notified() => break,
            result = fetcher.fetch() => result,
        };
        let now = Instant::now();
        let ok = match result {
            Ok(fetched) => {
                failures = 0;
                last_success = Some(now);
                generation += 1;
                let delay = policy.after_success(fetched.max_age, random_jitter());
                next_fetch = now + delay;
                install(&shared, fetched.keys, generation, kind, delay);
                true
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let delay = policy.after_failure(failures, random_jitter());
                next_fetch = now + delay;
                if let Some(metrics) = &shared.metrics {
                    metrics.refresh_error.inc();
                }
                tracing::warn!(
                    issuer = %name,
                    fetch = kind.as_str(),
                    %error,
                    failures,
                    retry_in_ms = delay.as_millis() as u64,
                    serving_old_keys = shared.current.load().is_some(),
                    "JWKS refresh failed"
                );
                false
            }
        };
        shared.last_fetch_ok.store(ok, Ordering::SeqCst);
        covered = covered.max(target);
        shared.report.send_replace(FetchReport { seq: covered, ok });
        kind = if ok {
            FetchKind::Scheduled
        } else {
            FetchKind::Retry
        };
    }
    tracing::debug!(issuer = %name, "JWKS fetcher stopped");
}

/// Publishes a freshly fetched set and logs what changed.
fn install(shared: &Shared, keys: KeySet, generation: u64, kind: FetchKind, next: Duration) {
    let old = shared.current.load_full();
    let old_kids: HashSet<&str> = old
        .as_ref()
        .map(|snapshot| snapshot.keys.kids().collect())
        .unwrap_or_default();
    let new_kids: HashSet<&str> = keys.kids().collect();
    let mut added: Vec<String> = new_kids
        .difference(&old_kids)
        .map(|k| printable_kid(k))
        .collect();
    let mut removed: Vec<String> = old_kids
        .difference(&new_kids)
        .map(|k| printable_kid(k))
        .collect();
    added.sort_unstable();
    removed.sort_unstable();
    let count = keys.len();
    let unchanged_count = old.as_ref().is_some_and(|s| s.keys.len() == count);
    shared
        .current
        .store(Some(Arc::new(KeySnapshot { keys, generation })));
    if let Some(metrics) = &shared.metrics {
        metrics.refresh_ok.inc();
        metrics.keys.set(count as i64);
        metrics.last_success.set(unix_now());
    }
    tracing::info!(
        issuer = %shared.issuer.name,
        fetch = kind.as_str(),
        keys = count,
        next_refresh_secs = next.as_secs(),
        "JWKS refreshed"
    );
    if !added.is_empty() || !removed.is_empty() || !unchanged_count {
        tracing::info!(
            issuer = %shared.issuer.name,
            added = ?added,
            removed = ?removed,
            "JWKS keys changed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IssuerKind;
    use crate::jwks::test_keys;
    use jsonwebtoken::Algorithm;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
                        let (status, body) = if head
                            .starts_with("GET /.well-known/openid-configuration ")
                        {
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
        let store =
            KeyStore::start_with(issuer_config(&issuer.url(), Duration::ZERO), short_limits());
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
        let store =
            KeyStore::start_with(issuer_config(&issuer.url(), Duration::ZERO), short_limits());
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
        let keys = crate::jwks::parse_jwks(
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
}
