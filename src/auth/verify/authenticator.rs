//! The [`Authenticator`] the proxy calls: a token through the cache, or through key
//! selection, signature and claims, to an [`Authenticated`] or an [`AuthError`].
//!
//! Verified tokens are cached (see `token_cache`): a hit skips only the signature check.
//! What depends on the token alone (header, signature, claim types, `iss`) is checked once;
//! what depends on the request or the clock (`aud`, `exp`, `nbf`, `iat`) on every request.
//! An unknown `kid` asks the issuer's key store for one refetch before the token is refused.

use std::sync::Arc;
use std::time::Instant;

use prometheus::Histogram;

use super::jose::parse_header;
use super::token_cache::{CacheCheck, TokenCache, TokenKey};
use super::verified::{VerifiedToken, check_request, verify_with_key};
use crate::auth::keys::KeyStore;
use crate::auth::keys::jwks::KeyChoice;
use crate::config::IssuerConfig;
use crate::metrics::metrics;
use crate::refusal::Reason;

/// A request's token passed every check of SPEC §3 step 6.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub token: Arc<VerifiedToken>,
    /// Whether the signature check was skipped thanks to the cache.
    pub cache_hit: bool,
}

/// A refused token.
#[derive(Debug, Clone)]
pub struct AuthError {
    pub reason: Reason,
    /// Set when the signature verified but a later check refused the token (issuer's,
    /// audience, time): its claims are genuine and may be logged under their own names.
    pub verified: Option<Arc<VerifiedToken>>,
    pub cache_hit: bool,
}

impl AuthError {
    fn new(reason: Reason) -> AuthError {
        AuthError {
            reason,
            verified: None,
            cache_hit: false,
        }
    }
}

impl From<Reason> for AuthError {
    fn from(reason: Reason) -> AuthError {
        AuthError::new(reason)
    }
}

enum Attempt {
    Done(Result<Authenticated, AuthError>),
    /// The token's kid is not in the current set: a refetch may find it.
    UnknownKid(String),
}

/// Token verification for one config: the key stores of its issuers (in config order) and
/// the verified-token cache. Cheap to share; build a new one per config load with
/// [`Authenticator::reload`] so that unchanged issuers keep their keys.
pub struct Authenticator {
    stores: Vec<Arc<KeyStore>>,
    cache: Arc<TokenCache>,
    hit_seconds: Histogram,
    miss_seconds: Histogram,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("stores", &self.stores)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Starts a key store (and its background fetching) for every issuer. Returns at once;
    /// issuers answer `keys_unavailable` until their first fetch succeeds.
    pub fn new(issuers: &[Arc<IssuerConfig>], cache_capacity: usize) -> Authenticator {
        let stores = issuers
            .iter()
            .map(|issuer| Arc::new(KeyStore::start(Arc::clone(issuer))))
            .collect();
        Authenticator::from_stores(stores, Arc::new(TokenCache::new(cache_capacity)))
    }

    /// Builds an authenticator from stores made elsewhere (tests, benchmarks).
    pub fn from_stores(stores: Vec<Arc<KeyStore>>, cache: Arc<TokenCache>) -> Authenticator {
        let histogram = &metrics().auth_duration_seconds;
        Authenticator {
            stores,
            cache,
            hit_seconds: histogram.with_label_values(&["hit"]),
            miss_seconds: histogram.with_label_values(&["miss"]),
        }
    }

    /// The authenticator for a reloaded config (SPEC §7): an issuer whose settings are
    /// unchanged (equal `IssuerConfig`) keeps its store, its keys and its cached tokens;
    /// a changed or new one gets a new store. `self` is left as it was, so it can keep
    /// serving if the reload is abandoned; a store no authenticator holds any more stops
    /// fetching when the last one is dropped. The cache is kept when its capacity is.
    pub fn reload(&self, issuers: &[Arc<IssuerConfig>], cache_capacity: usize) -> Authenticator {
        let mut unused: Vec<Option<&Arc<KeyStore>>> = self.stores.iter().map(Some).collect();
        let stores = issuers
            .iter()
            .map(|issuer| {
                let kept = unused.iter_mut().find_map(|slot| {
                    slot.filter(|store| **store.issuer() == **issuer)
                        .inspect(|_| *slot = None)
                });
                match kept {
                    Some(store) => Arc::clone(store),
                    None => Arc::new(KeyStore::start(Arc::clone(issuer))),
                }
            })
            .collect();
        let cache = if TokenCache::rounded_capacity(cache_capacity) == self.cache.capacity() {
            Arc::clone(&self.cache)
        } else {
            Arc::new(TokenCache::new(cache_capacity))
        };
        Authenticator::from_stores(stores, cache)
    }

    /// The key stores, parallel to the config's issuers.
    pub fn stores(&self) -> &[Arc<KeyStore>] {
        &self.stores
    }

    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// Readiness of one issuer (by index into the config's issuers).
    pub fn has_keys(&self, issuer: usize) -> bool {
        self.stores
            .get(issuer)
            .is_some_and(|store| store.has_keys())
    }

    /// Names of the issuers that have no usable keys now (`/readyz` lists them).
    pub fn issuers_without_keys(&self) -> Vec<&str> {
        self.stores
            .iter()
            .filter(|store| !store.has_keys())
            .map(|store| store.issuer().name.as_str())
            .collect()
    }

