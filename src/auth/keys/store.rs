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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use prometheus::{IntCounter, IntGauge};
use tokio::sync::{Notify, watch};

use super::fetch::{FetchLimits, Fetcher};
use super::jwks::{KeySet, printable_kid};
use super::refresh::{RefreshPolicy, random_jitter};
use crate::auth::identity::wire_names;
use crate::config::IssuerConfig;
use crate::metrics::metrics;
use crate::refusal::Reason;

/// How long a request waits for an unknown-kid refetch (SPEC §3 step 6).
pub const REFETCH_WAIT: Duration = Duration::from_secs(2);

/// Kids remembered as unknown until the next refresh; beyond this, new ones are not
/// remembered (the refetch budget still limits what they cost).
const MAX_UNKNOWN_KIDS: usize = 1024;

/// Longer kids are never remembered: they cannot be real and would cost memory.
const MAX_REMEMBERED_KID_BYTES: usize = 256;

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
    /// The issuer's [`wire_names`], built once.
    header_names: Arc<[Bytes]>,
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
            header_names: wire_names(&issuer),
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

    /// The issuer's identity header names, shared by every token verified here.
    pub fn header_names(&self) -> &Arc<[Bytes]> {
        &self.shared.header_names
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
