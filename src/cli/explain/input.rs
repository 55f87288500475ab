//! The inputs of `explain`: the token decoded (split and base64url-decoded, NOT verified),
//! the request target (method and URL), and where the revocation list comes from.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Method;
use serde_json::{Map, Value};

use crate::auth::claims::Claims;
use crate::auth::verify::split_token;
use crate::config::Config;
use crate::policy::revocation::RevocationList;

/// A token split and decoded, NOT verified. `Debug` leaves the token text out, so that
/// no panic message or log line can carry it.
#[derive(Clone)]
pub struct DecodedToken {
    /// The compact token as the gateway would see it (after "Bearer " and whitespace),
    /// kept to run the gateway's own header checks; never printed.
    pub(super) compact: String,
    /// The JOSE header object.
    pub header: Map<String, Value>,
    /// The payload object.
    pub payload: Map<String, Value>,
    pub claims: Claims,
}

impl std::fmt::Debug for DecodedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedToken")
            .field("bytes", &self.compact.len())
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl DecodedToken {
    /// A string member of the JOSE header.
    pub(super) fn header_text(&self, name: &str) -> Option<&str> {
        self.header.get(name).and_then(Value::as_str)
    }

    /// Size in bytes, as `max_token_bytes` counts it.
    pub fn len(&self) -> usize {
        self.compact.len()
    }

    pub fn is_empty(&self) -> bool {
        self.compact.is_empty()
    }
}

/// Splits a compact JWS and decodes its header and payload as JSON objects, checking
/// nothing else. The error says which part is wrong and never quotes the token.
pub fn decode_token(token: &str) -> Result<DecodedToken, String> {
    let trimmed = token.trim();
    // Operators paste whole header values; the gateway only ever sees what follows "Bearer".
    let compact = match trimmed.split_once(char::is_whitespace) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => trimmed,
    };
    if compact.is_empty() {
        return Err("the token is empty".to_owned());
    }
    let parts = split_token(compact).map_err(|_| {
        "the token cannot be decoded: a JWT is three base64url parts joined by dots \
         (header.payload.signature)"
            .to_owned()
    })?;
    let header = decode_object(parts.header, "header")?;
    let payload = decode_object(parts.payload, "payload")?;
    let claims = Claims::from_json_object(&payload);
    Ok(DecodedToken {
        compact: compact.to_owned(),
        header,
        payload,
        claims,
    })
}

fn decode_object(part: &str, name: &str) -> Result<Map<String, Value>, String> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| format!("the token's {name} is not valid base64url"))?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(format!("the token's {name} is JSON but not an object")),
        Err(_) => Err(format!("the token's {name} is not JSON")),
    }
}

/// The request to explain: what routing looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTarget {
    pub method: Method,
    /// Without port; `None` for a bare path (only routes without `host` can match).
    pub host: Option<String>,
    /// As given, not yet normalised; without the query.
    pub path: String,
}

impl RequestTarget {
    /// Reads `--method` and `--url`. The method is upper-cased because operators type
    /// `post` and mean `POST`.
    pub fn parse(method: &str, url: &str) -> Result<RequestTarget, String> {
        let method = Method::from_bytes(method.trim().to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("jobgate explain: {method:?} is not an HTTP method"))?;
        let uri: http::Uri = url.trim().parse().map_err(|_| {
            format!(
                "jobgate explain: {url:?} is not a URL; give one such as \
                 https://deploy.internal.example/v1/deploy, or a path such as /v1/deploy"
            )
        })?;
        if uri.scheme().is_some() != uri.authority().is_some() || uri.path().is_empty() {
            return Err(format!(
                "jobgate explain: {url:?} is neither a full URL (https://host/path) nor a path \
                 starting with /"
            ));
        }
        Ok(RequestTarget {
            method,
            host: uri.host().map(str::to_owned),
            path: uri.path().to_owned(),
        })
    }
}

/// A TOML error without its source excerpt and caret lines, so it fits one report line.
pub(super) fn one_line(error: &str) -> String {
    let lines: Vec<&str> = error
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.contains('|'))
        .collect();
    lines.join(": ")
}

/// The revocation list as `serve` would load it at start.
#[derive(Debug)]
pub enum RevocationSource {
    /// The config has no `[revocation]`.
    None,
    /// Named but missing: `serve` starts with an empty list.
    Missing(PathBuf),
    /// Named but unreadable or invalid: explain cannot tell what `serve` has in force.
    Unusable(PathBuf, String),
    Loaded(PathBuf, RevocationList),
}

impl RevocationSource {
    /// Reads the file the config names, if any.
    pub fn load(config: &Config) -> RevocationSource {
        let Some(path) = &config.revocation_file else {
            return RevocationSource::None;
        };
        let path = path.clone();
        match std::fs::read_to_string(&path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                RevocationSource::Missing(path)
            }
            Err(error) => RevocationSource::Unusable(path, error.to_string()),
            Ok(text) => match RevocationList::parse(&text) {
                Ok(list) => RevocationSource::Loaded(path, list),
                Err(error) => RevocationSource::Unusable(path, one_line(&error)),
            },
        }
    }
}