    /// Stops every store's fetching (process exit). Stores shared with another
    /// authenticator stop too, so use this only when nothing will authenticate again.
    pub fn shutdown(&self) {
        for store in &self.stores {
            store.shutdown();
        }
    }

    /// Verifies `token` for a route whose issuer is `issuer` (index into the config's
    /// issuers) and whose audience is `audience`, at `now` (Unix seconds). Waits only when
    /// the token's kid is unknown (one refetch, at most 2 s). Records
    /// `jobgate_auth_duration_seconds{cache}`; the caller must not.
    pub async fn authenticate(
        &self,
        issuer: usize,
        audience: &str,
        token: &str,
        now: u64,
    ) -> Result<Authenticated, AuthError> {
        let started = Instant::now();
        let result = match self.attempt(issuer, audience, token, now) {
            Attempt::Done(result) => result,
            Attempt::UnknownKid(kid) => match self.stores[issuer].refetch_for(&kid).await {
                Ok(_) => match self.attempt(issuer, audience, token, now) {
                    Attempt::Done(result) => result,
                    Attempt::UnknownKid(_) => Err(Reason::UnknownKey.into()),
                },
                Err(reason) => Err(reason.into()),
            },
        };
        self.observe(started, &result);
        result
    }

    /// [`Authenticator::authenticate`] without ever waiting: `None` when the token's kid
    /// is unknown and a refetch is needed (then call `authenticate`).
    pub fn authenticate_sync(
        &self,
        issuer: usize,
        audience: &str,
        token: &str,
        now: u64,
    ) -> Option<Result<Authenticated, AuthError>> {
        let started = Instant::now();
        match self.attempt(issuer, audience, token, now) {
            Attempt::Done(result) => {
                self.observe(started, &result);
                Some(result)
            }
            Attempt::UnknownKid(_) => None,
        }
    }

    fn observe(&self, started: Instant, result: &Result<Authenticated, AuthError>) {
        let hit = match result {
            Ok(done) => done.cache_hit,
            Err(error) => error.cache_hit,
        };
        let histogram = if hit {
            &self.hit_seconds
        } else {
            &self.miss_seconds
        };
        histogram.observe(started.elapsed().as_secs_f64());
    }

    fn attempt(&self, issuer_index: usize, audience: &str, token: &str, now: u64) -> Attempt {
        let Some(store) = self.stores.get(issuer_index) else {
            // A route naming an issuer index the config does not have is a bug upstream;
            // refusing as an outage keeps it from looking like a bad token.
            tracing::error!(
                issuer_index,
                "authenticate called with an unknown issuer index"
            );
            return Attempt::Done(Err(Reason::KeysUnavailable.into()));
        };
        let issuer = store.issuer();
        let current = store.current();
        let cache_key = TokenKey::of(token);
        if let Some(snapshot) = current.as_ref() {
            let cached = self.cache.get(&cache_key, token, now, |entry| {
                if entry.issuer_id != store.id() {
                    CacheCheck::Skip
                } else if snapshot
                    .keys
                    .contains_key(entry.kid(), &entry.key_fingerprint)
                {
                    CacheCheck::Use
                } else {
                    CacheCheck::Evict
                }
            });
            if let Some(token) = cached {
                return Attempt::Done(finish(token, issuer, audience, now, true));
            }
        }
        let (header, parts) = match parse_header(token, &issuer.algorithms) {
            Ok(parsed) => parsed,
            Err(reason) => return Attempt::Done(Err(reason.into())),
        };
        let Some(snapshot) = current.as_ref() else {
            return Attempt::Done(Err(Reason::KeysUnavailable.into()));
        };
        let key = match snapshot.keys.select(header.kid.as_deref(), header.alg) {
            KeyChoice::Key(key) => key,
            KeyChoice::Unsuitable => return Attempt::Done(Err(Reason::BadSignature.into())),
            KeyChoice::Ambiguous => return Attempt::Done(Err(Reason::UnknownKey.into())),
            KeyChoice::UnknownKid => {
                let kid = header.kid.unwrap_or_default();
                if store.is_known_unknown(&kid, snapshot.generation) {
                    return Attempt::Done(Err(Reason::UnknownKey.into()));
                }
                return Attempt::UnknownKid(kid);
            }
        };
        match verify_with_key(
            issuer,
            store.id(),
            store.header_names(),
            key,
            &header,
            &parts,
        ) {
            Ok(verified) => {
                let verified = Arc::new(verified);
                self.cache
                    .insert(cache_key, token, Arc::clone(&verified), now);
                Attempt::Done(finish(verified, issuer, audience, now, false))
            }
            Err(reason) => Attempt::Done(Err(reason.into())),
        }
    }
}

fn finish(
    token: Arc<VerifiedToken>,
    issuer: &IssuerConfig,
    audience: &str,
    now: u64,
    cache_hit: bool,
) -> Result<Authenticated, AuthError> {
    match check_request(&token, issuer, audience, now) {
        Ok(()) => Ok(Authenticated { token, cache_hit }),
        Err(reason) => Err(AuthError {
            reason,
            verified: Some(token),
            cache_hit,
        }),
    }
}
