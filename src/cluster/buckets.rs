//! Rate-limit buckets in Redis: the same GCRA as `policy::limits`, run by a Lua script so
//! that every gateway takes from one bucket, atomically, in one round trip per step.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::client::{Cluster, Op};
use crate::policy::limits::{BucketStore, LimitVerdict, Take, take_local};

/// KEYS: the buckets; ARGV: interval and window of each, in µs. Uses Redis's clock, so
/// gateways need not agree on theirs. Takes from every bucket, or from none and returns how
/// many µs until the emptiest refusing one has a token.
const TAKE_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nexts = {}
local wait = 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local window = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or 0
  if tat < now then tat = now end
  local nxt = tat + interval
  local ahead = nxt - now
  if ahead > window and ahead - window > wait then wait = ahead - window end
  nexts[i] = nxt
end
if wait > 0 then return wait end
for i = 1, #KEYS do
  local ttl = math.ceil((nexts[i] - now) / 1000)
  redis.call('SET', KEYS[i], string.format('%.0f', nexts[i]), 'PX', ttl)
end
return 0
";

/// Buckets shared through Redis, with this gateway's own buckets as the fallback.
pub struct RedisBuckets {
    cluster: Arc<Cluster>,
    script: redis::Script,
}

impl RedisBuckets {
    pub fn new(cluster: Arc<Cluster>) -> RedisBuckets {
        RedisBuckets {
            cluster,
            script: redis::Script::new(TAKE_SCRIPT),
        }
    }
}

#[async_trait]
impl BucketStore for RedisBuckets {
    async fn take(&self, takes: &[Take<'_>], now_ns: u64) -> LimitVerdict {
        let mut invocation = self.script.prepare_invoke();
        for take in takes {
            let rate = take.limit.rate();
            // Whole µs, at least 1; the window stays a whole number of intervals so exactly
            // `requests` fit in a burst.
            let interval_us = (rate.interval_ns() / 1_000).max(1);
            let requests = rate.window_ns() / rate.interval_ns().max(1);
            invocation
                .key(self.cluster.key("limit", &[take.limit.name(), take.value]))
                .arg(interval_us)
                .arg(interval_us.saturating_mul(requests));
        }
        let wait_us = self
            .cluster
            .call(Op::Limit, |mut connection| async move {
                invocation.invoke_async::<u64>(&mut connection).await
            })
            .await;
        match wait_us {
            Some(0) => LimitVerdict::Admitted,
            Some(wait_us) => LimitVerdict::Limited {
                retry_after: Duration::from_micros(wait_us),
            },
            None => take_local(takes, now_ns),
        }
    }
}
