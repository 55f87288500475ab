//! State shared by every gateway using the same Redis and `key_prefix` (SPEC §9): rate-limit
//! buckets, used `single_use` tokens and runtime revocations. Redis is the engine; nothing here replicates by
//! itself.
//!
//! The request path never waits for a Redis that is known to be down: a failed or slow call
//! marks the cluster down, and until the health probe (a `PING` every 250 ms) sees Redis
//! answer again, callers get `None` at once and decide locally (limits fall back to this
//! gateway's buckets, single-use routes answer 503). Every call is bounded by `timeout`.
//!
//! May import `config`, `policy` and `metrics`; nothing on the request path imports it
//! except through the `policy` traits.

mod buckets;
mod client;
mod revocations;
mod used_tokens;

pub use buckets::RedisBuckets;
pub use client::Cluster;
pub use revocations::{RedisRevocations, RevocationSync};
pub use used_tokens::RedisUsedTokens;

use std::sync::Arc;
use std::time::Duration;

use crate::config::ClusterConfig;
use crate::policy::revocation::RevocationStore;

/// How often the health probe asks Redis (and polls the revocation version); also how soon
/// a recovered Redis is used again.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// What `[cluster]` gives the rest of the gateway.
pub struct Shared {
    pub cluster: Arc<Cluster>,
    pub revocations: Arc<RevocationSync>,
}

/// Connects lazily and starts the probe on a runtime of its own, which lives as long as the
/// process: every 250 ms it pings Redis and, while Redis answers, keeps `store`'s runtime
/// revocations in step with it.
pub fn start(config: &ClusterConfig, store: &Arc<RevocationStore>) -> Result<Shared, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the cluster runtime: {error}"))?;
    let cluster = Arc::new(Cluster::connect(config, &runtime)?);
    let revocations = Arc::new(RevocationSync::new(Arc::clone(store)));
    let (probed, synced) = (Arc::clone(&cluster), Arc::clone(&revocations));
    std::thread::Builder::new()
        .name("jobgate-cluster".into())
        .spawn(move || {
            runtime.block_on(async move {
                loop {
                    let (healthy, was) = probed.probe().await;
                    if healthy {
                        // Back after a failure: the list may have changed meanwhile.
                        synced.sync(&probed, !was).await;
                    }
                    tokio::time::sleep(PROBE_INTERVAL).await;
                }
            });
        })
        .map_err(|error| format!("cannot start the cluster thread: {error}"))?;
    Ok(Shared {
        cluster,
        revocations,
    })
}
