//! The verified-token cache (SPEC §3, last paragraph): a job that calls many times pays for
//! one signature check.
//!
//! Keyed by the SHA-256 of the whole token: a cryptographic digest, so no token can be made
//! to collide with a cached one and skip its signature check.
//!
//! The hot path takes no lock: the cache is a fixed array of slots, each an
//! [`ArcSwapOption`], grouped in sets of [`WAYS`] that a digest picks (a set-associative
//! cache, as in a CPU). A lookup loads at most `WAYS` slots; an insert replaces one slot of
//! its set with a compare-and-swap and, if another thread got there first, simply does not
//! cache (the next request will). Memory is bounded by the slot count, fixed at start:
//! a full set gives up an empty slot first, then an expired entry, then the entry that
//! expires soonest. An entry lives until the token's `exp`, and the caller decides on every
//! hit whether it is still usable (its signing key still in the issuer's current set).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use arc_swap::ArcSwapOption;
use aws_lc_rs::digest;

use crate::auth::verify::VerifiedToken;
use crate::metrics::metrics;

/// Slots per set: enough that a set fills only when the cache is nearly full (with 4 ways,
/// 100 000 distinct tokens left ~80 % of the slots in use, as full sets evicted while others
/// had room), few enough that a miss costs only a few loads.
pub const WAYS: usize = 8;

/// SHA-256 of a whole token: the cache key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn of(token: &str) -> TokenDigest {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest::digest(&digest::SHA256, token.as_bytes()).as_ref());
        TokenDigest(out)
    }

    /// The digest is uniform already: its first bytes pick the set as they are.
    fn set_index(&self, sets: usize) -> usize {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        // `sets` fits in u64 and the remainder is below it, so both casts are lossless.
        (u64::from_le_bytes(first) % sets as u64) as usize
    }
}

impl std::fmt::Debug for TokenDigest {
    /// A digest of a bearer token is not the token, but still nothing to print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(..)")
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

/// What one slot holds.
struct Entry {
    digest: TokenDigest,
    token: Arc<VerifiedToken>,
}

/// A bounded, lock-free map from token digest to verified token.
pub struct TokenCache {
    slots: Box<[ArcSwapOption<Entry>]>,
    /// Entries held, for the gauge when the cache is dropped (kept exact by counting only
    /// the compare-and-swaps that succeeded).
    held: AtomicI64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &self.capacity())
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens rounded up to a multiple of [`WAYS`];
    /// 0 disables caching.
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            slots: (0..Self::rounded_capacity(capacity))
                .map(|_| ArcSwapOption::empty())
                .collect(),
            held: AtomicI64::new(0),
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The [`TokenCache::capacity`] that `TokenCache::new(requested)` would have.
    pub fn rounded_capacity(requested: usize) -> usize {
        requested.div_ceil(WAYS) * WAYS
    }

    /// The slots of the set `digest` belongs to (empty when caching is off).
    fn set(&self, digest: &TokenDigest) -> &[ArcSwapOption<Entry>] {
        let sets = self.slots.len() / WAYS;
        if sets == 0 {
            return &[];
        }
        let first = digest.set_index(sets) * WAYS;
        &self.slots[first..first + WAYS]
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
        for slot in self.set(digest) {
            let current = slot.load();
            let Some(entry) = current.as_ref().filter(|entry| entry.digest == *digest) else {
                continue;
            };
            let verdict = if entry.token.exp > now {
                check(&entry.token)
            } else {
                CacheCheck::Evict
            };
            return match verdict {
                CacheCheck::Use => Some(Arc::clone(&entry.token)),
                CacheCheck::Skip => None,
                CacheCheck::Evict => {
                    let previous = slot.compare_and_swap(&current, None);
                    if same_entry(&previous, &current) {
                        self.count(-1);
                    }
                    None
                }
            };
        }
        None
    }

    /// Caches a verified token until its `exp`. A token already past it is not kept.
    pub fn insert(&self, digest: TokenDigest, token: Arc<VerifiedToken>, now: u64) {
        if token.exp <= now {
            return;
        }
        let set = self.set(&digest);
        let mut victim: Option<(usize, u64)> = None;
        for (index, slot) in set.iter().enumerate() {
            let rank = match slot.load().as_ref() {
                // The same token (two requests verified it at once): keep the one there.
                Some(entry) if entry.digest == digest => return,
                None => 0,
                Some(entry) if entry.token.exp <= now => 1,
                // Soonest `exp` first, after every empty and expired slot.
                Some(entry) => entry.token.exp.saturating_add(2),
            };
            if victim.is_none_or(|(_, best)| rank < best) {
                victim = Some((index, rank));
            }
        }
        let Some((index, _)) = victim else {
            return;
        };
        let slot = &set[index];
        let current = slot.load_full();
        let was_empty = current.is_none();
        let previous = slot.compare_and_swap(&current, Some(Arc::new(Entry { digest, token })));
        // Lost a race with another insert or eviction: this token is not cached this time.
        if same_entry(&previous, &current) && was_empty {
            self.count(1);
        }
    }

    fn count(&self, delta: i64) {
        self.held.fetch_add(delta, Ordering::Relaxed);
        metrics().token_cache_entries.add(delta);
    }

    /// Entries held now (loads every slot; for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.load().is_some())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// True when a compare-and-swap found `expected` in place (so it swapped).
fn same_entry(found: &Option<Arc<Entry>>, expected: &Option<Arc<Entry>>) -> bool {
    match (found, expected) {
        (None, None) => true,
        (Some(found), Some(expected)) => Arc::ptr_eq(found, expected),
        _ => false,
    }
}

impl Drop for TokenCache {
    /// A cache replaced on reload takes its entries out of the gauge with it.
    fn drop(&mut self) {
        metrics()
            .token_cache_entries
            .sub(self.held.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::claims::Claims;

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
        let cache = TokenCache::new(256);
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
        for i in 0..256 {
            cache.insert(
                TokenDigest::of(&format!("later-{i}")),
                token(1_000_000, "k"),
                100_000,
            );
        }
        assert!(cache.len() <= cache.capacity());
    }

    #[test]
    fn concurrent_inserts_and_evictions_keep_the_count_exact() {
        let cache = Arc::new(TokenCache::new(64));
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                let cache = Arc::clone(&cache);
                std::thread::spawn(move || {
                    for i in 0..5_000u64 {
                        let digest = TokenDigest::of(&format!("token-{}", i % 300));
                        match (i + worker) % 3 {
                            0 => cache.insert(digest, token(1_000 + i, "k"), 10),
                            1 => drop(cache.get(&digest, 10, |_| CacheCheck::Use)),
                            _ => drop(cache.get(&digest, 10, |_| CacheCheck::Evict)),
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("worker thread");
        }
        assert!(cache.len() <= cache.capacity());
        assert_eq!(
            usize::try_from(cache.held.load(Ordering::Relaxed)).ok(),
            Some(cache.len())
        );
    }

    #[test]
    fn capacity_rounds_up_to_whole_sets() {
        assert_eq!(TokenCache::new(1).capacity(), WAYS);
        assert_eq!(TokenCache::new(100_000).capacity(), 100_000);
        assert_eq!(TokenCache::new(0).capacity(), 0);
    }

    #[test]
    fn zero_capacity_disables_caching() {
        let cache = TokenCache::new(0);
        let digest = TokenDigest::of("a.b.c");
        cache.insert(digest, token(1_000, "k1"), 10);
        assert!(cache.get(&digest, 10, |_| CacheCheck::Use).is_none());
    }
}
