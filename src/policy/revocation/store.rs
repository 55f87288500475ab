//! Both revocation lists in force, each behind its own `ArcSwap` so the request path reads
//! them without a lock: the file's (re-read when the file changes) and the runtime entries
//! (replaced by whichever store keeps them).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use super::list::{Revocation, RevocationList};
use super::runtime::{MAX_RUNTIME_ENTRIES, RuntimeEntry};
use crate::auth::claims::Claims;
use crate::clock;
use crate::metrics::metrics;

/// How often the watcher looks at the file; a change is live within this (SPEC: 5 s).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What identifies a version of a file on disk: a save by rename changes the inode even
/// when time and size happen to match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// The file's current stamp; `None` when it cannot be read.
pub fn file_stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: metadata.modified().ok(),
        len: metadata.len(),
        inode: metadata.ino(),
    })
}

/// A runtime entry as stored, with its compiled form.
#[derive(Debug)]
pub struct RuntimeRevocation {
    pub entry: RuntimeEntry,
    pub compiled: Revocation,
}

/// The runtime entries in force, in the order they were added.
#[derive(Debug, Default)]
pub struct RuntimeList {
    pub entries: Vec<Arc<RuntimeRevocation>>,
}

impl RuntimeList {
    pub fn find(&self, claims: &Claims, now: i64) -> Option<&Revocation> {
        self.entries
            .iter()
            .map(|entry| &entry.compiled)
            .find(|entry| {
                entry.until.is_none_or(|until| now < until) && entry.conditions.matches(claims)
            })
    }

    /// Entries that have not expired at `now`.
    pub fn live(&self, now: i64) -> impl Iterator<Item = &Arc<RuntimeRevocation>> {
        self.entries
            .iter()
            .filter(move |entry| entry.compiled.until.is_none_or(|until| now < until))
    }
}

/// Both lists as one request sees them.
pub struct Snapshot {
    pub file: arc_swap::Guard<Arc<RevocationList>>,
    pub runtime: arc_swap::Guard<Arc<RuntimeList>>,
}

impl Snapshot {
    /// The first unexpired entry, of either list, whose conditions all match.
    pub fn find(&self, claims: &Claims, now: i64) -> Option<&Revocation> {
        self.file
            .find(claims, now)
            .or_else(|| self.runtime.find(claims, now))
    }
}

/// How `GET /revocations` names a file entry: its 1-based position in the file, so the id
/// stays the same while the file does.
pub fn file_entry_id(index: usize) -> String {
    format!("file-{}", index + 1)
}

/// The live lists plus the file the first comes from.
#[derive(Debug)]
pub struct RevocationStore {
    list: ArcSwap<RevocationList>,
    runtime: ArcSwap<RuntimeList>,
    path: ArcSwap<Option<PathBuf>>,
    last_stamp: std::sync::Mutex<Option<FileStamp>>,
}

impl Default for RevocationStore {
    fn default() -> Self {
        RevocationStore {
            list: ArcSwap::from_pointee(RevocationList::default()),
            runtime: ArcSwap::from_pointee(RuntimeList::default()),
            path: ArcSwap::from_pointee(None),
            last_stamp: std::sync::Mutex::new(None),
        }
    }
}

impl RevocationStore {
    /// Both lists in force: lock-free reads for the request path.
    pub fn current(&self) -> Snapshot {
        Snapshot {
            file: self.list.load(),
            runtime: self.runtime.load(),
        }
    }

    /// The runtime list in force.
    pub fn runtime(&self) -> arc_swap::Guard<Arc<RuntimeList>> {
        self.runtime.load()
    }

