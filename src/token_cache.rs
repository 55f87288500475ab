//! The verified-token cache (SPEC §3, last paragraph): a job that calls many times pays for
//! one signature check.
//!
//! Keyed by the SHA-256 of the whole token: a cryptographic digest, so no token can be made
//! to collide with a cached one and skip its signature check. The cache is split into 64
//! shards, each a small mutex-guarded map picked by digest bits, so concurrent lookups
//! from Pingora's worker threads rarely meet and never take a global lock. Memory is
//! bounded: when a shard is full, expired entries go first, then the ones that expire
//! soonest. An entry lives until the token's `exp`, and the caller decides on every hit
//! whether it is still usable (its signing key still in the issuer's current set).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aws_lc_rs::digest;

use crate::metrics::metrics;
use crate::verify::VerifiedToken;

const SHARDS: usize = 64;

/// SHA-256 of a whole token: the cache key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

impl Hash for TokenDigest {
    /// Feeds [`DigestHasher`] 8 digest bytes that the shard choice does not use.
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(&self.0[8..16]);
    }
}

impl TokenDigest {
    pub fn of(token: &str) -> TokenDigest {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
        TokenDigest(out)
    }

    fn shard(&self) -> usize {
        usize::from(self.0[0]) % SHARDS
    }
}

impl std::fmt::Debug for TokenDigest {
    /// A digest of a bearer token is not the token, but still nothing to print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(..)")
    }
}

/// The key is already a uniform cryptographic digest: hashing it again with SipHash would
/// only cost time, so the map's hash is digest bytes taken as they are.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 << 8) | u64::from(byte);
        }
    }
}

/// What to do with a cached entry found for a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheCheck {
    /// A hit.
    Use,
    /// A miss, but the entry stays (it belongs to another issuer's route).
    Skip,
    /// A miss, and the entry goes (its signing key left the issuer's set).
    Evict,
}

type Shard = HashMap<TokenDigest, Arc<VerifiedToken>, BuildHasherDefault<DigestHasher>>;

