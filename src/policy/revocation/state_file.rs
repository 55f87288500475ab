//! `[revocation] state_file` (SPEC §9): where one gateway without `[cluster]` keeps its
//! runtime revocations, so they survive a restart.
//!
//! Every change rewrites the whole file: the entries go to a temporary file in the same
//! directory, which is flushed to disk, renamed over the state file, and the directory is
//! flushed too. A crash at any moment leaves either the old file or the new one, never half
//! an entry, and an entry is on disk before the admin API answers 201. Writers are
//! serialised by one mutex (the admin API only, never the request path), so each write
//! holds every entry an earlier write did.
//!
//! A state file that cannot be read or parsed at start stops the gateway: starting without
//! its entries would silently un-revoke jobs. A missing file is an empty list (the first
//! `POST` creates it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::runtime::{MAX_RUNTIME_ENTRIES, RuntimeEntry, RuntimeRevocations, RuntimeStoreError};
use super::store::RevocationStore;
use crate::clock;

/// The file's layout: `[[entry]]` tables, each a [`RuntimeEntry`].
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateDocument {
    #[serde(default)]
    entry: Vec<RuntimeEntry>,
}

const HEADER: &str = "# jobgate runtime revocations (SPEC §9), written by the gateway on every change.\n\
# Use `jobgate revoke` (or the admin API) rather than editing this file while jobgate runs:\n\
# the next change would overwrite the edit. Lasting entries belong in the revocation file.\n\n";

/// Reads a state file: its entries that have not expired at `now`. A missing file is empty.
pub fn read(path: &Path, now: i64) -> Result<Vec<RuntimeEntry>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(format!("cannot read it: {error}")),
    };
    let document: StateDocument = toml::from_str(&text).map_err(|e| e.to_string())?;
    if document.entry.len() > MAX_RUNTIME_ENTRIES {
        return Err(format!(
            "it holds {} entries, more than the {MAX_RUNTIME_ENTRIES} a gateway keeps",
            document.entry.len()
        ));
    }
    let mut live = Vec::with_capacity(document.entry.len());
    for (index, entry) in document.entry.into_iter().enumerate() {
        let compiled = entry
            .compile()
            .map_err(|e| format!("entry[{index}] (id {:?}): {e}", entry.id))?;
        if live.iter().any(|other: &RuntimeEntry| other.id == entry.id) {
            return Err(format!("entry[{index}]: id {:?} appears twice", entry.id));
        }
        if compiled.until.is_none_or(|until| now < until) {
            live.push(entry);
        }
    }
    Ok(live)
}

