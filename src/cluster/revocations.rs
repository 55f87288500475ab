//! Runtime revocations in Redis (SPEC §9): a hash of entry id → [`RuntimeEntry`] JSON and a
//! version counter that every change bumps. Each gateway polls the counter with the health
//! probe (every 250 ms) and re-reads the hash when it moved, after Redis comes back, and
//! once a minute in any case, so a missed change cannot leave a replica behind for long.
//!
//! Writes and re-reads are serialised by one lock, so a re-read that started before a local
//! `POST` cannot drop that entry from this gateway's list.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::AsyncCommands;

use super::client::{Cluster, Op};
use crate::policy::revocation::RevocationStore;
use crate::policy::revocation::runtime::{
    MAX_RUNTIME_ENTRIES, RuntimeEntry, RuntimeRevocations, RuntimeStoreError,
};

/// Even without a version change, the whole list is re-read this often.
const FULL_REREAD: Duration = Duration::from_secs(60);

/// The admin API may wait longer than a request: it answers a person, not a job.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// KEYS: hash, version. ARGV: id, JSON, most entries. -1 when full.
const ADD_SCRIPT: &str = r"
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[2])
return 1
";

/// KEYS: hash, version. ARGV: id. 1 when it was there.
const REMOVE_SCRIPT: &str = r"
local removed = redis.call('HDEL', KEYS[1], ARGV[1])
if removed == 1 then redis.call('INCR', KEYS[2]) end
return removed
";

/// What one gateway knows of the shared list.
pub struct RevocationSync {
    store: Arc<RevocationStore>,
    /// Held while writing to Redis and applying it here, and while re-reading.
    lock: tokio::sync::Mutex<SyncState>,
}

#[derive(Default)]
struct SyncState {
    version: Option<i64>,
    last_full_read: Option<Instant>,
}

impl RevocationSync {
    pub fn new(store: Arc<RevocationStore>) -> RevocationSync {
        RevocationSync {
            store,
            lock: tokio::sync::Mutex::new(SyncState::default()),
        }
    }
}

fn revocation_keys(cluster: &Cluster) -> (Vec<u8>, Vec<u8>) {
    (
        cluster.key("revocations", &[]),
        cluster.key("revocations", &[b"version"]),
    )
}

impl RevocationSync {
    /// Called by the probe while Redis answers: re-reads the list when its version moved,
    /// when `force` (Redis just came back) or once a minute.
    pub(super) async fn sync(&self, cluster: &Cluster, force: bool) {
        let mut state = self.lock.lock().await;
        let (hash, version_key) = revocation_keys(cluster);
        let mut connection = cluster.connection();
        let read = async {
            let version: Option<i64> = connection.get(&version_key).await?;
            let due = force
                || state.version != version
                || state
                    .last_full_read
                    .is_none_or(|at| at.elapsed() >= FULL_REREAD);
            if !due {
                return Ok(None);
            }
            let entries: Vec<(String, Vec<u8>)> = connection.hgetall(&hash).await?;
            Ok::<_, redis::RedisError>(Some((version, entries)))
        };
        match tokio::time::timeout(ADMIN_TIMEOUT, read).await {
            Ok(Ok(None)) => {}
            Ok(Ok(Some((version, raw)))) => {
                let entries = raw
                    .into_iter()
                    .filter_map(|(id, json)| match serde_json::from_slice::<RuntimeEntry>(&json) {
                        Ok(entry) if entry.id == id => Some(entry),
                        _ => {
                            tracing::error!(%id, "a runtime revocation in Redis is not an entry; left out");
                            None
                        }
                    })
                    .collect();
                self.store.replace_runtime(entries);
                state.version = version;
                state.last_full_read = Some(Instant::now());
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot read runtime revocations from Redis; the last list stays");
                cluster.count_error(Op::Revocation);
            }
            Err(_) => {
                tracing::warn!(
                    "reading runtime revocations from Redis timed out; the last list stays"
                );
                cluster.count_error(Op::Revocation);
            }
        }
    }
}

/// The `/revocations` API's store with `[cluster]`: entries live in Redis.
pub struct RedisRevocations {
    cluster: Arc<Cluster>,
    sync: Arc<RevocationSync>,
}

impl RedisRevocations {
    pub fn new(cluster: Arc<Cluster>, sync: Arc<RevocationSync>) -> RedisRevocations {
        RedisRevocations { cluster, sync }
    }
}

fn unavailable() -> RuntimeStoreError {
    RuntimeStoreError::Unavailable(
        "Redis does not answer, so the entry cannot reach the other gateways; retry, or add \
         it to the revocation file"
            .to_owned(),
    )
}

#[async_trait]
impl RuntimeRevocations for RedisRevocations {
    async fn add(&self, entry: RuntimeEntry) -> Result<(), RuntimeStoreError> {
        let sync = &self.sync;
        let json = serde_json::to_vec(&entry)
            .map_err(|error| RuntimeStoreError::Unavailable(error.to_string()))?;
        let _held = sync.lock.lock().await;
        let (hash, version) = revocation_keys(&self.cluster);
        let mut connection = self.cluster.connection();
        let script = redis::Script::new(ADD_SCRIPT);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(hash)
            .key(version)
            .arg(entry.id.as_str())
            .arg(json)
            .arg(MAX_RUNTIME_ENTRIES);
        let added = tokio::time::timeout(
            ADMIN_TIMEOUT,
            invocation.invoke_async::<i64>(&mut connection),
        )
        .await;
        match added {
            Ok(Ok(-1)) => Err(RuntimeStoreError::Full),
            Ok(Ok(_)) => sync
                .store
                .insert_runtime(entry)
                .map_err(RuntimeStoreError::Unavailable),
            _ => {
                self.cluster.count_error(Op::Revocation);
                Err(unavailable())
            }
        }
    }

    async fn remove(&self, id: &str) -> Result<bool, RuntimeStoreError> {
        let sync = &self.sync;
        let _held = sync.lock.lock().await;
        let (hash, version) = revocation_keys(&self.cluster);
        let mut connection = self.cluster.connection();
        let script = redis::Script::new(REMOVE_SCRIPT);
        let mut invocation = script.prepare_invoke();
        invocation.key(hash).key(version).arg(id);
        let removed = tokio::time::timeout(
            ADMIN_TIMEOUT,
            invocation.invoke_async::<i64>(&mut connection),
        )
        .await;
        match removed {
            Ok(Ok(removed)) => {
                let here = sync.store.remove_runtime(id);
                Ok(removed == 1 || here)
            }
            _ => {
                self.cluster.count_error(Op::Revocation);
                Err(unavailable())
            }
        }
    }
}
