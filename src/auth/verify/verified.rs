//! A verified token: what the cache keeps, built by [`verify_with_key`] (signature, claim
//! types, `iss`: what depends on the token alone, checked once), and [`check_request`], what
//! depends on the request or the clock (`aud`, `exp`, `nbf`, `iat`), checked on every use.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64_simd::Out;
use bytes::Bytes;

use super::jose::{JoseHeader, TokenParts};
use super::payload::parse_claims;
use super::signature::check_decoded_signature;
use crate::auth::claims::{ClaimValue, Claims, Span};
use crate::auth::identity::{TokenHeaders, token_headers};
use crate::auth::keys::jwks::VerifyingKey;
use crate::config::IssuerConfig;
use crate::refusal::Reason;

/// A token whose signature verified with one of its issuer's keys, whose claims have the
/// right types and whose `iss` is the issuer's. Audience and time are checked per request.
///
/// Kept by the verified-token cache until `exp`, so it is compact: the claims' buffer also
/// holds the token's header segment, raw signature and `kid` (see `Wire`) and the
/// derived identity header values, and the identity headers are positions in it.
#[derive(Debug)]
pub struct VerifiedToken {
    pub claims: Claims,
    pub exp: u64,
    pub iat: u64,
    pub nbf: Option<u64>,
    /// The [`KeyStore::id`](crate::auth::keys::KeyStore::id) of the issuer it verified under.
    pub(super) issuer_id: u64,
    /// Which key verified it (see `VerifyingKey::fingerprint`).
    pub(super) key_fingerprint: [u8; 32],
    wire: Wire,
    /// The identity headers of the issuer's table, or why one cannot be forwarded (the
    /// refusal waits until the rules admitted the request, SPEC §3).
    headers: Result<TokenHeaders, Reason>,
}

/// Where the parts of the token as sent sit in the claims' buffer (after the payload,
/// which is the buffer's start), for [`VerifiedToken::is_encoded_by`].
#[derive(Debug, Clone, Copy)]
struct Wire {
    payload_len: usize,
    /// The header segment, base64url as sent.
    header: Span,
    /// The signature, decoded.
    signature: Span,
    kid: Option<Span>,
}

impl VerifiedToken {
    pub fn issuer_id(&self) -> u64 {
        self.issuer_id
    }

    /// The `kid` of the header, when it had one.
    pub fn kid(&self) -> Option<&str> {
        self.wire
            .kid
            .and_then(|span| std::str::from_utf8(self.claims.bytes(span)).ok())
    }

    /// The identity headers this token gives (SPEC §4), except `X-Jobgate-Route`. Built
    /// with the token: a cached token belongs to one issuer's key store, and a store is
    /// replaced whenever its issuer's settings (header table included) change.
    pub fn identity_headers(&self) -> Result<&TokenHeaders, Reason> {
        self.headers.as_ref().map_err(|reason| *reason)
    }

    /// Whether `token` is, byte for byte, the token this was verified from: the cache's
    /// guard, so that a token sharing a cache slot can never pass as this one. The payload
    /// is kept decoded (it is the claims), so the incoming one is decoded to compare; the
    /// strict base64url decoding refuses every second spelling of the same bytes, so equal
    /// bytes mean equal text.
    pub fn is_encoded_by(&self, token: &str) -> bool {
        // No separate check of the characters: the header is compared as it is, and the
        // strict decoding refuses anything that is not base64url.
        let Some((signing_input, signature)) = token.rsplit_once('.') else {
            return false;
        };
        let Some((header, payload)) = signing_input.split_once('.') else {
            return false;
        };
        let claims = &self.claims;
        header.as_bytes() == claims.bytes(self.wire.header)
            && decodes_to(signature.as_bytes(), claims.bytes(self.wire.signature))
            && decodes_to(
                payload.as_bytes(),
                claims.bytes(Span::of(0, self.wire.payload_len)),
            )
    }

    /// Heap bytes this token holds (claims, parts of the token, headers), for the memory
    /// figures and tests.
    pub fn heap_bytes(&self) -> usize {
        self.claims.heap_bytes() + self.headers.as_ref().map_or(0, TokenHeaders::heap_bytes)
    }

