//! Rate limits (SPEC §8): a token bucket per distinct value of a limit's key.
//!
//! A bucket is kept as one number, its "theoretical arrival time" (GCRA): the instant at
//! which it would be full again. Taking a token pushes that instant one interval
//! (`per / requests`) later; a bucket whose instant lies more than a whole window ahead is
//! empty. This is exactly a token bucket that holds `requests` tokens, starts full and
//! refills one token every `per / requests`, and it needs no timer and no refill work, so a
//! bucket costs 8 bytes plus its place in the map. Redis runs the same arithmetic in a Lua
//! script (the cluster store), so one gateway and many agree on what a limit means.
//!
//! `pingora-limits` was considered first: its `Rate` estimates events per fixed interval
//! with a count–min sketch. It over-counts on hash collisions, has no burst capacity and
//! cannot say when the next request would be admitted, so it cannot give "exactly N in a
//! burst, then one more after `per / N`" or a correct `Retry-After`.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use lru::LruCache;

use crate::auth::claims::Claims;
use crate::config::{LimitKey, RouteLimit};

/// Key values tracked per limit before the bucket idle the longest is forgotten (SPEC §8).
pub const MAX_KEYS_PER_LIMIT: usize = 100_000;

/// Shards per limit: requests for different keys rarely wait on the same lock.
const SHARDS: usize = 16;

/// What one `[[route.limit]]` allows, in nanoseconds of a monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Time for one token to come back: `per / requests`, rounded down to whole ns.
    interval_ns: u64,
    /// Time for an empty bucket to fill: `interval_ns × requests`, so that exactly
    /// `requests` fit in a burst whatever the rounding.
    window_ns: u64,
}

impl Rate {
    /// `None` for a rate no bucket can keep (zero requests, or a window under 1 ns each).
    pub fn new(requests: u32, per: Duration) -> Option<Rate> {
        let per_ns = u64::try_from(per.as_nanos()).ok()?;
        let interval_ns = per_ns.checked_div(u64::from(requests))?;
        if interval_ns == 0 {
            return None;
        }
        Some(Rate {
            interval_ns,
            window_ns: interval_ns.checked_mul(u64::from(requests))?,
        })
    }

    /// Time for one token to come back, in ns.
    pub fn interval_ns(self) -> u64 {
        self.interval_ns
    }

    /// Time for an empty bucket to fill, in ns.
    pub fn window_ns(self) -> u64 {
        self.window_ns
    }

    /// Takes one token from a bucket whose full-again instant is `tat` (0: never used).
    /// Returns the bucket's new instant, or how long until a token is there.
    fn take(self, tat: u64, now: u64) -> Result<u64, Duration> {
        let next = tat.max(now).saturating_add(self.interval_ns);
        let ahead = next - now;
        if ahead <= self.window_ns {
            Ok(next)
        } else {
            Err(Duration::from_nanos(ahead - self.window_ns))
        }
    }
}

/// The answer for all the limits checked at one step of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitVerdict {
    Admitted,
    /// Some bucket was empty; nothing was taken at this step.
    Limited {
        /// Until the emptiest of the refusing buckets has a token again.
        retry_after: Duration,
    },
}

impl LimitVerdict {
    /// Whole seconds for `Retry-After`, at least 1 (SPEC §8).
    pub fn retry_after_seconds(retry_after: Duration) -> u64 {
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        seconds.max(1)
    }
}

/// One bucket to take a token from: the limit and the value of its key for this request.
pub struct Take<'a> {
    pub limit: &'a LocalLimit,
    /// The claim's value, the client address, or empty when the claim is absent (all
    /// such tokens share one bucket).
    pub value: &'a [u8],
}

