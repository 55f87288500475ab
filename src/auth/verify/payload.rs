//! The token's payload after its signature verified: claim types and times (RFC 7519
//! NumericDate), duplicate members refused (see [`ClaimsDraft::parse`]), and `iss` compared with
//! the issuer's URL.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::auth::claims::ClaimsDraft;
use crate::config::IssuerConfig;
use crate::refusal::Reason;

/// A NumericDate (RFC 7519 §2): any JSON number, as whole seconds; negative is 0.
pub fn numeric_date(value: &Value) -> Option<u64> {
    let Value::Number(number) = value else {
        return None;
    };
    if let Some(seconds) = number.as_u64() {
        return Some(seconds);
    }
    if number.as_i64().is_some() {
        return Some(0);
    }
    // `as` saturates: 1e300 becomes u64::MAX, -5.5 becomes 0.
    number.as_f64().map(|seconds| seconds.floor() as u64)
}

/// The registered times of a token, read from its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenTimes {
    pub exp: u64,
    pub iat: u64,
    pub nbf: Option<u64>,
}

/// The claim-type rules of SPEC §3 step 6 (`malformed_token` when broken): `iss`, `sub`,
/// `jti` strings when present; `aud` a string or a list of strings; `exp` and `iat`
/// required NumericDates; `nbf` optional. The error names the broken claim, for `explain`.
pub fn claim_times(object: &serde_json::Map<String, Value>) -> Result<TokenTimes, String> {
    claim_times_by(|name| object.get(name))
}

/// [`claim_times`] over any lookup of the payload's members by name.
fn claim_times_by<'v>(get: impl Fn(&str) -> Option<&'v Value>) -> Result<TokenTimes, String> {
    for name in ["iss", "sub", "jti"] {
        if !matches!(get(name), None | Some(Value::String(_))) {
            return Err(format!("{name} must be a string"));
        }
    }
    match get("aud") {
        None | Some(Value::String(_)) => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
        Some(_) => return Err("aud must be a string or a list of strings".to_owned()),
    }
    let date = |name: &str| match get(name) {
        None => Err(format!("{name} is missing")),
        Some(value) => numeric_date(value).ok_or(format!("{name} is not a number")),
    };
    let exp = date("exp")?;
    let iat = date("iat")?;
    let nbf = match get("nbf") {
        None => None,
        Some(_) => Some(date("nbf")?),
    };
    Ok(TokenTimes { exp, iat, nbf })
}

/// The checks after the signature that depend on the token alone: claim types
/// (`malformed_token`), then `iss` (`wrong_issuer`). The claims come back open for
/// appending (see [`ClaimsDraft`]).
pub fn parse_claims(
    payload: &str,
    issuer: &IssuerConfig,
) -> Result<(ClaimsDraft, TokenTimes), Reason> {
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| Reason::MalformedToken)?;
    let parsed = ClaimsDraft::parse(bytes).map_err(|_| Reason::MalformedToken)?;
    let get = |name: &str| parsed.registered.get(name);
    let times = claim_times_by(get).map_err(|_| Reason::MalformedToken)?;
    if get("iss").and_then(Value::as_str) != Some(issuer.url.as_str()) {
        return Err(Reason::WrongIssuer);
    }
    Ok((parsed.claims, times))
}