    #[cfg(test)]
    pub(crate) fn for_tests(claims: Claims, exp: u64, iat: u64) -> Self {
        VerifiedToken {
            claims,
            exp,
            iat,
            nbf: None,
            issuer_id: 0,
            key_fingerprint: [0; 32],
            wire: Wire {
                payload_len: 0,
                header: Span::of(0, 0),
                signature: Span::of(0, 0),
                kid: None,
            },
            headers: Err(Reason::UnforwardableClaim),
        }
    }
}

#[cfg(test)]
impl VerifiedToken {
    /// A token cached as if verified from `token` (a compact JWS with an object payload),
    /// whatever its signature: for tests of the cache's compare.
    pub(crate) fn for_tests_encoded(token: &str, exp: u64, kid: &str) -> Self {
        let parts = super::jose::split_token(token).expect("a compact JWS");
        let signature = URL_SAFE_NO_PAD.decode(parts.signature).expect("base64url");
        let payload = URL_SAFE_NO_PAD.decode(parts.payload).expect("base64url");
        let mut claims = crate::auth::claims::ClaimsDraft::parse(payload)
            .expect("an object payload")
            .claims;
        let wire = Wire {
            payload_len: decoded_len(parts.payload.len()),
            header: claims.push(parts.header.as_bytes()),
            signature: claims.push(&signature),
            kid: Some(claims.push(kid.as_bytes())),
        };
        let mut token = VerifiedToken::for_tests(claims.finish(), exp, 0);
        token.wire = wire;
        token
    }
}

/// Whether base64url `text` decodes (strictly) to `expected`, without allocating: decoded
/// a chunk at a time on the stack, stopping at the first difference. With `base64-simd`
/// (SSE4.1/AVX2 picked at run time): a GitHub token's payload and signature take ~5 k
/// instructions this way against ~18 k with the `base64` crate, on every cache hit.
fn decodes_to(text: &[u8], expected: &[u8]) -> bool {
    // Whole groups of 4 characters decode to 3 bytes each, so chunks can be decoded apart.
    const CHUNK: usize = 1024;
    if decoded_len(text.len()) != expected.len() {
        return false;
    }
    let mut decoded = [0u8; CHUNK / 4 * 3];
    let mut rest = expected;
    for chunk in text.chunks(CHUNK) {
        let Ok(bytes) = base64_simd::URL_SAFE_NO_PAD.decode(chunk, Out::from_slice(&mut decoded))
        else {
            return false;
        };
        let Some((head, tail)) = rest.split_at_checked(bytes.len()) else {
            return false;
        };
        if head != &*bytes {
            return false;
        }
        rest = tail;
    }
    rest.is_empty()
}

/// How many bytes `len` characters of unpadded base64url decode to.
fn decoded_len(len: usize) -> usize {
    len / 4 * 3 + (len % 4).saturating_sub(1)
}

/// Verifies a token with a key chosen for it: signature, claim types, `iss`. What the
/// cache keeps. `issuer_id` is the [`KeyStore::id`](crate::auth::keys::KeyStore::id) the
/// key came from, `names` the issuer's
/// [`wire_names`](crate::auth::identity::wire_names).
pub fn verify_with_key(
    issuer: &IssuerConfig,
    issuer_id: u64,
    names: &Arc<[Bytes]>,
    key: &VerifyingKey,
    header: &JoseHeader,
    parts: &TokenParts<'_>,
) -> Result<VerifiedToken, Reason> {
    // Decoded once, strictly (as the cache's compare will decode it), for the check and
    // for the cache.
    let signature = URL_SAFE_NO_PAD
        .decode(parts.signature)
        .map_err(|_| Reason::MalformedToken)?;
    check_decoded_signature(parts, &signature, key, header.alg)?;
    let (mut claims, times) = parse_claims(parts.payload, issuer)?;
    let wire = Wire {
        payload_len: decoded_len(parts.payload.len()),
        header: claims.push(parts.header.as_bytes()),
        signature: claims.push(&signature),
        kid: header.kid.as_deref().map(|kid| claims.push(kid.as_bytes())),
    };
    let headers = token_headers(issuer, &mut claims, names);
    Ok(VerifiedToken {
        claims: claims.finish(),
        exp: times.exp,
        iat: times.iat,
        nbf: times.nbf,
        issuer_id,
        key_fingerprint: *key.fingerprint(),
        wire,
        headers,
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
        Some(ClaimValue::Text(aud)) => aud == audience,
        Some(ClaimValue::List(auds)) => auds.iter().any(|aud| aud == audience),
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
