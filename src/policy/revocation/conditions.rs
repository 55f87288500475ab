//! Conditions as JSON (the admin API, a shared store) and as TOML (the revocation file, route
//! rules). Runtime entries are converted to TOML and compiled by the same
//! `Matcher::from_toml` as the file's, so a condition means the same thing wherever it was
//! written; file entries are converted to JSON to be listed.

use serde_json::Value;

/// What a condition may be, for messages.
const CONDITION_SHAPES: &str =
    "a condition is a string glob, an integer, a boolean, a list of those, or {\"regex\": \"…\"}";

/// A JSON condition as the TOML value a rule would hold. Shapes TOML rules do not have
/// (null, floats, objects other than `{"regex": …}`) are refused here; everything else is
/// judged by [`Matcher::from_toml`], exactly as in a file.
pub fn json_to_toml(value: &Value) -> Result<toml::Value, String> {
    match value {
        Value::String(text) => Ok(toml::Value::String(text.clone())),
        Value::Bool(flag) => Ok(toml::Value::Boolean(*flag)),
        Value::Number(number) => match number.as_i64() {
            Some(integer) => Ok(toml::Value::Integer(integer)),
            None if number.is_f64() => Err(format!(
                "{number} is not an integer; a float cannot be compared exactly, write the \
                 value as a string"
            )),
            None => Err(format!(
                "{number} is too large; write the value as a string"
            )),
        },
        Value::Array(items) => items
            .iter()
            .map(json_to_toml)
            .collect::<Result<Vec<_>, _>>()
            .map(toml::Value::Array),
        Value::Object(members) => match (members.len(), members.get("regex")) {
            (1, Some(Value::String(source))) => {
                let mut table = toml::Table::new();
                table.insert("regex".to_owned(), toml::Value::String(source.clone()));
                Ok(toml::Value::Table(table))
            }
            _ => Err(format!(
                "an object must be exactly {{\"regex\": \"…\"}}; {CONDITION_SHAPES}"
            )),
        },
        Value::Null => Err(format!("null is not a condition; {CONDITION_SHAPES}")),
    }
}

/// A TOML condition (from the revocation file) as the JSON that `GET /revocations` shows and a
/// `POST` would take. Only shapes that compiled reach here; anything else is rendered as text.
pub fn toml_to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(text) => Value::String(text.clone()),
        toml::Value::Integer(integer) => Value::from(*integer),
        toml::Value::Boolean(flag) => Value::Bool(*flag),
        toml::Value::Array(items) => Value::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => Value::Object(
            table
                .iter()
                .map(|(key, value)| (key.clone(), toml_to_json(value)))
                .collect(),
        ),
        toml::Value::Float(number) => Value::String(number.to_string()),
        toml::Value::Datetime(datetime) => Value::String(datetime.to_string()),
    }
}