    /// Replaces the runtime list wholesale, e.g. with what a shared store holds now. Entries
    /// already live keep their compiled form; expired ones are dropped. An entry that does
    /// not compile (written by a newer gateway, or by hand) is logged and left out, and past
    /// [`MAX_RUNTIME_ENTRIES`] the rest are left out too (logged): memory stays bounded.
    pub fn replace_runtime(&self, entries: Vec<RuntimeEntry>) {
        let now = clock::unix_now();
        let previous = self.runtime.load_full();
        let by_id: std::collections::HashMap<&str, &Arc<RuntimeRevocation>> = previous
            .entries
            .iter()
            .map(|live| (live.entry.id.as_str(), live))
            .collect();
        let mut next = Vec::with_capacity(entries.len().min(MAX_RUNTIME_ENTRIES));
        let mut left_out = 0usize;
        for entry in entries {
            if next.len() >= MAX_RUNTIME_ENTRIES {
                left_out += 1;
                continue;
            }
            if let Some(same) = by_id
                .get(entry.id.as_str())
                .filter(|live| live.entry == entry)
            {
                if same.compiled.until.is_none_or(|until| now < until) {
                    next.push(Arc::clone(same));
                }
                continue;
            }
            match entry.compile() {
                Ok(compiled) if compiled.until.is_none_or(|until| now < until) => {
                    next.push(Arc::new(RuntimeRevocation { entry, compiled }));
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(id = %entry.id, %error, "runtime revocation left out: it does not compile");
                }
            }
        }
        if left_out > 0 {
            tracing::error!(
                left_out,
                "more than {MAX_RUNTIME_ENTRIES} runtime revocations; the newest were left out"
            );
        }
        self.runtime.store(Arc::new(RuntimeList { entries: next }));
        self.count();
    }

    /// Makes one more runtime entry live. Fails when it does not compile.
    pub fn insert_runtime(&self, entry: RuntimeEntry) -> Result<(), String> {
        let compiled = entry.compile()?;
        let added = Arc::new(RuntimeRevocation { entry, compiled });
        // `rcu`: a concurrent replacement of the list cannot lose this entry.
        self.runtime.rcu(|current| {
            let mut entries = current.entries.clone();
            entries.push(Arc::clone(&added));
            RuntimeList { entries }
        });
        self.count();
        Ok(())
    }

    /// Takes a runtime entry out of force; false when no entry has this id.
    pub fn remove_runtime(&self, id: &str) -> bool {
        let mut found = false;
        self.runtime.rcu(|current| {
            let entries: Vec<_> = current
                .entries
                .iter()
                .filter(|entry| entry.entry.id != id)
                .cloned()
                .collect();
            found = entries.len() != current.entries.len();
            RuntimeList { entries }
        });
        self.count();
        found
    }

    /// Sets `jobgate_revocations{source}` to the entries in force now.
    pub fn count(&self) {
        let now = clock::unix_now();
        let file = self
            .list
            .load()
            .entries
            .iter()
            .filter(|entry| entry.until.is_none_or(|until| now < until))
            .count();
        let runtime = self.runtime.load().live(now).count();
        metrics().set_revocations(file, runtime);
    }

    /// Points the store at a (possibly new) file and loads it now.
    pub fn set_path(&self, path: Option<PathBuf>) {
        let changed = **self.path.load() != path;
        self.path.store(Arc::new(path));
        if changed {
            self.reload(true);
        }
    }

