//! The verified-token cache (SPEC §3, last paragraph): a job that calls many times pays for
//! one signature check.
//!
//! A token is found by a keyed hash of its signature ([`TokenKey`]: SipHash with a key drawn
//! at random once per process, so a client cannot aim tokens at one set to push a job's
//! entry out), and an entry is used only if the whole token is equal byte for byte to the
//! one verified (the entry keeps its parts: header and signature as they were, the payload
//! decoded, as the claims): two tokens that share a hash share at most a set, never an
//! entry, so no token can be made to skip its signature check by colliding with a cached
//! one. A SHA-256 of the whole token did the same job at ~60 k instructions per request.
//!
//! The hot path takes no lock: the cache is a fixed array of slots, each an
//! [`ArcSwapOption`], grouped in sets of [`WAYS`] that a key picks (a set-associative
//! cache, as in a CPU). A lookup loads at most `WAYS` slots; an insert replaces one slot of
//! its set with a compare-and-swap and, if another thread got there first, simply does not
//! cache (the next request will). Memory is bounded by the slot count, fixed at start:
//! a full set gives up an empty slot first, then an expired entry, then the entry that
//! expires soonest. An entry lives until the token's `exp`, and the caller decides on every
//! hit whether it is still usable (its signing key still in the issuer's current set).

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;

use crate::auth::verify::VerifiedToken;
use crate::metrics::metrics;

/// Slots per set: enough that a set fills only when the cache is nearly full (with 4 ways,
/// 100 000 distinct tokens left ~80 % of the slots in use, as full sets evicted while others
/// had room), few enough that a miss costs only a few loads.
pub const WAYS: usize = 8;

/// Where a token is looked for: a keyed hash of its last segment (the signature) and its
/// length. Only a hint: an entry is used for a token only if the stored token is equal.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenKey(u64);

impl TokenKey {
    /// The signature alone is enough to spread tokens: every signed token has its own, and
    /// it is a few hundred bytes where the whole token is ~1.9 KB. A token whose signature
    /// is copied from a cached one lands in that set and fails the byte compare.
    pub fn of(token: &str) -> TokenKey {
        static SEED: OnceLock<RandomState> = OnceLock::new();
        let signature = token
            .rsplit_once('.')
            .map_or(token, |(_, signature)| signature);
        let mut hasher = SEED.get_or_init(RandomState::new).build_hasher();
        hasher.write(signature.as_bytes());
        hasher.write_usize(token.len());
        TokenKey(hasher.finish())
    }

    /// Any key, for tests that force two tokens into one slot.
    #[cfg(test)]
    pub(crate) fn forced(hash: u64) -> TokenKey {
        TokenKey(hash)
    }

    /// The hash is uniform: its value picks the set as it is.
    fn set_index(&self, sets: usize) -> usize {
        // `sets` fits in u64 and the remainder is below it, so both casts are lossless.
        (self.0 % sets as u64) as usize
    }
}

impl std::fmt::Debug for TokenKey {
    /// A hash of a bearer token is not the token, but still nothing to print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
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
    key: TokenKey,
    /// Holds what it takes to compare the whole token on every hit
    /// ([`VerifiedToken::is_encoded_by`]): the key alone admits nothing.
    token: Arc<VerifiedToken>,
}

impl Entry {
    fn is_for(&self, key: &TokenKey, bearer: &str) -> bool {
        self.key == *key && self.token.is_encoded_by(bearer)
    }
}

