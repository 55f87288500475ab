//! SPEC §3 step 6, before any key is touched: the compact JWS split into its three parts,
//! and the JOSE header parsed as raw JSON.
//!
//! The header is read here rather than through `jsonwebtoken::Header` so that `none`, HS256
//! and every other algorithm the issuer does not list are refused by name, and `crit` is
//! seen (the library's `Header` type can hold neither). `jku`, `x5u`, `x5c` and `jwk` are
//! never read: keys come only from the issuer's JWKS.

use std::borrow::Cow;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::Value;

use super::bearer::all_bytes;
use crate::refusal::Reason;

/// The three parts of a compact JWS.
#[derive(Debug, Clone, Copy)]
pub struct TokenParts<'a> {
    /// The JOSE header, base64url as sent.
    pub header: &'a str,
    /// `header.payload`: what the signature covers.
    pub signing_input: &'a str,
    pub payload: &'a str,
    pub signature: &'a str,
}

/// What the JOSE header says that matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoseHeader {
    pub alg: Algorithm,
    pub kid: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kid: Option<Cow<'a, str>>,
    /// Present at all, whatever its value.
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer)?;
    Ok(true)
}

fn is_base64url(part: &str) -> bool {
    all_bytes(part.as_bytes(), is_base64url_byte)
}

/// Branch-free, like [`is_token68`].
pub(super) fn is_base64url_byte(byte: u8) -> bool {
    let letter = (byte | 0x20).wrapping_sub(b'a') < 26;
    let digit = byte.wrapping_sub(b'0') < 10;
    letter | digit | (byte == b'-') | (byte == b'_')
}

/// Splits a compact JWS into its parts: exactly three base64url parts, header non-empty.
pub fn split_token(token: &str) -> Result<TokenParts<'_>, Reason> {
    let (signing_input, signature) = token.rsplit_once('.').ok_or(Reason::MalformedToken)?;
    let (header, payload) = signing_input
        .split_once('.')
        .ok_or(Reason::MalformedToken)?;
    if header.is_empty()
        || !is_base64url(header)
        || !is_base64url(payload)
        || !is_base64url(signature)
    {
        return Err(Reason::MalformedToken);
    }
    Ok(TokenParts {
        header,
        signing_input,
        payload,
        signature,
    })
}

/// The first checks of SPEC §3 step 6, in its order: a compact JWS whose header is a
/// base64url JSON object with an `alg` (`malformed_token`), the `alg` in the issuer's
/// list (`alg_not_allowed`), no `crit` (`malformed_token`).
pub fn parse_header<'a>(
    token: &'a str,
    allowed: &[Algorithm],
) -> Result<(JoseHeader, TokenParts<'a>), Reason> {
    let parts = split_token(token)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(parts.header)
        .map_err(|_| Reason::MalformedToken)?;
    // serde would also read a JSON array into the struct; a JOSE header is an object.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Reason::MalformedToken);
    }
    // serde skips the members `RawHeader` does not read without checking their bytes or
    // escapes; the whole header must be valid JSON text (UTF-8, no lone surrogates), so it
    // is parsed once in full. Only a cache miss gets here: the cost sits beside a signature.
    if serde_json::from_slice::<Value>(&bytes).is_err() {
        return Err(Reason::MalformedToken);
    }
    // Duplicate `alg`, `kid` or `crit` members are an error here, not "last one wins".
    let raw: RawHeader<'_> = serde_json::from_slice(&bytes).map_err(|_| Reason::MalformedToken)?;
    let alg_name = raw.alg.ok_or(Reason::MalformedToken)?;
    let alg = Algorithm::from_str(&alg_name).map_err(|_| Reason::AlgNotAllowed)?;
    if !allowed.contains(&alg) {
        return Err(Reason::AlgNotAllowed);
    }
    if raw.crit {
        return Err(Reason::MalformedToken);
    }
    Ok((
        JoseHeader {
            alg,
            kid: raw.kid.map(Cow::into_owned),
        },
        parts,
    ))
}
