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
mod revocations;
mod used_tokens;

pub use buckets::RedisBuckets;
pub use revocations::RedisRevocations;
pub use used_tokens::RedisUsedTokens;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::ClusterConfig;
use crate::metrics::metrics;

/// How often the health probe asks Redis; also how soon a recovered Redis is used again.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// Which kind of request-path call failed, for `jobgate_cluster_errors_total{op}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Limit,
    SingleUse,
    Revocation,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Op::Limit => "limit",
            Op::SingleUse => "single_use",
            Op::Revocation => "revocation",
        }
    }
}

/// One Redis shared by this process's stores.
pub struct Cluster {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    up: AtomicBool,
    /// Set once `[cluster]` keeps the runtime revocations ([`RedisRevocations`]).
    revocations: std::sync::OnceLock<revocations::RevocationSync>,
}

impl Cluster {
    /// Prepares the connection without waiting for Redis (a gateway starts while Redis is
    /// down, SPEC §9) and starts the health probe on a runtime of its own, which lives as
    /// long as the process.
    pub fn start(config: &ClusterConfig) -> Result<Arc<Cluster>, String> {
        let client = redis::Client::open(config.redis_url.as_str())
            .map_err(|error| format!("[cluster] redis_url: {error}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("jobgate-cluster")
            .build()
            .map_err(|error| format!("cannot start the cluster runtime: {error}"))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            // The probe retries every 250 ms: the manager itself should give up quickly.
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let connection = {
            let _entered = runtime.enter();
            ConnectionManager::new_lazy_with_config(client, manager_config)
                .map_err(|error| format!("[cluster] redis_url: {error}"))?
        };
        metrics().cluster().up.set(0);
        let cluster = Arc::new(Cluster {
            connection,
            prefix: config.key_prefix.clone(),
            timeout: config.timeout,
            up: AtomicBool::new(false),
            revocations: std::sync::OnceLock::new(),
        });
        let probed = Arc::clone(&cluster);
        std::thread::Builder::new()
            .name("jobgate-cluster".into())
            .spawn(move || runtime.block_on(probed.probe_forever()))
            .map_err(|error| format!("cannot start the cluster thread: {error}"))?;
        Ok(cluster)
    }

    /// Pings Redis every [`PROBE_INTERVAL`]; the answer decides whether calls are tried.
    async fn probe_forever(self: Arc<Self>) {
        loop {
            let mut connection = self.connection.clone();
            let ping = tokio::time::timeout(
                self.timeout.max(Duration::from_millis(200)),
                redis::cmd("PING").query_async::<String>(&mut connection),
            )
            .await;
            let healthy = matches!(ping, Ok(Ok(_)));
            let was = self.up.swap(healthy, Ordering::AcqRel);
            if healthy != was {
                if healthy {
                    tracing::info!(
                        "Redis answers again: shared limits and single-use state are back"
                    );
                } else {
                    tracing::warn!(
                        "Redis does not answer: limits are local, single-use routes answer 503"
                    );
                }
            }
            metrics().cluster().up.set(i64::from(healthy));
            if healthy {
                // Back after a failure: the list may have changed meanwhile, read it whole.
                self.sync_revocations(!was).await;
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// The key of `parts` under this gateway's prefix.
    fn key(&self, kind: &str, parts: &[&[u8]]) -> Vec<u8> {
        let mut key = Vec::with_capacity(
            self.prefix.len() + kind.len() + parts.iter().map(|part| part.len() + 1).sum::<usize>(),
        );
        key.extend_from_slice(self.prefix.as_bytes());
        key.extend_from_slice(kind.as_bytes());
        for part in parts {
            key.push(b':');
            key.extend_from_slice(part);
        }
        key
    }

    /// Runs one request-path call within `timeout`. `None`: Redis is down, failed or was too
    /// slow, and the caller decides without it. A failure marks the cluster down until the
    /// probe sees Redis answer.
    async fn call<T, F>(&self, op: Op, call: impl FnOnce(ConnectionManager) -> F) -> Option<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let errors = &metrics().cluster().errors_total;
        if !self.up.load(Ordering::Acquire) {
            errors.with_label_values(&[op.label()]).inc();
            return None;
        }
        match tokio::time::timeout(self.timeout, call(self.connection.clone())).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(error)) => {
                tracing::warn!(op = op.label(), %error, "Redis call failed");
                self.mark_down(op);
                None
            }
            Err(_) => {
                tracing::warn!(
                    op = op.label(),
                    timeout_ms = self.timeout.as_millis() as u64,
                    "Redis call timed out"
                );
                self.mark_down(op);
                None
            }
        }
    }

    fn mark_down(&self, op: Op) {
        self.up.store(false, Ordering::Release);
        metrics().cluster().up.set(0);
        self.count_error(op);
    }

    fn count_error(&self, op: Op) {
        metrics()
            .cluster()
            .errors_total
            .with_label_values(&[op.label()])
            .inc();
    }
}