/// A bounded, lock-free map from token to verified token.
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

    /// The slots of the set `key` belongs to (empty when caching is off).
    fn set(&self, key: &TokenKey) -> &[ArcSwapOption<Entry>] {
        let sets = self.slots.len() / WAYS;
        if sets == 0 {
            return &[];
        }
        let first = key.set_index(sets) * WAYS;
        &self.slots[first..first + WAYS]
    }

    /// The entry for `bearer` (whose [`TokenKey`] is `key`), if it has not reached its `exp`
    /// at `now` (Unix seconds) and `check` says to use it (the caller checks the issuer, and
    /// that the signing key is still current). An expired entry, or one `check` evicts, is
    /// removed.
    pub fn get(
        &self,
        key: &TokenKey,
        bearer: &str,
        now: u64,
        check: impl FnOnce(&VerifiedToken) -> CacheCheck,
    ) -> Option<Arc<VerifiedToken>> {
        for slot in self.set(key) {
            let current = slot.load();
            let Some(entry) = current.as_ref().filter(|entry| entry.is_for(key, bearer)) else {
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

    /// Caches the verified token of `bearer` until its `exp`. A token already past it is not
    /// kept.
    pub fn insert(&self, key: TokenKey, bearer: &str, token: Arc<VerifiedToken>, now: u64) {
        if token.exp <= now {
            return;
        }
        let set = self.set(&key);
        let mut victim: Option<(usize, u64)> = None;
        for (index, slot) in set.iter().enumerate() {
            let rank = match slot.load().as_ref() {
                // The same token (two requests verified it at once): keep the one there.
                Some(entry) if entry.is_for(&key, bearer) => return,
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
        let entry = Entry { key, token };
        let previous = slot.compare_and_swap(&current, Some(Arc::new(entry)));
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

    /// A compact JWS whose payload names `tag` (the cache reads no claim, so it needs no
    /// real signature, only real base64url parts).
    fn jws(tag: &str) -> String {
        use base64::Engine;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = format!(r#"{{"tag":"{tag}"}}"#);
        format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(format!("signature of {tag}"))
        )
    }

    fn token_for(bearer: &str, exp: u64, kid: &str) -> Arc<VerifiedToken> {
        Arc::new(VerifiedToken::for_tests_encoded(bearer, exp, kid))
    }

    /// A key and the token it is for.
    fn keyed(token: &str) -> (TokenKey, &str) {
        (TokenKey::of(token), token)
    }

    #[test]
    fn hit_returns_the_same_entry() {
        let cache = TokenCache::new(100);
        let abc = jws("c");
        let (key, bearer) = keyed(&abc);
        let entry = token_for(bearer, 1_000, "k1");
        cache.insert(key, bearer, Arc::clone(&entry), 10);
        let hit = cache
            .get(&key, bearer, 10, |_| CacheCheck::Use)
            .expect("a hit");
        assert!(Arc::ptr_eq(&hit, &entry));
        let abd = jws("d");
        let (other_key, other) = keyed(&abd);
        assert!(
            cache
                .get(&other_key, other, 10, |_| CacheCheck::Use)
                .is_none()
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn entry_lives_until_exp() {
        let cache = TokenCache::new(100);
        let abc = jws("c");
        let (key, bearer) = keyed(&abc);
        cache.insert(key, bearer, token_for(bearer, 1_000, "k1"), 10);
        assert!(cache.get(&key, bearer, 999, |_| CacheCheck::Use).is_some());
        assert!(
            cache
                .get(&key, bearer, 1_000, |_| CacheCheck::Use)
                .is_none()
        );
        assert_eq!(cache.len(), 0, "the expired entry is removed");
        cache.insert(key, bearer, token_for(bearer, 1_000, "k1"), 1_000);
        assert_eq!(cache.len(), 0, "an expired token is not cached");
    }

    #[test]
    fn key_removed_is_a_miss() {
        let cache = TokenCache::new(100);
        let abc = jws("c");
        let (key, bearer) = keyed(&abc);
        cache.insert(key, bearer, token_for(bearer, 1_000, "old-kid"), 10);
        let current = ["new-kid"];
        let check = |entry: &VerifiedToken| {
            if entry.kid().is_some_and(|kid| current.contains(&kid)) {
                CacheCheck::Use
            } else {
                CacheCheck::Evict
            }
        };
        assert!(cache.get(&key, bearer, 10, |_| CacheCheck::Skip).is_none());
        assert_eq!(cache.len(), 1, "skipped, not evicted");
        assert!(cache.get(&key, bearer, 10, check).is_none());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn size_is_bounded_and_expired_entries_go_first() {
        let cache = TokenCache::new(256);
        for i in 0..10_000u64 {
            let bearer = jws(&format!("token-{i}"));
            let token = token_for(&bearer, 100 + i, "k");
            cache.insert(TokenKey::of(&bearer), &bearer, token, 50);
        }
        assert!(cache.len() <= cache.capacity());
        assert!(cache.len() >= cache.capacity() / 2);
        // The survivors are the ones that expire last.
        let newest_token = jws("token-9999");
        let (newest, bearer) = keyed(&newest_token);
        assert!(
            cache
                .get(&newest, bearer, 50, |_| CacheCheck::Use)
                .is_some()
        );
        // Once everything has expired, new inserts find room without evicting live ones.
        for i in 0..256 {
            let bearer = jws(&format!("later-{i}"));
            let token = token_for(&bearer, 1_000_000, "k");
            cache.insert(TokenKey::of(&bearer), &bearer, token, 100_000);
        }
        assert!(cache.len() <= cache.capacity());
    }

    #[test]
    fn concurrent_inserts_and_evictions_keep_the_count_exact() {
        let cache = Arc::new(TokenCache::new(64));
        let bearers: Arc<Vec<String>> =
            Arc::new((0..300).map(|i| jws(&format!("token-{i}"))).collect());
        let workers: Vec<_> = (0..4)
            .map(|worker| {
                let cache = Arc::clone(&cache);
                let bearers = Arc::clone(&bearers);
                std::thread::spawn(move || {
                    for i in 0..5_000u64 {
                        let bearer = &bearers[(i % 300) as usize];
                        let key = TokenKey::of(bearer);
                        match (i + worker) % 3 {
                            0 => cache.insert(key, bearer, token_for(bearer, 1_000 + i, "k"), 10),
                            1 => drop(cache.get(&key, bearer, 10, |_| CacheCheck::Use)),
                            _ => drop(cache.get(&key, bearer, 10, |_| CacheCheck::Evict)),
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
        let abc = jws("c");
        let (key, bearer) = keyed(&abc);
        cache.insert(key, bearer, token_for(bearer, 1_000, "k1"), 10);
        assert!(cache.get(&key, bearer, 10, |_| CacheCheck::Use).is_none());
    }

    /// Issue #14: two different tokens forced onto one hash (so one set, and the same key in
    /// every slot) never get each other's verified entry, whichever is cached first, and the
    /// second is cached beside the first rather than taken for it.
    #[test]
    fn a_key_collision_never_admits_another_token() {
        let cache = TokenCache::new(WAYS);
        let key = TokenKey::forced(7);
        let (first, second) = (jws("a"), jws("b"));
        let (first, second) = (first.as_str(), second.as_str());
        let verified_first = token_for(first, 1_000, "k1");
        cache.insert(key, first, Arc::clone(&verified_first), 10);
        assert!(
            cache.get(&key, second, 10, |_| CacheCheck::Use).is_none(),
            "the second token must not get the first one's entry"
        );
        // Same length, one character apart: in the header, the payload and the signature,
        // at their starts and ends (each still valid base64url).
        let flip = |at: usize| {
            let mut bytes = first.as_bytes().to_vec();
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            String::from_utf8(bytes).expect("ascii")
        };
        let dots: Vec<usize> = first.match_indices('.').map(|(at, _)| at).collect();
        for at in [
            0,
            dots[0] - 1,
            dots[0] + 1,
            dots[1] - 2,
            dots[1] + 1,
            first.len() - 2,
        ] {
            let near = flip(at);
            assert_ne!(near, first);
            assert!(
                cache.get(&key, &near, 10, |_| CacheCheck::Use).is_none(),
                "one character changed at {at}"
            );
        }
        // Not base64url at all, or one character short.
        for near in [first.replace('.', "!"), first[..first.len() - 1].to_owned()] {
            assert!(cache.get(&key, &near, 10, |_| CacheCheck::Use).is_none());
        }
        let verified_second = token_for(second, 1_000, "k2");
        cache.insert(key, second, Arc::clone(&verified_second), 10);
        assert_eq!(
            cache.len(),
            2,
            "a collision is not taken for the same token"
        );
        let hit = cache
            .get(&key, first, 10, |_| CacheCheck::Use)
            .expect("first");
        assert!(Arc::ptr_eq(&hit, &verified_first));
        let hit = cache
            .get(&key, second, 10, |_| CacheCheck::Use)
            .expect("second");
        assert!(Arc::ptr_eq(&hit, &verified_second));
    }

    #[test]
    fn key_depends_on_the_signature_and_the_length() {
        assert!(TokenKey::of("h.p.sig") == TokenKey::of("h.p.sig"));
        assert!(TokenKey::of("h.p.sig") != TokenKey::of("h.p.sih"));
        assert!(TokenKey::of("h.p.sig") != TokenKey::of("h.pp.sig"));
    }
}