/// Where buckets live: this process ([`LocalStore`]), or Redis shared by many gateways.
/// Takes one token from every bucket, or none of them when any is empty.
#[async_trait]
pub trait BucketStore: Send + Sync {
    async fn take(&self, takes: &[Take<'_>], now_ns: u64) -> LimitVerdict;
}

/// The buckets of one `[[route.limit]]` in this process: bounded, least recently used
/// forgotten first (a forgotten bucket comes back full, as if it had been idle that long).
pub struct LocalLimit {
    rate: Rate,
    /// Keyed per process, so nobody can pick key values that crowd one shard.
    hasher: RandomState,
    shards: Box<[Mutex<LruCache<u64, u64>>]>,
    /// Names this limit in a shared store: route, position and settings, so that gateways
    /// with the same limit share buckets and a changed limit starts afresh.
    name: Box<[u8]>,
}

impl LocalLimit {
    pub fn new(rate: Rate) -> LocalLimit {
        LocalLimit::with_capacity(rate, MAX_KEYS_PER_LIMIT)
    }

    /// `capacity` key values in all, split evenly over the shards (at least one each).
    pub fn with_capacity(rate: Rate, capacity: usize) -> LocalLimit {
        let per_shard = NonZeroUsize::new(capacity.div_ceil(SHARDS)).unwrap_or(NonZeroUsize::MIN);
        LocalLimit {
            rate,
            hasher: RandomState::new(),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::new(per_shard)))
                .collect(),
            name: Box::default(),
        }
    }

    /// The same limit, named for a shared store.
    pub fn named(mut self, name: impl Into<Box<[u8]>>) -> LocalLimit {
        self.name = name.into();
        self
    }

    pub fn name(&self) -> &[u8] {
        &self.name
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// How many key values have a bucket now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().map_or(0, |map| map.len()))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: u64) -> &Mutex<LruCache<u64, u64>> {
        // The low bits pick the map slot inside the shard; the high bits pick the shard.
        let index = usize::try_from(key >> 60).unwrap_or(0) % self.shards.len();
        &self.shards[index]
    }

    fn key(&self, value: &[u8]) -> u64 {
        self.hasher.hash_one(value)
    }

    /// Takes one token from `value`'s bucket.
    fn take_one(&self, value: &[u8], now: u64) -> Result<(), Duration> {
        let key = self.key(value);
        // A poisoned lock means a panic while holding it: the map is still consistent
        // (every update is a single insert), so keep using it.
        let mut map = self
            .shard(key)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let tat = map.get(&key).copied().unwrap_or(0);
        let next = self.rate.take(tat, now)?;
        map.put(key, next);
        Ok(())
    }

    /// Gives back a token taken by [`take_one`] when a later limit of the same step refused.
    fn give_back(&self, value: &[u8]) {
        let key = self.key(value);
        let mut map = self
            .shard(key)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(tat) = map.peek_mut(&key) {
            *tat = tat.saturating_sub(self.rate.interval_ns);
        }
    }
}

