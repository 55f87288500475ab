//! The revocation list (SPEC §6): tokens of named jobs refused with 403 `revoked` even though
//! they verify, e.g. every token of a job that ran on a leaked runner.
//!
//! The file is re-read when it changes (polled every second, by modification time, size and
//! inode, so editors that save by rename are seen) and on SIGHUP. A file that cannot be read
//! or parsed leaves the previous list in force.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::auth::claims::Claims;
use crate::clock;
use crate::config::rules::{CompiledRule, Condition, Matcher};

pub mod runtime;

/// How often the watcher looks at the file; a change is live within this (SPEC: 5 s).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// One `[[revoke]]` entry.
#[derive(Debug)]
pub struct Revocation {
    pub conditions: CompiledRule,
    /// The conditions as written, as JSON: what `GET /revocations` shows.
    pub conditions_json: serde_json::Map<String, serde_json::Value>,
    pub reason: String,
    /// Unix seconds after which the entry no longer applies.
    pub until: Option<i64>,
}

/// The entries in force.
#[derive(Debug, Default)]
pub struct RevocationList {
    pub entries: Vec<Revocation>,
}

impl RevocationList {
    /// The first unexpired entry whose conditions all match the verified claims.
    pub fn find(&self, claims: &Claims, now: i64) -> Option<&Revocation> {
        self.entries.iter().find(|entry| {
            entry.until.is_none_or(|until| now < until) && entry.conditions.matches(claims)
        })
    }

    /// Parses a revocation file. Any problem refuses the whole file, so a typo can never
    /// silently un-revoke a job.
    pub fn parse(text: &str) -> Result<RevocationList, String> {
        let table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut entries = Vec::new();
        for (key, value) in &table {
            if key != "revoke" {
                return Err(format!(
                    "unknown key {key:?}: the file holds only [[revoke]] tables"
                ));
            }
            let Some(items) = value.as_array() else {
                return Err("`revoke` must be an array of tables: write [[revoke]]".to_owned());
            };
            for (index, item) in items.iter().enumerate() {
                let entry = item
                    .as_table()
                    .ok_or_else(|| format!("revoke[{index}] must be a table"))
                    .and_then(parse_entry)
                    .map_err(|e| format!("revoke[{index}]: {e}"))?;
                entries.push(entry);
            }
        }
        Ok(RevocationList { entries })
    }
}

fn parse_entry(table: &toml::Table) -> Result<Revocation, String> {
    let mut conditions = Vec::new();
    let mut conditions_json = serde_json::Map::new();
    let mut reason = String::new();
    let mut until = None;
    for (key, value) in table {
        match key.as_str() {
            "reason" => {
                reason = value
                    .as_str()
                    .ok_or("`reason` must be a string")?
                    .to_owned();
            }
            "until" => {
                until = Some(
                    match value {
                        toml::Value::Datetime(datetime) => clock::toml_datetime_to_unix(datetime),
                        toml::Value::String(text) => clock::parse_rfc3339(text),
                        _ => Err("must be a date-time such as 2026-12-31T00:00:00Z".to_owned()),
                    }
                    .map_err(|e| format!("`until` {e}"))?,
                );
            }
            claim => {
                let matcher = Matcher::from_toml(value).map_err(|e| format!("{claim}: {e}"))?;
                conditions.push(Condition::new(claim, matcher));
                conditions_json.insert(claim.to_owned(), runtime::toml_to_json(value));
            }
        }
    }
    if conditions.is_empty() {
        return Err(
            "an entry without conditions would revoke every token; name at least \
                    one claim, e.g. check_run_id = \"52711234567\""
                .to_owned(),
        );
    }
    Ok(Revocation {
        conditions: CompiledRule::new(conditions),
        conditions_json,
        reason,
        until,
    })
}

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

/// The live list plus the file it comes from.
#[derive(Debug)]
pub struct RevocationStore {
    list: ArcSwap<RevocationList>,
    path: ArcSwap<Option<PathBuf>>,
    last_stamp: std::sync::Mutex<Option<FileStamp>>,
}

impl Default for RevocationStore {
    fn default() -> Self {
        RevocationStore {
            list: ArcSwap::from_pointee(RevocationList::default()),
            path: ArcSwap::from_pointee(None),
            last_stamp: std::sync::Mutex::new(None),
        }
    }
}

impl RevocationStore {
    /// The list in force: a lock-free read for the request path.
    pub fn current(&self) -> arc_swap::Guard<Arc<RevocationList>> {
        self.list.load()
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
            }
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "revocation file refused; the previous list stays");
            }
        }
    }

    /// Polls the file in a background thread for as long as the process runs.
    pub fn watch(self: &Arc<Self>) {
        let store = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("jobgate-revocation".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(POLL_INTERVAL);
                    store.reload(false);
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

    fn claims(json: serde_json::Value) -> Claims {
        Claims::from_json_object(json.as_object().expect("object"))
    }

    #[test]
    fn entries_match_on_all_conditions_until_they_expire() {
        let list = RevocationList::parse(
            r#"
            [[revoke]]
            check_run_id = "527"
            reason = "leaked runner"

            [[revoke]]
            repository = "acme/*"
            run_id = 42
            until = 2026-01-01T00:00:00Z
            "#,
        )
        .expect("valid file");
        let job = claims(
            serde_json::json!({"check_run_id": "527", "repository": "acme/app", "run_id": "42"}),
        );
        assert_eq!(
            list.find(&job, 0).map(|e| e.reason.as_str()),
            Some("leaked runner")
        );
        let other = claims(
            serde_json::json!({"check_run_id": "1", "repository": "acme/app", "run_id": "42"}),
        );
        assert!(list.find(&other, 0).is_some());
        assert!(list.find(&other, 1_767_225_600).is_none(), "expired entry");
        let unrelated = claims(serde_json::json!({"check_run_id": "1", "repository": "other/app"}));
        assert!(list.find(&unrelated, 0).is_none());
    }

    #[test]
    fn bad_files_are_refused_whole() {
        for text in [
            "[[revoke]]\nreason = \"no conditions\"\n",
            "[[revoke]]\ncheck_run_id = { regex = \"(\" }\n",
            "[[revoke]]\ncheck_run_id = \"1\"\nuntil = \"soon\"\n",
            "[[revokes]]\ncheck_run_id = \"1\"\n",
            "not toml",
        ] {
            assert!(RevocationList::parse(text).is_err(), "{text}");
        }
        assert!(
            RevocationList::parse("")
                .expect("empty file")
                .entries
                .is_empty()
        );
    }

    #[test]
    fn store_keeps_previous_list_on_a_bad_edit_and_sees_renames() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("revoked.toml");
        std::fs::write(&path, "[[revoke]]\ncheck_run_id = \"1\"\n").expect("write");
        let store = RevocationStore::default();
        store.set_path(Some(path.clone()));
        assert_eq!(store.current().entries.len(), 1);
        std::fs::write(&path, "[[revoke]]\ncheck_run_id = [").expect("write");
        store.reload(false);
        assert_eq!(
            store.current().entries.len(),
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
        assert_eq!(store.current().entries.len(), 2);
    }
}
