//! A verified token: what the cache keeps, built by [`verify_with_key`] (signature, claim
//! types, `iss`: what depends on the token alone, checked once), and [`check_request`], what
//! depends on the request or the clock (`aud`, `exp`, `nbf`, `iat`), checked on every use.

use std::sync::OnceLock;

use super::jose::{JoseHeader, TokenParts};
use super::payload::parse_claims;
use super::signature::check_signature;
use crate::auth::claims::{ClaimValue, Claims};
use crate::auth::identity::{IdentityHeaders, token_headers, wire_headers};
use crate::auth::keys::jwks::VerifyingKey;
use crate::config::IssuerConfig;
use crate::refusal::Reason;

/// A token whose signature verified with one of its issuer's keys, whose claims have the
/// right types and whose `iss` is the issuer's. Audience and time are checked per request.
#[derive(Debug)]
pub struct VerifiedToken {
    pub claims: Claims,
    /// The `kid` of the header, when it had one.
    pub kid: Option<Box<str>>,
    pub exp: u64,
    pub iat: u64,
    pub nbf: Option<u64>,
    /// The [`KeyStore::id`](crate::auth::keys::KeyStore::id) of the issuer it verified under.
    pub(super) issuer_id: u64,
    /// Which key verified it (see `VerifyingKey::fingerprint`).
    pub(super) key_fingerprint: [u8; 32],
    /// The identity headers of the issuer's table, built on first use: a job calling many
    /// times pays for them once, like for its signature.
    headers: OnceLock<Result<IdentityHeaders, Reason>>,
}

impl VerifiedToken {
    pub fn issuer_id(&self) -> u64 {
        self.issuer_id
    }

    /// The identity headers this token gives (SPEC §4), except `X-Jobgate-Route`. Cached:
    /// a cached token belongs to one issuer's key store, and a store is replaced whenever
    /// its issuer's settings (header table included) change.
    pub fn identity_headers(&self, issuer: &IssuerConfig) -> Result<&IdentityHeaders, Reason> {
        self.headers
            .get_or_init(|| token_headers(issuer, &self.claims).map(wire_headers))
            .as_ref()
            .map_err(|reason| *reason)
    }

    #[cfg(test)]
    pub(crate) fn for_tests(claims: Claims, kid: Option<&str>, exp: u64, iat: u64) -> Self {
        VerifiedToken {
            claims,
            kid: kid.map(Into::into),
            exp,
            iat,
            nbf: None,
            issuer_id: 0,
            key_fingerprint: [0; 32],
            headers: OnceLock::new(),
        }
    }
}

/// Verifies a token with a key chosen for it: signature, claim types, `iss`. What the
/// cache keeps. `issuer_id` is the [`KeyStore::id`](crate::auth::keys::KeyStore::id) the
/// key came from.
pub fn verify_with_key(
    issuer: &IssuerConfig,
    issuer_id: u64,
    key: &VerifyingKey,
    header: &JoseHeader,
    parts: &TokenParts<'_>,
) -> Result<VerifiedToken, Reason> {
    check_signature(parts, key, header.alg)?;
    let (claims, times) = parse_claims(parts.payload, issuer)?;
    Ok(VerifiedToken {
        claims,
        kid: header.kid.as_deref().map(Into::into),
        exp: times.exp,
        iat: times.iat,
        nbf: times.nbf,
        issuer_id,
        key_fingerprint: *key.fingerprint(),
        headers: OnceLock::new(),
    })
}

/// The checks made on every request, cached token or not: `aud` contains `audience`
/// (`wrong_audience`), then `exp` (`expired`), `nbf` (`not_yet_valid`), `iat`
/// (`issued_in_future`; older than `max_token_age`: `expired`), all with the issuer's
/// leeway. A token is valid while `now < exp + leeway`.
pub fn check_request(
    token: &VerifiedToken,
    issuer: &IssuerConfig,
    audience: &str,
    now: u64,
) -> Result<(), Reason> {
    let audience_matches = match token.claims.get("aud") {
        Some(ClaimValue::Text(aud)) => aud.as_ref() == audience,
        Some(ClaimValue::List(auds)) => auds.iter().any(|aud| aud.as_ref() == audience),
        _ => false,
    };
    if !audience_matches {
        return Err(Reason::WrongAudience);
    }
    let leeway = issuer.leeway.as_secs();
    if now >= token.exp.saturating_add(leeway) {
        return Err(Reason::Expired);
    }
    if token
        .nbf
        .is_some_and(|nbf| now.saturating_add(leeway) < nbf)
    {
        return Err(Reason::NotYetValid);
    }
    if token.iat > now.saturating_add(leeway) {
        return Err(Reason::IssuedInFuture);
    }
    if let Some(max_age) = issuer.max_token_age
        && now
            > token
                .iat
                .saturating_add(max_age.as_secs())
                .saturating_add(leeway)
    {
        return Err(Reason::Expired);
    }
    Ok(())
}
