//! The revocation file's entries (SPEC §6): `[[revoke]]` tables, parsed and compiled. A file
//! with any bad entry is refused whole, so a typo never silently un-revokes a job.

use crate::auth::claims::Claims;
use crate::clock;
use crate::config::rules::{CompiledRule, Condition, Matcher};

use super::conditions::toml_to_json;

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
                conditions_json.insert(claim.to_owned(), toml_to_json(value));
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
}
