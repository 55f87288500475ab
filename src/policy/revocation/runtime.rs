//! Runtime revocations (SPEC §9): entries added through the admin API while the gateway runs,
//! next to the file's (§6).
//!
//! An entry travels as JSON (`POST /revocations`, the `[cluster]` Redis value, `GET`), so
//! [`RuntimeEntry`] keeps its conditions as JSON and is what every store persists. Its
//! conditions are compiled through the same [`Matcher::from_toml`] as the file's and the
//! route rules', after a JSON → TOML conversion: a condition means exactly the same thing
//! wherever it was written.
//!
//! Where entries are kept is behind [`RuntimeRevocations`], so that a state file (one
//! gateway) and Redis (many gateways) are interchangeable to the admin API.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::conditions::json_to_toml;
use super::list::Revocation;
use crate::clock;
use crate::config::rules::{CompiledRule, Condition, Matcher};

/// At most this many runtime entries are in force at once: every one is checked on every
/// authenticated request, and each is at most [`MAX_ENTRY_BYTES`], so memory and the
/// per-request cost stay bounded. Lasting entries belong in the revocation file.
pub const MAX_RUNTIME_ENTRIES: usize = 10_000;

/// The largest `POST /revocations` body accepted. A real entry (a few claims, a reason) is
/// a few hundred bytes; this leaves room for a long list of run ids.
pub const MAX_ENTRY_BYTES: usize = 64 * 1024;

/// One runtime entry, as stored and exchanged: the body of a `POST` with an id, and the JSON
/// a shared store keeps. Unknown members are ignored when reading, so a newer gateway may add
/// some without older ones refusing the whole list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeEntry {
    /// 16 lower-case hex characters, random.
    pub id: String,
    /// Claim name → condition, as in a rule: string glob, integer, boolean, a list of those,
    /// or `{"regex": "…"}`.
    pub conditions: Map<String, Value>,
    #[serde(default)]
    pub reason: String,
    /// RFC 3339; absent: until deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// Why a store could not take or drop an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeStoreError {
    /// Nowhere to keep entries, or the place cannot be reached or written (503).
    #[error("{0}")]
    Unavailable(String),
    /// [`MAX_RUNTIME_ENTRIES`] are in force already.
    #[error(
        "{MAX_RUNTIME_ENTRIES} runtime revocations are in force, the most a gateway keeps; \
         delete some, or move lasting ones to the revocation file"
    )]
    Full,
}

/// Where runtime entries are kept. Both calls finish what they promise before returning, so
/// the admin API answers only once the change holds.
#[async_trait]
pub trait RuntimeRevocations: Send + Sync {
    /// Stores the entry durably, then makes it live in the [`super::RevocationStore`],
    /// before returning.
    async fn add(&self, entry: RuntimeEntry) -> Result<(), RuntimeStoreError>;

    /// Removes the entry durably and from the live store. `Ok(false)` for an unknown id.
    async fn remove(&self, id: &str) -> Result<bool, RuntimeStoreError>;
}

/// Neither `[revocation] state_file` nor `[cluster]`: runtime entries would be lost on the
/// next restart without anyone noticing, so none are taken.
pub struct NoRuntimeStore;

/// What `POST /revocations` answers without a place to keep entries.
pub const NOWHERE_TO_KEEP: &str = "runtime revocations need `[revocation] state_file` or \
    `[cluster] redis_url` in the gateway's config; until then, add the entry to the \
    revocation file";

#[async_trait]
impl RuntimeRevocations for NoRuntimeStore {
    async fn add(&self, _entry: RuntimeEntry) -> Result<(), RuntimeStoreError> {
        Err(RuntimeStoreError::Unavailable(NOWHERE_TO_KEEP.to_owned()))
    }

    async fn remove(&self, _id: &str) -> Result<bool, RuntimeStoreError> {
        Ok(false)
    }
}

