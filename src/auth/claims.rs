//! A token's claims, parsed once into a form that rules, headers and the audit log can query
//! by name without touching JSON again.

use serde_json::Value;

/// One claim's value as rules see it. GitHub sends numbers as strings, and rules compare
/// integers and booleans as text (SPEC §2), so scalars are kept as their text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimValue {
    /// A string, number or boolean, as text.
    Text(Box<str>),
    /// An array of scalars (`aud`), each as text.
    List(Box<[Box<str>]>),
    /// `null`, an object, or an array holding either: present, but no condition matches it.
    Other,
}

impl ClaimValue {
    fn from_json(value: &Value) -> ClaimValue {
        if let Some(text) = scalar_text(value) {
            return ClaimValue::Text(text);
        }
        match value {
            Value::Array(items) => items
                .iter()
                .map(scalar_text)
                .collect::<Option<Vec<_>>>()
                .map_or(ClaimValue::Other, |items| ClaimValue::List(items.into())),
            _ => ClaimValue::Other,
        }
    }

    /// [`ClaimValue::from_json`], moving a string value instead of copying it.
    fn from_owned_json(value: Value) -> ClaimValue {
        match value {
            Value::String(text) => ClaimValue::Text(text.into_boxed_str()),
            other => ClaimValue::from_json(&other),
        }
    }

    /// The value when it is a single scalar.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            ClaimValue::Text(text) => Some(text),
            _ => None,
        }
    }
}

fn scalar_text(value: &Value) -> Option<Box<str>> {
    match value {
        Value::String(s) => Some(s.as_str().into()),
        Value::Number(n) => Some(n.to_string().into()),
        Value::Bool(b) => Some(if *b { "true" } else { "false" }.into()),
        _ => None,
    }
}

/// The claim set of one token, sorted by name for binary search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    entries: Box<[(Box<str>, ClaimValue)]>,
}

impl Claims {
    /// Builds the set from a decoded JWT payload object.
    pub fn from_json_object(object: &serde_json::Map<String, Value>) -> Claims {
        let mut entries: Vec<(Box<str>, ClaimValue)> = object
            .iter()
            .map(|(name, value)| (name.as_str().into(), ClaimValue::from_json(value)))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Claims {
            entries: entries.into(),
        }
    }

    /// [`Claims::from_json_object`] for members already sorted by name and unique (a
    /// verified payload), taking their strings instead of copying them.
    pub fn from_sorted_members(members: Vec<(String, Value)>) -> Claims {
        debug_assert!(members.windows(2).all(|pair| pair[0].0 < pair[1].0));
        Claims {
            entries: members
                .into_iter()
                .map(|(name, value)| (name.into_boxed_str(), ClaimValue::from_owned_json(value)))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&ClaimValue> {
        self.entries
            .binary_search_by(|(key, _)| key.as_ref().cmp(name))
            .ok()
            .map(|index| &self.entries[index].1)
    }

    /// The claim's text when it is a scalar.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(ClaimValue::as_text)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &ClaimValue)> {
        self.entries
            .iter()
            .map(|(name, value)| (name.as_ref(), value))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_become_text_and_arrays_lists() {
        let json = serde_json::json!({
            "run_attempt": "1", "run_id": 42, "ref_protected": true,
            "aud": ["a", "b"], "nested": {"x": 1}, "mixed": ["a", {"b": 1}], "nothing": null
        });
        let claims = Claims::from_json_object(json.as_object().expect("object"));
        assert_eq!(claims.text("run_attempt"), Some("1"));
        assert_eq!(claims.text("run_id"), Some("42"));
        assert_eq!(claims.text("ref_protected"), Some("true"));
        assert_eq!(
            claims.get("aud"),
            Some(&ClaimValue::List(vec!["a".into(), "b".into()].into()))
        );
        assert_eq!(claims.get("nested"), Some(&ClaimValue::Other));
        assert_eq!(claims.get("mixed"), Some(&ClaimValue::Other));
        assert_eq!(claims.get("nothing"), Some(&ClaimValue::Other));
        assert_eq!(claims.get("absent"), None);
    }
}