/// Replaces the file with `entries`, durably (see the module docs).
pub fn write(path: &Path, entries: &[RuntimeEntry]) -> std::io::Result<()> {
    let body = toml::to_string(&StateDocument {
        entry: entries.to_vec(),
    })
    .map_err(std::io::Error::other)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    // One writer at a time, so one fixed name: a leftover from a crash is simply replaced.
    let staged = dir.join(format!(".{name}.tmp"));
    {
        let mut file = std::fs::File::create(&staged)?;
        file.write_all(HEADER.as_bytes())?;
        file.write_all(body.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&staged, path)?;
    // The rename itself is durable only once the directory is.
    std::fs::File::open(dir)?.sync_all()
}

/// Runtime entries kept in a state file, for one gateway.
pub struct StateFile {
    path: PathBuf,
    store: Arc<RevocationStore>,
    writer: tokio::sync::Mutex<()>,
}

impl StateFile {
    /// Reads the file and makes its entries live in `store`. Fails (and the gateway must not
    /// start) when the file exists but cannot be read or parsed, or its directory is missing.
    pub fn open(path: PathBuf, store: Arc<RevocationStore>) -> Result<StateFile, String> {
        let context = |error: String| {
            format!(
                "revocation state_file {}: {error}; runtime revocations would be lost, so \
                 jobgate does not start. Fix or move the file (a missing file is an empty list)",
                path.display()
            )
        };
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(context(format!(
                "its directory {} does not exist",
                dir.display()
            )));
        }
        let entries = read(&path, clock::unix_now()).map_err(context)?;
        tracing::info!(file = %path.display(), entries = entries.len(), "runtime revocations loaded");
        store.replace_runtime(entries);
        Ok(StateFile {
            path,
            store,
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// Writes `entries` off the async workers (a write flushes to disk).
    async fn persist(&self, entries: Vec<RuntimeEntry>) -> Result<(), RuntimeStoreError> {
        let path = self.path.clone();
        let unavailable = |error: String| {
            tracing::error!(file = %self.path.display(), %error, "cannot write the revocation state file");
            RuntimeStoreError::Unavailable(format!(
                "cannot write the revocation state file: {error}"
            ))
        };
        tokio::task::spawn_blocking(move || write(&path, &entries))
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .map_err(|e| unavailable(e.to_string()))
    }

    /// The live entries, expired ones pruned: what the next write holds.
    fn live_entries(&self) -> Vec<RuntimeEntry> {
        let now = clock::unix_now();
        self.store
            .runtime()
            .live(now)
            .map(|live| live.entry.clone())
            .collect()
    }
}

#[async_trait]
impl RuntimeRevocations for StateFile {
    async fn add(&self, entry: RuntimeEntry) -> Result<(), RuntimeStoreError> {
        let _writer = self.writer.lock().await;
        let mut entries = self.live_entries();
        if entries.len() >= MAX_RUNTIME_ENTRIES {
            return Err(RuntimeStoreError::Full);
        }
        entries.push(entry.clone());
        self.persist(entries.clone()).await?;
        self.store.replace_runtime(entries);
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<bool, RuntimeStoreError> {
        let _writer = self.writer.lock().await;
        let mut entries = self.live_entries();
        let before = entries.len();
        entries.retain(|entry| entry.id != id);
        if entries.len() == before {
            return Ok(false);
        }
        self.persist(entries.clone()).await?;
        self.store.replace_runtime(entries);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, until: Option<&str>) -> RuntimeEntry {
        let mut conditions = serde_json::Map::new();
        conditions.insert("check_run_id".into(), serde_json::json!("527"));
        conditions.insert(
            "ref".into(),
            serde_json::json!(["refs/heads/main", { "regex": "refs/tags/v[0-9]+" }]),
        );
        conditions.insert("run_attempt".into(), serde_json::json!(1));
        RuntimeEntry {
            id: id.into(),
            conditions,
            reason: "leaked \"runner\"\nsecond line".into(),
            until: until.map(str::to_owned),
        }
    }

    #[test]
    fn entries_round_trip_and_expired_ones_are_pruned_on_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("runtime.toml");
        assert!(read(&path, 0).expect("missing file").is_empty());
        let entries = vec![
            entry("00000000000000a1", None),
            entry("00000000000000a2", Some("2026-01-01T00:00:00Z")),
        ];
        write(&path, &entries).expect("write");
        assert_eq!(read(&path, 0).expect("read"), entries);
        let later = clock::parse_rfc3339("2026-01-01T00:00:00Z").expect("date");
        assert_eq!(read(&path, later).expect("read"), entries[..1]);
        assert!(
            !dir.path().join(".runtime.toml.tmp").exists(),
            "the staged file is renamed away"
        );
    }

    #[test]
    fn a_damaged_file_is_an_error_not_an_empty_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("runtime.toml");
        for text in [
            "[[entry]]\nid = \"x\"\n",
            "[[entry]]\nid = \"x\"\n[entry.conditions]\n",
            "[[entry]]\nid = \"x\"\n[entry.conditions]\nrun_id = { regex = \"(\" }\n",
            "[[entry]]\nid = \"x\"\nuntil = \"soon\"\n[entry.conditions]\nrun_id = \"1\"\n",
            "[[entries]]\n",
            "[[entry]]\nid = \"x\"\n[entry.conditions]\nrun_id = \"1\"\n\
             [[entry]]\nid = \"x\"\n[entry.conditions]\nrun_id = \"2\"\n",
            "[[entry]\n",
        ] {
            std::fs::write(&path, text).expect("write");
            assert!(read(&path, 0).is_err(), "{text}");
        }
        let store = Arc::new(RevocationStore::default());
        let error = StateFile::open(path.clone(), Arc::clone(&store))
            .err()
            .expect("refused");
        assert!(error.contains("does not start"), "{error}");
        let error = StateFile::open(dir.path().join("no/such/dir/state.toml"), store)
            .err()
            .expect("refused");
        assert!(error.contains("does not exist"), "{error}");
    }

    #[tokio::test]
    async fn add_and_remove_are_on_disk_and_live_before_they_return() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("runtime.toml");
        let store = Arc::new(RevocationStore::default());
        let state = StateFile::open(path.clone(), Arc::clone(&store)).expect("open");
        state
            .add(entry("00000000000000b1", None))
            .await
            .expect("add");
        state
            .add(entry("00000000000000b2", None))
            .await
            .expect("add");
        assert_eq!(store.runtime().entries.len(), 2);
        assert_eq!(read(&path, 0).expect("read").len(), 2);
        assert!(state.remove("00000000000000b1").await.expect("remove"));
        assert!(!state.remove("00000000000000b1").await.expect("remove"));
        let left = read(&path, 0).expect("read");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, "00000000000000b2");
        assert_eq!(store.runtime().entries.len(), 1);
        // A restart reads what is on disk.
        let restarted = Arc::new(RevocationStore::default());
        StateFile::open(path, Arc::clone(&restarted)).expect("reopen");
        assert_eq!(restarted.runtime().entries[0].entry.id, "00000000000000b2");
    }

    /// An entry with one glob condition: cheap to compile ten thousand times.
    fn small(id: &str) -> RuntimeEntry {
        let mut conditions = serde_json::Map::new();
        conditions.insert("check_run_id".into(), serde_json::json!(id));
        RuntimeEntry {
            id: id.into(),
            conditions,
            reason: String::new(),
            until: None,
        }
    }

    #[tokio::test]
    async fn a_full_list_refuses_more_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("runtime.toml");
        let store = Arc::new(RevocationStore::default());
        let state = StateFile::open(path.clone(), Arc::clone(&store)).expect("open");
        store.replace_runtime(
            (0..MAX_RUNTIME_ENTRIES)
                .map(|n| small(&format!("{n:016x}")))
                .collect(),
        );
        assert_eq!(
            state.add(small("ffffffffffffffff")).await,
            Err(RuntimeStoreError::Full)
        );
        assert!(!path.exists());
        assert!(state.remove(&format!("{:016x}", 5)).await.expect("remove"));
        state
            .add(small("ffffffffffffffff"))
            .await
            .expect("room again");
        assert_eq!(read(&path, 0).expect("read").len(), MAX_RUNTIME_ENTRIES);
    }
}