/// Takes one token from every bucket, or none when any is empty: buckets taken from before
/// the refusing one get their token back.
pub fn take_local(takes: &[Take<'_>], now_ns: u64) -> LimitVerdict {
    let mut refused: Option<Duration> = None;
    let mut taken = 0;
    for take in takes {
        match take.limit.take_one(take.value, now_ns) {
            Ok(()) if refused.is_none() => taken += 1,
            Ok(()) => take.limit.give_back(take.value),
            Err(wait) => refused = Some(refused.map_or(wait, |longest| longest.max(wait))),
        }
    }
    match refused {
        None => LimitVerdict::Admitted,
        Some(retry_after) => {
            for take in &takes[..taken] {
                take.limit.give_back(take.value);
            }
            LimitVerdict::Limited { retry_after }
        }
    }
}

/// Nanoseconds on a monotonic clock shared by every bucket of the process: wall-clock steps
/// must neither refill nor empty a bucket.
pub fn monotonic_ns() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(std::time::Instant::now);
    // A process would have to run for 584 years to overflow; 1 keeps "never used" apart.
    u64::try_from(start.elapsed().as_nanos())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Buckets in this process only: a gateway without `[cluster]`, and the fallback when Redis
/// does not answer.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalStore;

#[async_trait]
impl BucketStore for LocalStore {
    async fn take(&self, takes: &[Take<'_>], now_ns: u64) -> LimitVerdict {
        take_local(takes, now_ns)
    }
}

/// The key value of tokens that lack the limit's claim: all of them share one bucket. Not
/// valid UTF-8, so no claim's text can be the same bytes.
const ABSENT_CLAIM: &[u8] = &[0xff];

/// One `[[route.limit]]` at request time: what it counts by, and its buckets here.
pub struct ActiveLimit {
    pub config: RouteLimit,
    pub buckets: Arc<LocalLimit>,
}

impl ActiveLimit {
    /// The limits of one route. A limit that is the same as in `previous` (the route of the
    /// same name in the config before a reload, same place, same settings) keeps its
    /// buckets: a reload must not hand every job a fresh budget.
    pub fn for_route(
        route: &str,
        limits: &[RouteLimit],
        previous: Option<&[ActiveLimit]>,
    ) -> Vec<ActiveLimit> {
        limits
            .iter()
            .enumerate()
            .map(|(index, config)| {
                let kept = previous
                    .and_then(|previous| previous.get(index))
                    .filter(|old| old.config == *config)
                    .map(|old| Arc::clone(&old.buckets));
                let buckets = kept.unwrap_or_else(|| {
                    // Validation refused every rate that `Rate::new` cannot keep.
                    let rate = Rate::new(config.requests, config.per).unwrap_or(Rate {
                        interval_ns: 1,
                        window_ns: u64::from(config.requests),
                    });
                    let name = format!(
                        "{route}:{index}:{}/{}ns",
                        config.requests,
                        config.per.as_nanos()
                    );
                    Arc::new(LocalLimit::new(rate).named(name.into_bytes()))
                });
                ActiveLimit {
                    config: config.clone(),
                    buckets,
                }
            })
            .collect()
    }
}

/// Step 4 of SPEC §3: the route's `client_ip` limits, for every request that reaches it.
pub async fn take_client_ip(
    store: &dyn BucketStore,
    limits: &[ActiveLimit],
    client: IpAddr,
    now_ns: u64,
) -> LimitVerdict {
    let address = match client.to_canonical() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    };
    let takes: Vec<Take<'_>> = limits
        .iter()
        .filter(|limit| limit.config.key == LimitKey::ClientIp)
        .map(|limit| Take {
            limit: &limit.buckets,
            value: &address,
        })
        .collect();
    if takes.is_empty() {
        return LimitVerdict::Admitted;
    }
    store.take(&takes, now_ns).await
}

/// Step 9 of SPEC §3: the route's claim-keyed limits, once the rules admitted the request.
pub async fn take_claims(
    store: &dyn BucketStore,
    limits: &[ActiveLimit],
    claims: &Claims,
    now_ns: u64,
) -> LimitVerdict {
    let takes: Vec<Take<'_>> = limits
        .iter()
        .filter_map(|limit| match &limit.config.key {
            LimitKey::Claim(claim) => Some(Take {
                limit: &limit.buckets,
                value: claims
                    .text(claim)
                    .map_or(ABSENT_CLAIM, |text| text.as_bytes()),
            }),
            LimitKey::ClientIp => None,
        })
        .collect();
    if takes.is_empty() {
        return LimitVerdict::Admitted;
    }
    store.take(&takes, now_ns).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;

    fn limit(requests: u32, per_seconds: u64) -> LocalLimit {
        LocalLimit::new(Rate::new(requests, Duration::from_secs(per_seconds)).expect("rate"))
    }

    fn take(limit: &LocalLimit, value: &str, now: u64) -> LimitVerdict {
        take_local(
            &[Take {
                limit,
                value: value.as_bytes(),
            }],
            now,
        )
    }

    #[test]
    fn a_bucket_of_n_admits_n_in_a_burst_then_one_per_interval() {
        let deploy = limit(10, 60);
        let start = 1000 * SECOND;
        for _ in 0..10 {
            assert_eq!(take(&deploy, "job", start), LimitVerdict::Admitted);
        }
        let LimitVerdict::Limited { retry_after } = take(&deploy, "job", start) else {
            panic!("the 11th request of a burst is limited");
        };
        assert_eq!(retry_after, Duration::from_secs(6));
        assert_eq!(LimitVerdict::retry_after_seconds(retry_after), 6);
        let just_before = start + 6 * SECOND - 1;
        assert!(matches!(
            take(&deploy, "job", just_before),
            LimitVerdict::Limited { .. }
        ));
        assert_eq!(
            take(&deploy, "job", start + 6 * SECOND),
            LimitVerdict::Admitted
        );
        assert!(matches!(
            take(&deploy, "job", start + 6 * SECOND),
            LimitVerdict::Limited { .. }
        ));
    }

    #[test]
    fn an_idle_bucket_refills_to_its_size_and_no_further() {
        let deploy = limit(3, 3);
        let start = 50 * SECOND;
        for _ in 0..3 {
            assert_eq!(take(&deploy, "job", start), LimitVerdict::Admitted);
        }
        let later = start + 3600 * SECOND;
        for _ in 0..3 {
            assert_eq!(take(&deploy, "job", later), LimitVerdict::Admitted);
        }
        assert!(matches!(
            take(&deploy, "job", later),
            LimitVerdict::Limited { .. }
        ));
    }

    #[test]
    fn key_values_have_separate_buckets() {
        let deploy = limit(1, 60);
        assert_eq!(take(&deploy, "job-1", SECOND), LimitVerdict::Admitted);
        assert_eq!(take(&deploy, "job-2", SECOND), LimitVerdict::Admitted);
        assert!(matches!(
            take(&deploy, "job-1", SECOND),
            LimitVerdict::Limited { .. }
        ));
    }

    #[test]
    fn a_refused_step_takes_nothing_from_any_bucket() {
        let wide = limit(5, 60);
        let narrow = limit(1, 60);
        let both = |now| {
            take_local(
                &[
                    Take {
                        limit: &wide,
                        value: b"job",
                    },
                    Take {
                        limit: &narrow,
                        value: b"job",
                    },
                ],
                now,
            )
        };
        assert_eq!(both(SECOND), LimitVerdict::Admitted);
        for _ in 0..10 {
            assert!(matches!(both(SECOND), LimitVerdict::Limited { .. }));
        }
        // The wide bucket lost one token only: four more fit on its own.
        for _ in 0..4 {
            assert_eq!(take(&wide, "job", SECOND), LimitVerdict::Admitted);
        }
        assert!(matches!(
            take(&wide, "job", SECOND),
            LimitVerdict::Limited { .. }
        ));
    }

    #[test]
    fn retry_after_is_the_longest_wait_among_refusing_buckets() {
        let minute = limit(1, 60);
        let second = limit(1, 1);
        let takes = [
            Take {
                limit: &second,
                value: b"a",
            },
            Take {
                limit: &minute,
                value: b"a",
            },
        ];
        assert_eq!(take_local(&takes, SECOND), LimitVerdict::Admitted);
        assert_eq!(
            take_local(&takes, SECOND),
            LimitVerdict::Limited {
                retry_after: Duration::from_secs(60)
            }
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_at_least_one() {
        assert_eq!(
            LimitVerdict::retry_after_seconds(Duration::from_millis(1)),
            1
        );
        assert_eq!(LimitVerdict::retry_after_seconds(Duration::ZERO), 1);
        assert_eq!(
            LimitVerdict::retry_after_seconds(Duration::from_millis(2001)),
            3
        );
    }

    #[test]
    fn memory_is_bounded_and_the_longest_idle_bucket_goes_first() {
        let deploy =
            LocalLimit::with_capacity(Rate::new(1, Duration::from_secs(60)).expect("rate"), 160);
        for i in 0..150_000u32 {
            let _ = take(&deploy, &i.to_string(), SECOND);
        }
        assert!(deploy.len() <= 160, "{} buckets kept", deploy.len());
        // The newest key is still limited: its bucket was not the one forgotten.
        assert!(matches!(
            take(&deploy, "149999", SECOND),
            LimitVerdict::Limited { .. }
        ));
    }

    #[test]
    fn rates_that_no_bucket_can_keep_are_refused() {
        assert!(Rate::new(0, Duration::from_secs(1)).is_none());
        assert!(Rate::new(10, Duration::from_nanos(5)).is_none());
        assert!(Rate::new(u32::MAX, Duration::from_secs(1)).is_none());
        assert!(Rate::new(1, Duration::from_secs(1)).is_some());
    }

    #[test]
    fn concurrent_takes_never_admit_more_than_the_bucket_holds() {
        let deploy = std::sync::Arc::new(limit(100, 3600));
        let admitted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let deploy = std::sync::Arc::clone(&deploy);
                let admitted = std::sync::Arc::clone(&admitted);
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        if take(&deploy, "job", SECOND) == LimitVerdict::Admitted {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no panic");
        }
        assert_eq!(admitted.load(std::sync::atomic::Ordering::Relaxed), 100);
    }
}
