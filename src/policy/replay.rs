//! Single-use routes (SPEC §8): a token is admitted once per route, and remembered until it
//! expires (plus leeway), so it cannot be used again anywhere in that time.
//!
//! A token is known by a 128-bit digest of its `jti` (or, without one, of its bytes), so the
//! memory per used token is fixed whatever the token's size. When the record is full of
//! tokens that have not expired, a new token is refused with `state_unavailable` rather than
//! admitted unrecorded: forgetting a live token would let it be replayed.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

/// Used tokens remembered per single-use route before new ones are refused.
pub const MAX_USED_TOKENS_PER_ROUTE: usize = 100_000;

const SHARDS: usize = 16;

/// A used token's identity: a digest of `jti`, or of the token bytes without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenId(pub [u8; 16]);

impl TokenId {
    /// SHA-256 of the `jti` (or of the whole token without one), truncated to 128 bits. The
    /// two kinds are kept apart by a prefix, so a token whose bytes equal another's `jti`
    /// can never stand for it.
    pub fn of(jti: Option<&str>, token: &[u8]) -> TokenId {
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        match jti {
            Some(jti) => {
                context.update(b"jti\0");
                context.update(jti.as_bytes());
            }
            None => {
                context.update(b"token\0");
                context.update(token);
            }
        }
        let digest = context.finish();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest.as_ref()[..16]);
        TokenId(id)
    }
}

/// Whether this is the token's first use on the route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstUse {
    /// Recorded now; later uses are replays.
    Yes,
    Replayed,
    /// The record cannot say (full here, or Redis unreachable): a replay cannot be ruled out.
    Unknown,
}

/// Where used tokens are recorded: this process ([`LocalUsedTokens`]), or Redis shared by
/// many gateways.
#[async_trait]
pub trait UsedTokenStore: Send + Sync {
    /// Records `token` as used on `route` until `forget_at` (Unix seconds), unless it was
    /// already recorded.
    async fn first_use(&self, route: &str, token: TokenId, forget_at: u64, now: u64) -> FirstUse;
}

/// The used tokens of one single-use route in this process.
pub struct LocalUsedTokens {
    per_shard: usize,
    shards: Box<[Mutex<HashMap<TokenId, u64>>]>,
}

impl Default for LocalUsedTokens {
    fn default() -> Self {
        LocalUsedTokens::with_capacity(MAX_USED_TOKENS_PER_ROUTE)
    }
}

impl LocalUsedTokens {
    pub fn with_capacity(capacity: usize) -> LocalUsedTokens {
        LocalUsedTokens {
            per_shard: capacity.div_ceil(SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Records `token` until `forget_at` unless it is already recorded.
    pub fn first_use(&self, token: TokenId, forget_at: u64, now: u64) -> FirstUse {
        let shard = &self.shards[usize::from(token.0[0]) % self.shards.len()];
        // A poisoned lock: the map is consistent after every single insert or retain.
        let mut used = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if used.get(&token).is_some_and(|&until| until > now) {
            return FirstUse::Replayed;
        }
        if used.len() >= self.per_shard && !used.contains_key(&token) {
            used.retain(|_, until| *until > now);
            if used.len() >= self.per_shard {
                return FirstUse::Unknown;
            }
        }
        used.insert(token, forget_at);
        FirstUse::Yes
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().map_or(0, |used| used.len()))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl UsedTokenStore for LocalUsedTokens {
    async fn first_use(&self, _route: &str, token: TokenId, forget_at: u64, now: u64) -> FirstUse {
        LocalUsedTokens::first_use(self, token, forget_at, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u32) -> TokenId {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&n.to_le_bytes());
        bytes[4..8].copy_from_slice(&n.wrapping_mul(2_654_435_761).to_le_bytes());
        TokenId(bytes)
    }

    #[test]
    fn ids_come_from_jti_or_else_the_token_bytes() {
        assert_eq!(TokenId::of(Some("a"), b"x"), TokenId::of(Some("a"), b"y"));
        assert_ne!(TokenId::of(Some("a"), b"x"), TokenId::of(Some("b"), b"x"));
        assert_ne!(TokenId::of(None, b"x"), TokenId::of(None, b"y"));
        assert_ne!(TokenId::of(Some("x"), b""), TokenId::of(None, b"x"));
    }

    #[test]
    fn a_token_is_admitted_once_until_it_is_forgotten() {
        let used = LocalUsedTokens::default();
        assert_eq!(used.first_use(id(1), 160, 100), FirstUse::Yes);
        assert_eq!(used.first_use(id(1), 160, 101), FirstUse::Replayed);
        assert_eq!(used.first_use(id(2), 160, 101), FirstUse::Yes);
        assert_eq!(used.first_use(id(1), 160, 159), FirstUse::Replayed);
        // Past its expiry plus leeway the token is refused by time checks anyway.
        assert_eq!(used.first_use(id(1), 400, 160), FirstUse::Yes);
    }

    #[test]
    fn a_full_record_prunes_expired_tokens_then_refuses_rather_than_forget_live_ones() {
        let used = LocalUsedTokens::with_capacity(32);
        for n in 0..10_000 {
            let _ = used.first_use(id(n), 1_000, 10);
        }
        assert!(used.len() <= 32, "{} kept", used.len());
        let outcomes: Vec<_> = (20_000..20_100)
            .map(|n| used.first_use(id(n), 2_000, 20))
            .collect();
        assert!(outcomes.contains(&FirstUse::Unknown));
        // Once the first batch has expired, its room is reused.
        let later: Vec<_> = (30_000..30_010)
            .map(|n| used.first_use(id(n), 5_000, 1_500))
            .collect();
        assert!(later.contains(&FirstUse::Yes));
        assert!(used.len() <= 32);
    }
}