/// A new random entry id: 16 hex characters (64 bits) from the system's CSPRNG, so ids of
/// entries added on different gateways at the same moment do not collide.
pub fn new_id() -> String {
    use aws_lc_rs::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .is_err()
    {
        // The system RNG failing is not expected; an id only needs to be unique, and the
        // fallback still is with overwhelming probability.
        bytes = fastrand::u64(..).to_be_bytes();
    }
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

impl RuntimeEntry {
    /// A new entry from a `POST /revocations` body, with a fresh id. Every member other than
    /// `reason` and `until` is a condition. `now`: Unix seconds, to refuse an `until` in
    /// the past. The error is the message for the 400 answer.
    pub fn from_request(body: &[u8], now: i64) -> Result<RuntimeEntry, String> {
        if body.len() > MAX_ENTRY_BYTES {
            return Err(format!("the entry is larger than {MAX_ENTRY_BYTES} bytes"));
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        let Value::Object(members) = value else {
            return Err(
                "the body must be a JSON object, e.g. {\"check_run_id\": \"52711234567\", \
                 \"reason\": \"leaked runner\"}"
                    .to_owned(),
            );
        };
        let mut entry = RuntimeEntry {
            id: new_id(),
            conditions: Map::new(),
            reason: String::new(),
            until: None,
        };
        for (key, value) in members {
            match key.as_str() {
                "reason" => {
                    let Value::String(reason) = value else {
                        return Err("`reason` must be a string".to_owned());
                    };
                    entry.reason = reason;
                }
                "until" => {
                    let Value::String(until) = value else {
                        return Err(
                            "`until` must be an RFC 3339 string such as \"2026-12-31T00:00:00Z\""
                                .to_owned(),
                        );
                    };
                    let at = clock::parse_rfc3339(&until).map_err(|e| format!("`until`: {e}"))?;
                    if at <= now {
                        return Err(format!(
                            "`until` {until} is in the past; the entry would never apply"
                        ));
                    }
                    entry.until = Some(rfc3339_seconds(at));
                }
                _ => {
                    entry.conditions.insert(key, value);
                }
            }
        }
        entry.compile()?;
        Ok(entry)
    }

    /// The entry in the form the request path checks. Fails for anything a `POST` would
    /// refuse (except an `until` in the past: a stored entry may simply have expired).
    pub fn compile(&self) -> Result<Revocation, String> {
        if self.conditions.is_empty() {
            return Err(
                "an entry without conditions would revoke every token; name at least one \
                 claim, e.g. {\"check_run_id\": \"52711234567\"}"
                    .to_owned(),
            );
        }
        let mut conditions = Vec::with_capacity(self.conditions.len());
        for (claim, value) in &self.conditions {
            let matcher = json_to_toml(value)
                .and_then(|value| Matcher::from_toml(&value))
                .map_err(|e| format!("condition `{claim}`: {e}"))?;
            conditions.push(Condition::new(claim, matcher));
        }
        let until = self
            .until
            .as_deref()
            .map(clock::parse_rfc3339)
            .transpose()
            .map_err(|e| format!("`until`: {e}"))?;
        Ok(Revocation {
            conditions: CompiledRule::new(conditions),
            conditions_json: self.conditions.clone(),
            reason: self.reason.clone(),
            until,
        })
    }
}

/// `2026-12-31T00:00:00Z` for Unix seconds: how `until` is stored and shown, whatever
/// offset it was written with.
pub fn rfc3339_seconds(unix: i64) -> String {
    let since = std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    let text = clock::format_rfc3339_millis(std::time::UNIX_EPOCH + since);
    match text.strip_suffix(".000Z") {
        Some(seconds) => format!("{seconds}Z"),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::claims::Claims;

    fn claims(json: Value) -> Claims {
        Claims::from_json_object(json.as_object().expect("object"))
    }

    fn post(body: &str) -> Result<RuntimeEntry, String> {
        RuntimeEntry::from_request(body.as_bytes(), 1_000)
    }

    #[test]
    fn a_posted_entry_means_what_the_same_file_entry_means() {
        let entry = post(
            r#"{"repository": "acme/*", "run_attempt": 1, "ref_protected": true,
                "ref": ["refs/heads/main", {"regex": "refs/tags/v[0-9]+"}],
                "reason": "leak", "until": "2026-12-31T01:00:00+01:00"}"#,
        )
        .expect("valid");
        assert_eq!(entry.id.len(), 16);
        assert!(entry.id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(entry.reason, "leak");
        assert_eq!(entry.until.as_deref(), Some("2026-12-31T00:00:00Z"));
        assert!(!entry.conditions.contains_key("reason"));
        let compiled = entry.compile().expect("compiles");
        let file = super::super::list::RevocationList::parse(
            r#"[[revoke]]
            repository = "acme/*"
            run_attempt = 1
            ref_protected = true
            ref = ["refs/heads/main", { regex = "refs/tags/v[0-9]+" }]
            "#,
        )
        .expect("file");
        for (job, revoked) in [
            (
                serde_json::json!({"repository": "acme/app", "run_attempt": "1",
                    "ref_protected": "true", "ref": "refs/tags/v12"}),
                true,
            ),
            (
                serde_json::json!({"repository": "acme/app", "run_attempt": "1",
                    "ref_protected": "true", "ref": "refs/tags/v1x"}),
                false,
            ),
            (
                serde_json::json!({"repository": "other/app", "run_attempt": "1",
                    "ref_protected": "true", "ref": "refs/heads/main"}),
                false,
            ),
            (
                serde_json::json!({"repository": "acme/app", "run_attempt": "2",
                    "ref_protected": "true", "ref": "refs/heads/main"}),
                false,
            ),
        ] {
            let job = claims(job);
            assert_eq!(compiled.conditions.matches(&job), revoked, "{job:?}");
            assert_eq!(file.find(&job, 0).is_some(), revoked, "{job:?}");
        }
        assert_eq!(
            file.entries[0].conditions_json, entry.conditions,
            "a file entry renders as the JSON a POST takes"
        );
    }

    #[test]
    fn invalid_entries_are_refused_with_a_message() {
        for (body, expected) in [
            (r#"{"reason": "x"}"#, "without conditions"),
            (r#"{}"#, "without conditions"),
            (r#"[{"run_id": "1"}]"#, "JSON object"),
            (r#""run_id""#, "JSON object"),
            (r#"{"run_id": "1""#, "not JSON"),
            (r#"{"run_id": null}"#, "null"),
            (r#"{"run_id": 1.5}"#, "float"),
            (r#"{"run_id": 18446744073709551615}"#, "too large"),
            (r#"{"run_id": {"glob": "1"}}"#, "regex"),
            (r#"{"run_id": {"regex": "1", "x": 2}}"#, "regex"),
            (r#"{"run_id": {"regex": 1}}"#, "regex"),
            (r#"{"run_id": {"regex": "("}}"#, "regex"),
            (r#"{"run_id": [["1"]]}"#, "nested"),
            (r#"{"run_id": []}"#, "empty list"),
            (r#"{"run_id": [null]}"#, "null"),
            (r#"{"run_id": "1", "reason": 5}"#, "reason"),
            (r#"{"run_id": "1", "until": "tomorrow"}"#, "RFC 3339"),
            (r#"{"run_id": "1", "until": 1798675200}"#, "RFC 3339"),
            (
                r#"{"run_id": "1", "until": "2026-12-31T00:00:00"}"#,
                "until",
            ),
            (
                r#"{"run_id": "1", "until": "1970-01-01T00:00:00Z"}"#,
                "past",
            ),
        ] {
            let error = post(body).expect_err(body);
            assert!(error.contains(expected), "{body}: {error}");
        }
        let large = format!(r#"{{"run_id": "{}"}}"#, "1".repeat(MAX_ENTRY_BYTES));
        assert!(post(&large).expect_err("large").contains("larger"));
    }

    #[test]
    fn entries_travel_as_json() {
        let entry = post(r#"{"check_run_id": "527", "reason": "leak"}"#).expect("valid");
        let text = serde_json::to_string(&entry).expect("serialises");
        assert!(!text.contains("until"), "{text}");
        let back: RuntimeEntry = serde_json::from_str(&text).expect("deserialises");
        assert_eq!(back, entry);
        let newer: RuntimeEntry = serde_json::from_str(
            r#"{"id": "ab", "conditions": {"run_id": "1"}, "added_by": "someone"}"#,
        )
        .expect("unknown members are ignored");
        assert_eq!(newer.reason, "");
        assert_ne!(new_id(), new_id());
    }

    #[test]
    fn until_is_shown_in_utc_to_the_second() {
        assert_eq!(rfc3339_seconds(1_798_675_200), "2026-12-31T00:00:00Z");
        assert_eq!(rfc3339_seconds(0), "1970-01-01T00:00:00Z");
    }
}
