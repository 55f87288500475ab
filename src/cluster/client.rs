//! The one Redis connection of this process, its health, and the bounded call that the
//! request path uses. Knows nothing of what is stored.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::ClusterConfig;
use crate::metrics::metrics;

/// Which kind of request-path call failed, for `jobgate_cluster_errors_total{op}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
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
}

impl Cluster {
    /// Prepares the connection without waiting for Redis (a gateway starts while Redis is
    /// down, SPEC §9), on `runtime`, which must live as long as the process.
    pub(super) fn connect(
        config: &ClusterConfig,
        runtime: &tokio::runtime::Runtime,
    ) -> Result<Cluster, String> {
        // rediss:// builds its rustls config from the process default provider, and rustls
        // panics (in the reconnect task) when none is set: `main` sets it at start, this
        // covers any other caller of the library. Err only means one is already set.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        if config.redis_url.starts_with("rediss://") {
            warn_without_roots();
        }
        let client = redis::Client::open(config.redis_url.as_str())
            .map_err(|error| format!("[cluster] redis_url: {error}"))?;
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
        Ok(Cluster {
            connection,
            prefix: config.key_prefix.clone(),
            timeout: config.timeout,
            up: AtomicBool::new(false),
        })
    }

    /// Pings Redis once; the answer decides whether request-path calls are tried. Returns
    /// whether it answered and whether it was up before.
    pub(super) async fn probe(&self) -> (bool, bool) {
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
                    "Redis answers again: shared limits, single-use state and revocations are back"
                );
            } else {
                tracing::warn!(
                    "Redis does not answer: limits are local, single-use routes answer 503, revocations keep the last list"
                );
            }
        }
        metrics().cluster().up.set(i64::from(healthy));
        (healthy, was)
    }

    /// A connection handle for calls that are not on the request path.
    pub(super) fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// The key of `parts` under this gateway's prefix.
    pub(super) fn key(&self, kind: &str, parts: &[&[u8]]) -> Vec<u8> {
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
    pub(super) async fn call<T, F>(
        &self,
        op: Op,
        call: impl FnOnce(ConnectionManager) -> F,
    ) -> Option<T>
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

    pub(super) fn count_error(&self, op: Op) {
        metrics()
            .cluster()
            .errors_total
            .with_label_values(&[op.label()])
            .inc();
    }
}

/// rediss:// verifies Redis against the roots `rustls-native-certs` loads (the system store,
/// or `SSL_CERT_FILE`). With none loaded, every connection fails and Redis only ever looks
/// down; this says why at start instead. It loads them once more than redis will, at start.
fn warn_without_roots() {
    let roots = rustls_native_certs::load_native_certs();
    let first_error = roots.errors.first().map(ToString::to_string);
    if roots.certs.is_empty() {
        tracing::warn!(
            error = first_error.as_deref().unwrap_or("no certificates found"),
            "[cluster] rediss:// but no trusted root certificates could be loaded (system \
             store, or the file SSL_CERT_FILE names): Redis will be treated as down"
        );
    } else if let Some(error) = first_error {
        tracing::warn!(
            roots = roots.certs.len(),
            %error,
            "[cluster] some trusted root certificates could not be loaded for rediss://"
        );
    }
}
