//! For the audit log of refused tokens: the few claims SPEC §6 lets it show, read from a
//! payload whose signature did not verify. Nothing here is trusted.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::jose::split_token;

/// The few claims SPEC §6 lets the audit log show, as `unverified_*`, for a token whose
/// signature did not verify. Values are cut to 256 bytes; nothing here is trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnverifiedClaims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    pub repository: Option<String>,
    pub run_id: Option<String>,
    pub check_run_id: Option<String>,
    pub jti: Option<String>,
}

/// Reads [`UnverifiedClaims`] from a token's payload without checking anything. Any
/// problem gives empty fields.
pub fn unverified_claims(token: &str) -> UnverifiedClaims {
    let object = split_token(token)
        .ok()
        .and_then(|parts| URL_SAFE_NO_PAD.decode(parts.payload).ok())
        .and_then(|bytes| serde_json::from_slice::<serde_json::Map<String, Value>>(&bytes).ok());
    let Some(object) = object else {
        return UnverifiedClaims::default();
    };
    let text = |name: &str| {
        let mut text = match object.get(name)? {
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            _ => return None,
        };
        text.truncate(text.floor_char_boundary(256));
        Some(text)
    };
    UnverifiedClaims {
        iss: text("iss"),
        sub: text("sub"),
        repository: text("repository"),
        run_id: text("run_id"),
        check_run_id: text("check_run_id"),
        jti: text("jti"),
    }
}