    /// Re-reads the file if it changed since the last look (or always, with `force`).
    /// A missing file at first load is an empty list and a warning; later, and for any
    /// read or parse error, the previous list stays.
    pub fn reload(&self, force: bool) {
        let path_guard = self.path.load();
        let Some(path) = path_guard.as_ref() else {
            self.list.store(Arc::new(RevocationList::default()));
            self.count();
            return;
        };
        let current = file_stamp(path);
        {
            let Ok(mut last) = self.last_stamp.lock() else {
                return;
            };
            if !force && *last == current {
                return;
            }
            *last = current.clone();
        }
        if current.is_none() {
            tracing::warn!(file = %path.display(), "revocation file missing; keeping the current list ({} entries)", self.list.load().entries.len());
            return;
        }
        match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| RevocationList::parse(&text))
        {
            Ok(list) => {
                tracing::info!(file = %path.display(), entries = list.entries.len(), "revocation list loaded");
                self.list.store(Arc::new(list));
                self.count();
            }
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "revocation file refused; the previous list stays");
            }
        }
    }

    /// Polls the file in a background thread for as long as the process runs; each poll also
    /// recounts the entries in force, so the gauge drops when an entry's `until` passes.
    pub fn watch(self: &Arc<Self>) {
        let store = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("jobgate-revocation".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(POLL_INTERVAL);
                    store.reload(false);
                    store.count();
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the revocation watcher; changes apply on SIGHUP only");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_keeps_previous_list_on_a_bad_edit_and_sees_renames() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("revoked.toml");
        std::fs::write(&path, "[[revoke]]\ncheck_run_id = \"1\"\n").expect("write");
        let store = RevocationStore::default();
        store.set_path(Some(path.clone()));
        assert_eq!(store.current().file.entries.len(), 1);
        std::fs::write(&path, "[[revoke]]\ncheck_run_id = [").expect("write");
        store.reload(false);
        assert_eq!(
            store.current().file.entries.len(),
            1,
            "bad edit keeps the old list"
        );
        let staged = dir.path().join("revoked.toml.tmp");
        std::fs::write(
            &staged,
            "[[revoke]]\ncheck_run_id = \"1\"\n[[revoke]]\nrun_id = \"2\"\n",
        )
        .expect("write");
        std::fs::rename(&staged, &path).expect("rename");
        store.reload(false);
        assert_eq!(store.current().file.entries.len(), 2);
    }

    fn entry(id: &str, run_id: &str, until: Option<&str>) -> RuntimeEntry {
        let mut conditions = serde_json::Map::new();
        conditions.insert("run_id".into(), serde_json::json!(run_id));
        RuntimeEntry {
            id: id.into(),
            conditions,
            reason: String::new(),
            until: until.map(str::to_owned),
        }
    }

    fn job(run_id: &str) -> Claims {
        Claims::from_json_object(
            serde_json::json!({ "run_id": run_id })
                .as_object()
                .expect("object"),
        )
    }

    #[test]
    fn find_checks_the_file_and_the_runtime_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("revoked.toml");
        std::fs::write(&path, "[[revoke]]\nrun_id = \"1\"\nreason = \"file\"\n").expect("write");
        let store = RevocationStore::default();
        store.set_path(Some(path));
        store
            .insert_runtime(entry("a", "2", None))
            .expect("compiles");
        let now = clock::unix_now();
        assert_eq!(
            store
                .current()
                .find(&job("1"), now)
                .map(|e| e.reason.as_str()),
            Some("file")
        );
        assert!(store.current().find(&job("2"), now).is_some());
        assert!(store.current().find(&job("3"), now).is_none());
        assert!(store.remove_runtime("a"));
        assert!(!store.remove_runtime("a"));
        assert!(store.current().find(&job("2"), now).is_none());
    }

    #[test]
    fn replacing_the_runtime_list_drops_expired_and_broken_entries_and_keeps_compiled_ones() {
        let store = RevocationStore::default();
        store.replace_runtime(vec![
            entry("a", "1", None),
            entry("b", "2", Some("2000-01-01T00:00:00Z")),
            entry("c", "", None),
            RuntimeEntry {
                conditions: serde_json::Map::new(),
                ..entry("d", "4", None)
            },
        ]);
        let ids: Vec<String> = store
            .runtime()
            .entries
            .iter()
            .map(|live| live.entry.id.clone())
            .collect();
        assert_eq!(ids, ["a", "c"]);
        let kept = Arc::clone(&store.runtime().entries[0]);
        store.replace_runtime(vec![entry("a", "1", None), entry("e", "5", None)]);
        assert!(Arc::ptr_eq(&kept, &store.runtime().entries[0]));
        assert_eq!(store.runtime().entries.len(), 2);
        let many: Vec<RuntimeEntry> = (0..MAX_RUNTIME_ENTRIES + 5)
            .map(|n| entry(&n.to_string(), "1", None))
            .collect();
        store.replace_runtime(many);
        assert_eq!(store.runtime().entries.len(), MAX_RUNTIME_ENTRIES);
    }
}