/// A bounded map from token digest to verified token.
pub struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache holding at most about `capacity` tokens (rounded up to a multiple of the
    /// shard count); 0 disables caching.
    pub fn new(capacity: usize) -> TokenCache {
        let per_shard = capacity.div_ceil(SHARDS);
        TokenCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard,
        }
    }

    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    /// The [`TokenCache::capacity`] that `TokenCache::new(requested)` would have.
    pub fn rounded_capacity(requested: usize) -> usize {
        requested.div_ceil(SHARDS) * SHARDS
    }

    fn shard(&self, digest: &TokenDigest) -> MutexGuard<'_, Shard> {
        // A panic while holding a shard cannot leave a map half-updated in a way that
        // matters to a cache; keep serving rather than poison every later request.
        self.shards[digest.shard()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached token, if it has not reached its `exp` at `now` (Unix seconds) and
    /// `check` says to use it (the caller checks the issuer, and that the signing key is
    /// still current). An expired entry, or one `check` evicts, is removed.
    pub fn get(
        &self,
        digest: &TokenDigest,
        now: u64,
        check: impl FnOnce(&VerifiedToken) -> CacheCheck,
    ) -> Option<Arc<VerifiedToken>> {
        let mut shard = self.shard(digest);
        let entry = shard.get(digest)?;
        let verdict = if entry.exp > now {
            check(entry)
        } else {
            CacheCheck::Evict
        };
        match verdict {
            CacheCheck::Use => Some(Arc::clone(entry)),
            CacheCheck::Skip => None,
            CacheCheck::Evict => {
                shard.remove(digest);
                metrics().token_cache_entries.dec();
                None
            }
        }
    }

    /// Caches a verified token until its `exp`. A token already past it is not kept.
    pub fn insert(&self, digest: TokenDigest, token: Arc<VerifiedToken>, now: u64) {
        if self.per_shard == 0 || token.exp <= now {
            return;
        }
        let mut shard = self.shard(&digest);
        if !shard.contains_key(&digest) && shard.len() >= self.per_shard {
            let evicted = make_room(&mut shard, self.per_shard, now);
            metrics().token_cache_entries.sub(evicted as i64);
        }
        if shard.insert(digest, token).is_none() {
            metrics().token_cache_entries.inc();
        }
    }

    /// Entries held now (takes every shard's lock in turn; for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Frees space in a full shard: drops expired entries and, if that freed nothing, the
/// eighth of the shard that expires soonest, so that the O(n) scan runs once per many
/// inserts. Returns how many entries went.
fn make_room(shard: &mut Shard, per_shard: usize, now: u64) -> usize {
    let before = shard.len();
    shard.retain(|_, token| token.exp > now);
    if shard.len() < per_shard {
        return before - shard.len();
    }
    let batch = (per_shard / 8).max(1);
    let mut by_exp: Vec<(u64, TokenDigest)> = shard
        .iter()
        .map(|(digest, token)| (token.exp, *digest))
        .collect();
    by_exp.select_nth_unstable_by_key(batch - 1, |(exp, _)| *exp);
    for (_, digest) in &by_exp[..batch] {
        shard.remove(digest);
    }
    before - shard.len()
}

impl Drop for TokenCache {
    /// A cache replaced on reload takes its entries out of the gauge with it.
    fn drop(&mut self) {
        let held = self.len();
        metrics().token_cache_entries.sub(held as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Claims;

    fn token(exp: u64, kid: &str) -> Arc<VerifiedToken> {
        Arc::new(VerifiedToken::for_tests(
            Claims::default(),
            Some(kid),
            exp,
            0,
        ))
    }

    #[test]
    fn hit_returns_the_same_entry() {
        let cache = TokenCache::new(100);
        let digest = TokenDigest::of("a.b.c");
        let entry = token(1_000, "k1");
        cache.insert(digest, Arc::clone(&entry), 10);
        let hit = cache.get(&digest, 10, |_| CacheCheck::Use).expect("a hit");
        assert!(Arc::ptr_eq(&hit, &entry));
        assert!(
            cache
                .get(&TokenDigest::of("a.b.d"), 10, |_| CacheCheck::Use)
                .is_none()
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn entry_lives_until_exp() {
        let cache = TokenCache::new(100);
        let digest = TokenDigest::of("a.b.c");
        cache.insert(digest, token(1_000, "k1"), 10);
        assert!(cache.get(&digest, 999, |_| CacheCheck::Use).is_some());
        assert!(cache.get(&digest, 1_000, |_| CacheCheck::Use).is_none());
        assert_eq!(cache.len(), 0, "the expired entry is removed");
        cache.insert(digest, token(1_000, "k1"), 1_000);
        assert_eq!(cache.len(), 0, "an expired token is not cached");
    }

    #[test]
    fn key_removed_is_a_miss() {
        let cache = TokenCache::new(100);
        let digest = TokenDigest::of("a.b.c");
        cache.insert(digest, token(1_000, "old-kid"), 10);
        let current = ["new-kid"];
        let check = |entry: &VerifiedToken| {
            if entry
                .kid
                .as_deref()
                .is_some_and(|kid| current.contains(&kid))
            {
                CacheCheck::Use
            } else {
                CacheCheck::Evict
            }
        };
        assert!(cache.get(&digest, 10, |_| CacheCheck::Skip).is_none());
        assert_eq!(cache.len(), 1, "skipped, not evicted");
        assert!(cache.get(&digest, 10, check).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn size_is_bounded_and_expired_entries_go_first() {
        let cache = TokenCache::new(SHARDS * 4);
        for i in 0..10_000u64 {
            cache.insert(
                TokenDigest::of(&format!("token-{i}")),
                token(100 + i, "k"),
                50,
            );
        }
        assert!(cache.len() <= cache.capacity());
        assert!(cache.len() >= cache.capacity() / 2);
        // The survivors are the ones that expire last.
        let newest = TokenDigest::of("token-9999");
        assert!(cache.get(&newest, 50, |_| CacheCheck::Use).is_some());
        // Once everything has expired, new inserts find room without evicting live ones.
        for i in 0..SHARDS * 4 {
            cache.insert(
                TokenDigest::of(&format!("later-{i}")),
                token(1_000_000, "k"),
                100_000,
            );
        }
        assert!(cache.len() <= cache.capacity());
    }

    #[test]
    fn zero_capacity_disables_caching() {
        let cache = TokenCache::new(0);
        let digest = TokenDigest::of("a.b.c");
        cache.insert(digest, token(1_000, "k1"), 10);
        assert!(cache.get(&digest, 10, |_| CacheCheck::Use).is_none());
    }
}
