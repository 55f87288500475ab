//! Token checks of SPEC §3 steps 5–7, and the [`Authenticator`] the proxy calls.
//!
//! The JOSE header is parsed here as raw JSON, before any key is touched, so that `none`,
//! HS256 and every other algorithm the issuer does not list are refused by name, and `crit`
//! is seen (the `jsonwebtoken` `Header` type can hold neither). Keys come only from the
//! issuer's JWKS (`jku`, `x5u`, `x5c` and `jwk` are never read). The signature is checked
//! with `jsonwebtoken::crypto::verify`, with the key's own algorithm family, and the
//! claims are checked here against a `now` the caller passes in: `jsonwebtoken::decode`
//! reads the clock itself, skips `iss`/`aud` when absent and ignores `iat`, so its
//! `Validation` is not used at all rather than half-trusted.
//!
//! Verified tokens are cached (see `token_cache`): a hit skips only the signature check.
//! What depends on the token alone (header, signature, claim types, `iss`) is checked once;
//! what depends on the request or the clock (`aud`, `exp`, `nbf`, `iat`) on every request.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::errors::ErrorKind;
use prometheus::Histogram;
use serde::Deserialize;
use serde_json::Value;

use crate::claims::{ClaimValue, Claims};
use crate::config::IssuerConfig;
use crate::identity::{IdentityHeaders, token_headers, wire_headers};
use crate::jwks::{KeyChoice, VerifyingKey};
use crate::keys::KeyStore;
use crate::metrics::metrics;
use crate::refusal::Reason;
use crate::token_cache::{CacheCheck, TokenCache, TokenDigest};

// ---------------------------------------------------------------------------------------
// Step 5: the Authorization header.
// ---------------------------------------------------------------------------------------

/// The bearer token of a request, from all its `Authorization` header values (SPEC §3
/// step 5): none or another scheme is `missing_token`; several headers, `Bearer` without a
/// token or with more than one is `invalid_request`; a token longer than
/// `max_token_bytes` is `token_too_large`. A token with bytes outside the RFC 6750
/// token68 alphabet cannot be a JWS and is `malformed_token`.
pub fn extract_bearer<'a, I>(values: I, max_token_bytes: usize) -> Result<&'a str, Reason>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut values = values.into_iter();
    let Some(value) = values.next() else {
        return Err(Reason::MissingToken);
    };
    if values.next().is_some() {
        return Err(Reason::InvalidRequest);
    }
    let value = trim_whitespace(value);
    let (scheme, rest) = match value.iter().position(|&b| is_whitespace(b)) {
        Some(end) => value.split_at(end),
        None => (value, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(Reason::MissingToken);
    }
    let token = trim_whitespace(rest);
    // One pass over the token's bytes on the way in; the reason for a refusal is worked
    // out only when that pass fails. Checked in this order: whitespace inside, size, bytes.
    if token.is_empty() {
        return Err(Reason::InvalidRequest);
    }
    if !all_token68(token) {
        if token.iter().any(|&b| is_whitespace(b)) {
            return Err(Reason::InvalidRequest);
        }
        if token.len() > max_token_bytes {
            return Err(Reason::TokenTooLarge);
        }
        return Err(Reason::MalformedToken);
    }
    if token.len() > max_token_bytes {
        return Err(Reason::TokenTooLarge);
    }
    // Every token68 byte is ASCII, so this cannot fail; no `unsafe` to skip it.
    std::str::from_utf8(token).map_err(|_| Reason::MalformedToken)
}

/// True when every byte is a token68 character (RFC 9110 §11.2).
fn all_token68(bytes: &[u8]) -> bool {
    all_bytes(bytes, is_token68)
}

/// True when `class` holds for every byte. Written without early exits inside fixed-size
/// chunks, so that with a branch-free `class` the compiler emits vector compares: a
/// GitHub token is ~1–2 KB and is scanned on every authenticated request.
#[inline(always)]
fn all_bytes(bytes: &[u8], class: impl Fn(u8) -> bool) -> bool {
    const CHUNK: usize = 32;
    let mut chunks = bytes.chunks_exact(CHUNK);
    let whole = chunks
        .by_ref()
        .all(|chunk| chunk.iter().fold(true, |ok, &b| ok & class(b)));
    whole && chunks.remainder().iter().all(|&b| class(b))
}

fn is_whitespace(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

fn trim_whitespace(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes
        && is_whitespace(*first)
    {
        bytes = rest;
    }
    while let [rest @ .., last] = bytes
        && is_whitespace(*last)
    {
        bytes = rest;
    }
    bytes
}

/// Branch-free (`&`, `|` on `bool`) so that [`all_token68`] vectorises.
fn is_token68(byte: u8) -> bool {
    let letter = (byte | 0x20).wrapping_sub(b'a') < 26;
    let digit = byte.wrapping_sub(b'0') < 10;
    letter
        | digit
        | (byte == b'-')
        | (byte == b'.')
        | (byte == b'_')
        | (byte == b'~')
        | (byte == b'+')
        | (byte == b'/')
        | (byte == b'=')
}

// ---------------------------------------------------------------------------------------
// Step 6: the token.
// ---------------------------------------------------------------------------------------

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
    /// The [`KeyStore::id`] of the issuer it verified under.
    issuer_id: u64,
    /// Which key verified it (see `VerifyingKey::fingerprint`).
    key_fingerprint: [u8; 32],
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

/// The three parts of a compact JWS.
#[derive(Debug, Clone, Copy)]
pub struct TokenParts<'a> {
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
fn is_base64url_byte(byte: u8) -> bool {
    let letter = (byte | 0x20).wrapping_sub(b'a') < 26;
    let digit = byte.wrapping_sub(b'0') < 10;
    letter | digit | (byte == b'-') | (byte == b'_')
}

/// Splits a compact JWS into its parts: exactly three base64url parts, header non-empty.
pub fn split_token(token: &str) -> Result<(&str, TokenParts<'_>), Reason> {
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
    Ok((
        header,
        TokenParts {
            signing_input,
            payload,
            signature,
        },
    ))
}

/// The first checks of SPEC §3 step 6, in its order: a compact JWS whose header is a
/// base64url JSON object with an `alg` (`malformed_token`), the `alg` in the issuer's
/// list (`alg_not_allowed`), no `crit` (`malformed_token`).
pub fn parse_header<'a>(
    token: &'a str,
    allowed: &[Algorithm],
) -> Result<(JoseHeader, TokenParts<'a>), Reason> {
    let (header, parts) = split_token(token)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
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

/// Checks the signature with `key`, which must fit `alg` (the caller chose it so; checked
/// again here because using a key with another family's algorithm is the classic attack).
pub fn check_signature(
    parts: &TokenParts<'_>,
    key: &VerifyingKey,
    alg: Algorithm,
) -> Result<(), Reason> {
    if !key.accepts(alg) {
        return Err(Reason::BadSignature);
    }
    if let Some(parsed) = key.parsed_for(alg) {
        // The same decoding and the same aws-lc parameters as `jsonwebtoken::crypto::verify`
        // (tests compare the two), without rebuilding the key for every token.
        let signature = URL_SAFE_NO_PAD
            .decode(parts.signature)
            .map_err(|_| Reason::MalformedToken)?;
        return parsed
            .verify_sig(parts.signing_input.as_bytes(), &signature)
            .map_err(|_| Reason::BadSignature);
    }
    verify_with_library(parts, key, alg)
}

/// The signature check through `jsonwebtoken`, for the algorithms a key is not pre-parsed for.
fn verify_with_library(
    parts: &TokenParts<'_>,
    key: &VerifyingKey,
    alg: Algorithm,
) -> Result<(), Reason> {
    match jsonwebtoken::crypto::verify(
        parts.signature,
        parts.signing_input.as_bytes(),
        key.decoding_key(),
        alg,
    ) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Reason::BadSignature),
        Err(error) if matches!(error.kind(), ErrorKind::Base64(_)) => Err(Reason::MalformedToken),
        Err(_) => Err(Reason::BadSignature),
    }
}

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

/// A JSON object whose member names are unique, as its members sorted by name. RFC 7519 §4
/// lets a parser take the last of duplicate claims; another reader (an upstream given the
/// token, a log pipeline) may take the first, and then `aud = [theirs, ours]` means two
/// different things. Refused. A sorted list rather than a map: looked up a few times, then
/// moved into [`Claims`] without copying a string.
struct UniqueObject(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = UniqueObject;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object with unique member names")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<UniqueObject, A::Error> {
                let mut members: Vec<(String, Value)> =
                    Vec::with_capacity(map.size_hint().unwrap_or(32));
                while let Some(name) = map.next_key::<String>()? {
                    let value: Value = map.next_value()?;
                    members.push((name, value));
                }
                members.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                if members.windows(2).any(|pair| pair[0].0 == pair[1].0) {
                    return Err(serde::de::Error::custom("duplicate member"));
                }
                Ok(UniqueObject(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

/// The checks after the signature that depend on the token alone: claim types
/// (`malformed_token`), then `iss` (`wrong_issuer`).
pub fn parse_claims(payload: &str, issuer: &IssuerConfig) -> Result<(Claims, TokenTimes), Reason> {
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| Reason::MalformedToken)?;
    let UniqueObject(members) =
        serde_json::from_slice(&bytes).map_err(|_| Reason::MalformedToken)?;
    let get = |name: &str| {
        members
            .binary_search_by(|(key, _)| key.as_str().cmp(name))
            .ok()
            .map(|index| &members[index].1)
    };
    let times = claim_times_by(get).map_err(|_| Reason::MalformedToken)?;
    if get("iss").and_then(Value::as_str) != Some(issuer.url.as_str()) {
        return Err(Reason::WrongIssuer);
    }
    Ok((Claims::from_sorted_members(members), times))
}

/// Verifies a token with a key chosen for it: signature, claim types, `iss`. What the
/// cache keeps. `issuer_id` is the [`KeyStore::id`] the key came from.
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

// ---------------------------------------------------------------------------------------
// The authenticator.
// ---------------------------------------------------------------------------------------

/// A request's token passed every check of SPEC §3 step 6.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub token: Arc<VerifiedToken>,
    /// Whether the signature check was skipped thanks to the cache.
    pub cache_hit: bool,
}

/// A refused token.
#[derive(Debug, Clone)]
pub struct AuthError {
    pub reason: Reason,
    /// Set when the signature verified but a later check refused the token (issuer's,
    /// audience, time): its claims are genuine and may be logged under their own names.
    pub verified: Option<Arc<VerifiedToken>>,
    pub cache_hit: bool,
}

impl AuthError {
    fn new(reason: Reason) -> AuthError {
        AuthError {
            reason,
            verified: None,
            cache_hit: false,
        }
    }
}

impl From<Reason> for AuthError {
    fn from(reason: Reason) -> AuthError {
        AuthError::new(reason)
    }
}

enum Attempt {
    Done(Result<Authenticated, AuthError>),
    /// The token's kid is not in the current set: a refetch may find it.
    UnknownKid(String),
}

/// Token verification for one config: the key stores of its issuers (in config order) and
/// the verified-token cache. Cheap to share; build a new one per config load with
/// [`Authenticator::reload`] so that unchanged issuers keep their keys.
pub struct Authenticator {
    stores: Vec<Arc<KeyStore>>,
    cache: Arc<TokenCache>,
    hit_seconds: Histogram,
    miss_seconds: Histogram,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("stores", &self.stores)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Starts a key store (and its background fetching) for every issuer. Returns at once;
    /// issuers answer `keys_unavailable` until their first fetch succeeds.
    pub fn new(issuers: &[Arc<IssuerConfig>], cache_capacity: usize) -> Authenticator {
        let stores = issuers
            .iter()
            .map(|issuer| Arc::new(KeyStore::start(Arc::clone(issuer))))
            .collect();
        Authenticator::from_stores(stores, Arc::new(TokenCache::new(cache_capacity)))
    }

    /// Builds an authenticator from stores made elsewhere (tests, benchmarks).
    pub fn from_stores(stores: Vec<Arc<KeyStore>>, cache: Arc<TokenCache>) -> Authenticator {
        let histogram = &metrics().auth_duration_seconds;
        Authenticator {
            stores,
            cache,
            hit_seconds: histogram.with_label_values(&["hit"]),
            miss_seconds: histogram.with_label_values(&["miss"]),
        }
    }

    /// The authenticator for a reloaded config (SPEC §7): an issuer whose settings are
    /// unchanged (equal `IssuerConfig`) keeps its store, its keys and its cached tokens;
    /// a changed or new one gets a new store. `self` is left as it was, so it can keep
    /// serving if the reload is abandoned; a store no authenticator holds any more stops
    /// fetching when the last one is dropped. The cache is kept when its capacity is.
    pub fn reload(&self, issuers: &[Arc<IssuerConfig>], cache_capacity: usize) -> Authenticator {
        let mut unused: Vec<Option<&Arc<KeyStore>>> = self.stores.iter().map(Some).collect();
        let stores = issuers
            .iter()
            .map(|issuer| {
                let kept = unused.iter_mut().find_map(|slot| {
                    slot.filter(|store| **store.issuer() == **issuer)
                        .inspect(|_| *slot = None)
                });
                match kept {
                    Some(store) => Arc::clone(store),
                    None => Arc::new(KeyStore::start(Arc::clone(issuer))),
                }
            })
            .collect();
        let cache = if TokenCache::rounded_capacity(cache_capacity) == self.cache.capacity() {
            Arc::clone(&self.cache)
        } else {
            Arc::new(TokenCache::new(cache_capacity))
        };
        Authenticator::from_stores(stores, cache)
    }

    /// The key stores, parallel to the config's issuers.
    pub fn stores(&self) -> &[Arc<KeyStore>] {
        &self.stores
    }

    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    /// Readiness of one issuer (by index into the config's issuers).
    pub fn has_keys(&self, issuer: usize) -> bool {
        self.stores
            .get(issuer)
            .is_some_and(|store| store.has_keys())
    }

    /// Names of the issuers that have no usable keys now (`/readyz` lists them).
    pub fn issuers_without_keys(&self) -> Vec<&str> {
        self.stores
            .iter()
            .filter(|store| !store.has_keys())
            .map(|store| store.issuer().name.as_str())
            .collect()
    }

    /// Stops every store's fetching (process exit). Stores shared with another
    /// authenticator stop too, so use this only when nothing will authenticate again.
    pub fn shutdown(&self) {
        for store in &self.stores {
            store.shutdown();
        }
    }

    /// Verifies `token` for a route whose issuer is `issuer` (index into the config's
    /// issuers) and whose audience is `audience`, at `now` (Unix seconds). Waits only when
    /// the token's kid is unknown (one refetch, at most 2 s). Records
    /// `jobgate_auth_duration_seconds{cache}`; the caller must not.
    pub async fn authenticate(
        &self,
        issuer: usize,
        audience: &str,
        token: &str,
        now: u64,
    ) -> Result<Authenticated, AuthError> {
        let started = Instant::now();
        let result = match self.attempt(issuer, audience, token, now) {
            Attempt::Done(result) => result,
            Attempt::UnknownKid(kid) => match self.stores[issuer].refetch_for(&kid).await {
                Ok(_) => match self.attempt(issuer, audience, token, now) {
                    Attempt::Done(result) => result,
                    Attempt::UnknownKid(_) => Err(Reason::UnknownKey.into()),
                },
                Err(reason) => Err(reason.into()),
            },
        };
        self.observe(started, &result);
        result
    }

    /// [`Authenticator::authenticate`] without ever waiting: `None` when the token's kid
    /// is unknown and a refetch is needed (then call `authenticate`).
    pub fn authenticate_sync(
        &self,
        issuer: usize,
        audience: &str,
        token: &str,
        now: u64,
    ) -> Option<Result<Authenticated, AuthError>> {
        let started = Instant::now();
        match self.attempt(issuer, audience, token, now) {
            Attempt::Done(result) => {
                self.observe(started, &result);
                Some(result)
            }
            Attempt::UnknownKid(_) => None,
        }
    }

    fn observe(&self, started: Instant, result: &Result<Authenticated, AuthError>) {
        let hit = match result {
            Ok(done) => done.cache_hit,
            Err(error) => error.cache_hit,
        };
        let histogram = if hit {
            &self.hit_seconds
        } else {
            &self.miss_seconds
        };
        histogram.observe(started.elapsed().as_secs_f64());
    }

    fn attempt(&self, issuer_index: usize, audience: &str, token: &str, now: u64) -> Attempt {
        let Some(store) = self.stores.get(issuer_index) else {
            // A route naming an issuer index the config does not have is a bug upstream;
            // refusing as an outage keeps it from looking like a bad token.
            tracing::error!(
                issuer_index,
                "authenticate called with an unknown issuer index"
            );
            return Attempt::Done(Err(Reason::KeysUnavailable.into()));
        };
        let issuer = store.issuer();
        let current = store.current();
        let digest = TokenDigest::of(token);
        if let Some(snapshot) = current.as_ref() {
            let cached = self.cache.get(&digest, now, |entry| {
                if entry.issuer_id != store.id() {
                    CacheCheck::Skip
                } else if snapshot
                    .keys
                    .contains_key(entry.kid.as_deref(), &entry.key_fingerprint)
                {
                    CacheCheck::Use
                } else {
                    CacheCheck::Evict
                }
            });
            if let Some(token) = cached {
                return Attempt::Done(finish(token, issuer, audience, now, true));
            }
        }
        let (header, parts) = match parse_header(token, &issuer.algorithms) {
            Ok(parsed) => parsed,
            Err(reason) => return Attempt::Done(Err(reason.into())),
        };
        let Some(snapshot) = current.as_ref() else {
            return Attempt::Done(Err(Reason::KeysUnavailable.into()));
        };
        let key = match snapshot.keys.select(header.kid.as_deref(), header.alg) {
            KeyChoice::Key(key) => key,
            KeyChoice::Unsuitable => return Attempt::Done(Err(Reason::BadSignature.into())),
            KeyChoice::Ambiguous => return Attempt::Done(Err(Reason::UnknownKey.into())),
            KeyChoice::UnknownKid => {
                let kid = header.kid.unwrap_or_default();
                if store.is_known_unknown(&kid, snapshot.generation) {
                    return Attempt::Done(Err(Reason::UnknownKey.into()));
                }
                return Attempt::UnknownKid(kid);
            }
        };
        match verify_with_key(issuer, store.id(), key, &header, &parts) {
            Ok(verified) => {
                let verified = Arc::new(verified);
                self.cache.insert(digest, Arc::clone(&verified), now);
                Attempt::Done(finish(verified, issuer, audience, now, false))
            }
            Err(reason) => Attempt::Done(Err(reason.into())),
        }
    }
}

fn finish(
    token: Arc<VerifiedToken>,
    issuer: &IssuerConfig,
    audience: &str,
    now: u64,
    cache_hit: bool,
) -> Result<Authenticated, AuthError> {
    match check_request(&token, issuer, audience, now) {
        Ok(()) => Ok(Authenticated { token, cache_hit }),
        Err(reason) => Err(AuthError {
            reason,
            verified: Some(token),
            cache_hit,
        }),
    }
}

// ---------------------------------------------------------------------------------------
// For the audit log of refused tokens.
// ---------------------------------------------------------------------------------------

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
        .and_then(|(_, parts)| URL_SAFE_NO_PAD.decode(parts.payload).ok())
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_lc_rs::signature as aws_sig;
    use serde_json::json;

    use super::*;
    use crate::config::IssuerKind;
    use crate::jwks::test_keys::*;
    use crate::jwks::{KeySet, parse_jwks};

    const NOW: u64 = 1_760_000_000;
    const ISS: &str = "https://token.actions.githubusercontent.com";
    const AUD: &str = "https://deploy.internal.example";

    #[test]
    fn token68_class_is_exactly_rfc_9110() {
        for byte in 0..=u8::MAX {
            let expected = byte.is_ascii_alphanumeric()
                || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=');
            assert_eq!(is_token68(byte), expected, "byte {byte:#04x}");
        }
        // A bad byte anywhere: in a whole chunk, in the remainder, first, last.
        let good = "a".repeat(100);
        for at in [0, 1, 31, 32, 63, 64, 95, 96, 99] {
            let mut bad = good.clone().into_bytes();
            bad[at] = b'!';
            assert!(!all_token68(&bad), "bad byte at {at}");
        }
        assert!(all_token68(good.as_bytes()));
        assert!(all_token68(b""));
        for byte in 0..=u8::MAX {
            let expected = byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_';
            assert_eq!(is_base64url_byte(byte), expected, "byte {byte:#04x}");
        }
    }

    /// The pre-parsed aws-lc key and `jsonwebtoken` agree on every signature, good or bad.
    #[test]
    fn parsed_key_path_agrees_with_jsonwebtoken() {
        let mut rsa_any_alg = rsa_jwk(rsa(0), "r");
        if let Some(members) = rsa_any_alg.as_object_mut() {
            members.remove("alg");
        }
        let jwks = json!({"keys": [rsa_any_alg, p256_jwk(p256(), "p")]});
        let keys = parse_jwks(
            jwks.to_string().as_bytes(),
            "test",
            &[Algorithm::RS256, Algorithm::PS256, Algorithm::ES256],
        )
        .expect("key set");
        let claims = json!({"sub": "x"});
        let rs256 = rs256(rsa(0), "r", &claims);
        let ps256 = token(&json!({"alg": "PS256", "kid": "r"}), &claims, |m| {
            sign_rsa(rsa(0), &aws_sig::RSA_PSS_SHA256, m)
        });
        let es256 = token(&json!({"alg": "ES256", "kid": "p"}), &claims, |m| {
            sign_p256(p256(), m)
        });
        let mut cases = Vec::new();
        for (token, alg, kid) in [
            (rs256, Algorithm::RS256, "r"),
            (ps256, Algorithm::PS256, "r"),
            (es256, Algorithm::ES256, "p"),
        ] {
            let (signing_input, signature) = token.rsplit_once('.').expect("three parts");
            let mut flipped = signature.as_bytes().to_vec();
            flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
            let flipped = String::from_utf8(flipped).expect("ascii");
            let variants = [
                (format!("{signing_input}.{signature}"), Ok(())),
                (
                    format!("{signing_input}.{flipped}"),
                    Err(Reason::BadSignature),
                ),
                (
                    format!("{signing_input}x.{signature}"),
                    Err(Reason::BadSignature),
                ),
                (
                    format!("{signing_input}.{}", &signature[..20]),
                    Err(Reason::BadSignature),
                ),
                (
                    format!("{signing_input}.{signature}AAA"),
                    Err(Reason::MalformedToken),
                ),
            ];
            cases.extend(variants.map(|(token, expected)| (token, alg, kid, expected)));
        }
        for (token, alg, kid, expected) in cases {
            let (_, parts) = split_token(&token).expect("well-formed");
            let KeyChoice::Key(key) = keys.select(Some(kid), alg) else {
                panic!("no key for {kid}");
            };
            assert_eq!(key.parsed_for(alg).is_some(), alg != Algorithm::PS256);
            assert_eq!(check_signature(&parts, key, alg), expected, "{alg:?}");
            assert_eq!(
                verify_with_library(&parts, key, alg),
                expected,
                "{alg:?} through jsonwebtoken"
            );
        }
    }

    #[test]
    fn parsed_claims_match_the_json_object_and_refuse_duplicates() {
        let issuer = issuer_with(vec![Algorithm::RS256]);
        let payload = json!({
            "iss": ISS, "aud": [AUD, "other"], "sub": "repo:acme/app:ref:refs/heads/main",
            "exp": NOW + 300, "iat": NOW, "nbf": NOW - 5, "run_attempt": "1",
            "run_number": 7, "ok": true, "nothing": null, "nested": {"a": [1, {"b": 2}]},
            "mixed": [1, "x", null], "Zed": "upper", "émoji": "\u{1F600}",
        });
        let encoded = b64(payload.to_string().as_bytes());
        let (claims, times) = parse_claims(&encoded, &issuer).expect("valid payload");
        assert_eq!(
            claims,
            Claims::from_json_object(payload.as_object().expect("object"))
        );
        assert_eq!(
            (times.exp, times.iat, times.nbf),
            (NOW + 300, NOW, Some(NOW - 5))
        );

        let duplicate = format!(
            r#"{{"iss":"{ISS}","exp":{},"iat":{NOW},"sub":"a","sub":"b"}}"#,
            NOW + 300
        );
        assert_eq!(
            parse_claims(&b64(duplicate.as_bytes()), &issuer).map(|_| ()),
            Err(Reason::MalformedToken)
        );
        let wrong_issuer = json!({"iss": "https://evil.example", "exp": NOW + 300, "iat": NOW});
        assert_eq!(
            parse_claims(&b64(wrong_issuer.to_string().as_bytes()), &issuer).map(|_| ()),
            Err(Reason::WrongIssuer)
        );
        for not_an_object in ["[]", "\"text\"", "{} x", "{\"exp\": 1,}"] {
            assert_eq!(
                parse_claims(&b64(not_an_object.as_bytes()), &issuer).map(|_| ()),
                Err(Reason::MalformedToken),
                "{not_an_object}"
            );
        }
    }

    #[test]
    fn bearer_refusal_reasons_keep_their_order() {
        fn bearer(value: &str, max: usize) -> Result<&str, Reason> {
            extract_bearer([value.as_bytes()], max)
        }
        assert_eq!(bearer("Bearer abc.def.ghi", 64), Ok("abc.def.ghi"));
        assert_eq!(bearer("Bearer abc def", 4), Err(Reason::InvalidRequest));
        assert_eq!(bearer("Bearer abc\tdef", 4), Err(Reason::InvalidRequest));
        assert_eq!(bearer("Bearer abc!def", 4), Err(Reason::TokenTooLarge));
        assert_eq!(bearer("Bearer abcdefgh", 4), Err(Reason::TokenTooLarge));
        assert_eq!(bearer("Bearer abc!", 64), Err(Reason::MalformedToken));
        assert_eq!(bearer("Bearer ab\u{e9}", 64), Err(Reason::MalformedToken));
        assert_eq!(bearer("Bearer   ", 64), Err(Reason::InvalidRequest));
    }

    fn issuer_with(algorithms: Vec<Algorithm>) -> Arc<IssuerConfig> {
        Arc::new(IssuerConfig {
            name: "github".into(),
            url: ISS.into(),
            jwks_url: None,
            kind: IssuerKind::Github,
            server_url: "https://github.com".into(),
            algorithms,
            leeway: Duration::from_secs(60),
            refresh: Duration::from_secs(600),
            min_refetch_interval: Duration::from_secs(30),
            max_stale: Duration::from_secs(86_400),
            max_token_age: None,
            headers: Vec::new(),
        })
    }

    fn key_set(algorithms: &[Algorithm]) -> KeySet {
        let document = json!({"keys": [rsa_jwk(rsa(0), "k1"), rsa_jwk(rsa(1), "k2"), p256_jwk(p256(), "ec1")]});
        parse_jwks(document.to_string().as_bytes(), "github", algorithms).expect("set")
    }

    fn authenticator_for(issuer: Arc<IssuerConfig>) -> Authenticator {
        let keys = key_set(&issuer.algorithms);
        let store = Arc::new(KeyStore::with_keys(issuer, keys));
        Authenticator::from_stores(vec![store], Arc::new(TokenCache::new(1000)))
    }

    fn authenticator() -> Authenticator {
        authenticator_for(issuer_with(vec![Algorithm::RS256]))
    }

    fn claims() -> Value {
        json!({
            "iss": ISS, "aud": AUD, "sub": "repo:acme/app:ref:refs/heads/main",
            "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 300,
            "repository": "acme/app", "repository_owner": "acme", "run_id": "42",
        })
    }

    fn with(overrides: Value) -> Value {
        let mut claims = claims();
        for (name, value) in overrides.as_object().expect("object") {
            if value.is_null() {
                claims.as_object_mut().expect("object").remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        claims
    }

    fn good_token() -> String {
        rs256(rsa(0), "k1", &claims())
    }

    fn check(auth: &Authenticator, token: &str) -> Result<Authenticated, Reason> {
        check_at(auth, token, NOW)
    }

    fn check_at(auth: &Authenticator, token: &str, now: u64) -> Result<Authenticated, Reason> {
        match auth.authenticate_sync(0, AUD, token, now) {
            Some(result) => result,
            None => futures_lite_block_on(auth.authenticate(0, AUD, token, now)),
        }
        .map_err(|error| error.reason)
    }

    fn reason(auth: &Authenticator, token: &str) -> Reason {
        match check(auth, token) {
            Ok(_) => panic!("token was accepted"),
            Err(reason) => reason,
        }
    }

    fn header_token(header: Value, claims: &Value) -> String {
        token(&header, claims, |m| {
            sign_rsa(rsa(0), &aws_sig::RSA_PKCS1_SHA256, m)
        })
    }

    #[test]
    fn good_token_is_accepted_then_cached() {
        let auth = authenticator();
        let token = good_token();
        let first = check(&auth, &token).expect("accepted");
        assert!(!first.cache_hit);
        assert_eq!(first.token.claims.text("repository"), Some("acme/app"));
        assert_eq!(first.token.kid.as_deref(), Some("k1"));
        assert_eq!(first.token.exp, NOW + 300);
        assert_eq!(first.token.iat, NOW - 10);
        let second = check(&auth, &token).expect("accepted");
        assert!(second.cache_hit);
        assert!(Arc::ptr_eq(&first.token, &second.token));
    }

    #[test]
    fn es256_token_is_accepted() {
        let auth = authenticator_for(issuer_with(vec![Algorithm::RS256, Algorithm::ES256]));
        let token = token(&json!({"alg": "ES256", "kid": "ec1"}), &claims(), |m| {
            sign_p256(p256(), m)
        });
        assert!(check(&auth, &token).is_ok());
    }

    #[test]
    fn alg_none_is_refused_before_any_key() {
        let auth = authenticator();
        let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = b64(claims().to_string().as_bytes());
        assert_eq!(
            reason(&auth, &format!("{header}.{payload}.")),
            Reason::AlgNotAllowed
        );
        let header = b64(br#"{"alg":"None"}"#);
        assert_eq!(
            reason(&auth, &format!("{header}.{payload}.")),
            Reason::AlgNotAllowed
        );
    }

    #[test]
    fn hs256_signed_with_the_public_key_is_refused() {
        let (n, _) = rsa_components(rsa(0));
        fn hmac(secret: &[u8]) -> impl FnOnce(&[u8]) -> Vec<u8> + '_ {
            move |message| {
                let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
                aws_lc_rs::hmac::sign(&key, message).as_ref().to_vec()
            }
        }
        let der = {
            use aws_lc_rs::encoding::AsDer;
            use aws_lc_rs::signature::KeyPair;
            rsa(0).public_key().as_der().expect("der").as_ref().to_vec()
        };
        for secret in [n.as_slice(), der.as_slice()] {
            let forged = token(
                &json!({"alg": "HS256", "kid": "k1"}),
                &claims(),
                hmac(secret),
            );
            assert_eq!(reason(&authenticator(), &forged), Reason::AlgNotAllowed);
            // Even an issuer wrongly configured with HS256 never uses an RSA key for it.
            let careless = authenticator_for(issuer_with(vec![Algorithm::RS256, Algorithm::HS256]));
            assert_eq!(reason(&careless, &forged), Reason::BadSignature);
            let no_kid = token(&json!({"alg": "HS256"}), &claims(), hmac(secret));
            assert_eq!(reason(&careless, &no_kid), Reason::UnknownKey);
        }
    }

    #[test]
    fn algorithms_outside_the_list_are_refused() {
        let auth = authenticator();
        let rs512 = token(&json!({"alg": "RS512", "kid": "k1"}), &claims(), |m| {
            sign_rsa(rsa(0), &aws_sig::RSA_PKCS1_SHA512, m)
        });
        assert_eq!(reason(&auth, &rs512), Reason::AlgNotAllowed);
        let ps256 = token(&json!({"alg": "PS256", "kid": "k1"}), &claims(), |m| {
            sign_rsa(rsa(0), &aws_sig::RSA_PSS_SHA256, m)
        });
        assert_eq!(reason(&auth, &ps256), Reason::AlgNotAllowed);
        assert_eq!(
            reason(&auth, &header_token(json!({"alg": "XYZ"}), &claims())),
            Reason::AlgNotAllowed
        );
        // A key is used only with an algorithm of its family: the RSA key k1 with ES256.
        let mixed = authenticator_for(issuer_with(vec![Algorithm::RS256, Algorithm::ES256]));
        let confused = token(&json!({"alg": "ES256", "kid": "k1"}), &claims(), |m| {
            sign_p256(p256(), m)
        });
        assert_eq!(reason(&mixed, &confused), Reason::BadSignature);
    }

    #[test]
    fn tampering_is_a_bad_signature() {
        let auth = authenticator();
        let token = good_token();
        let (signing_input, signature) = token.rsplit_once('.').expect("three parts");
        let (header, _) = signing_input.split_once('.').expect("three parts");
        let evil = b64(with(json!({"repository_owner": "evil"}))
            .to_string()
            .as_bytes());
        assert_eq!(
            reason(&auth, &format!("{header}.{evil}.{signature}")),
            Reason::BadSignature
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).expect("b64");
        bytes[10] ^= 1;
        assert_eq!(
            reason(&auth, &format!("{signing_input}.{}", b64(&bytes))),
            Reason::BadSignature
        );
        assert_eq!(
            reason(&auth, &format!("{signing_input}.")),
            Reason::BadSignature
        );
        // Signed by a key the issuer does not publish, under a published kid.
        assert_eq!(
            reason(&auth, &rs256(rsa(2), "k1", &claims())),
            Reason::BadSignature
        );
        // Signed by k2, claiming k1.
        assert_eq!(
            reason(&auth, &rs256(rsa(1), "k1", &claims())),
            Reason::BadSignature
        );
        assert!(check(&auth, &rs256(rsa(1), "k2", &claims())).is_ok());
    }

    #[test]
    fn crit_is_malformed_and_key_url_parameters_are_ignored() {
        let auth = authenticator();
        let crit = header_token(
            json!({"alg": "RS256", "kid": "k1", "crit": ["exp"]}),
            &claims(),
        );
        assert_eq!(reason(&auth, &crit), Reason::MalformedToken);
        let crit_null = header_token(
            json!({"alg": "RS256", "kid": "k1", "crit": null}),
            &claims(),
        );
        assert_eq!(reason(&auth, &crit_null), Reason::MalformedToken);
        // The attacker's key, offered in every header parameter that can carry one.
        let attacker = rsa_jwk(rsa(2), "k1");
        let header = json!({"alg": "RS256", "kid": "k1", "jwk": attacker,
            "jku": "https://evil.example/jwks", "x5u": "https://evil.example/cert",
            "x5c": ["MIIB"]});
        let signed_by_attacker = token(&header, &claims(), |m| {
            sign_rsa(rsa(2), &aws_sig::RSA_PKCS1_SHA256, m)
        });
        assert_eq!(reason(&auth, &signed_by_attacker), Reason::BadSignature);
        let mut other_kid = header.clone();
        other_kid["kid"] = json!("attacker");
        let signed = token(&other_kid, &claims(), |m| {
            sign_rsa(rsa(2), &aws_sig::RSA_PKCS1_SHA256, m)
        });
        assert_eq!(reason(&auth, &signed), Reason::UnknownKey);
        // A genuine token carrying these parameters is fine: they are simply not read.
        let genuine = header_token(header, &claims());
        assert!(check(&auth, &genuine).is_ok());
    }

    #[test]
    fn malformed_tokens() {
        let auth = authenticator();
        let good = good_token();
        let (signing_input, signature) = good.rsplit_once('.').expect("parts");
        let (_, payload) = signing_input.split_once('.').expect("parts");
        for bad in [
            String::new(),
            "abc".into(),
            "a.b".into(),
            format!("{good}.extra"),
            format!(".{payload}.{signature}"),
            format!("!!!.{payload}.{signature}"),
            format!("{}.{payload}.{signature}", b64(b"not json")),
            format!("{}.{payload}.{signature}", b64(br#"["RS256"]"#)),
            format!("{}.{payload}.{signature}", b64(br#"{"typ":"JWT"}"#)),
            format!("{}.{payload}.{signature}", b64(br#"{"alg":256}"#)),
            format!(
                "{}.{payload}.{signature}",
                b64(br#"{"alg":"RS256","alg":"none"}"#)
            ),
            format!(
                "{}.{payload}.{signature}",
                b64(br#"{"alg":"RS256","kid":7}"#)
            ),
            format!("{signing_input}.{signature}="),
            format!("{signing_input}.{signature}x"),
        ] {
            assert_eq!(reason(&auth, &bad), Reason::MalformedToken, "{bad:?}");
        }
    }

    #[test]
    fn claim_types_and_required_claims() {
        let auth = authenticator();
        for overrides in [
            json!({"exp": null}),
            json!({"iat": null}),
            json!({"exp": "9999999999"}),
            json!({"iat": true}),
            json!({"nbf": "0"}),
            json!({"iss": 7}),
            json!({"aud": 7}),
            json!({"aud": [AUD, 7]}),
            json!({"sub": {"a": 1}}),
        ] {
            let token = rs256(rsa(0), "k1", &with(overrides.clone()));
            assert_eq!(reason(&auth, &token), Reason::MalformedToken, "{overrides}");
        }
        let not_object = header_token(json!({"alg": "RS256", "kid": "k1"}), &json!([1, 2]));
        assert_eq!(reason(&auth, &not_object), Reason::MalformedToken);
        // Fractional NumericDates are numbers too.
        let fractional = rs256(
            rsa(0),
            "k1",
            &with(json!({"exp": (NOW + 300) as f64 + 0.5})),
        );
        assert!(check(&auth, &fractional).is_ok());
    }

    #[test]
    fn issuer_must_match_exactly() {
        let auth = authenticator();
        for iss in [
            json!(format!("{ISS}/")),
            json!("https://evil.example"),
            Value::Null,
        ] {
            let token = rs256(rsa(0), "k1", &with(json!({ "iss": iss })));
            assert_eq!(reason(&auth, &token), Reason::WrongIssuer, "{iss}");
        }
    }

    #[test]
    fn audience_string_or_array() {
        let auth = authenticator();
        let wrong = rs256(rsa(0), "k1", &with(json!({"aud": "https://other.example"})));
        assert_eq!(reason(&auth, &wrong), Reason::WrongAudience);
        let missing = rs256(rsa(0), "k1", &with(json!({"aud": null})));
        assert_eq!(reason(&auth, &missing), Reason::WrongAudience);
        let array = rs256(rsa(0), "k1", &with(json!({"aud": ["x", AUD]})));
        assert!(check(&auth, &array).is_ok());
        let array_without = rs256(rsa(0), "k1", &with(json!({"aud": ["x", "y"]})));
        assert_eq!(reason(&auth, &array_without), Reason::WrongAudience);
        let empty = rs256(rsa(0), "k1", &with(json!({"aud": []})));
        assert_eq!(reason(&auth, &empty), Reason::WrongAudience);
    }

    #[test]
    fn time_checks_with_leeway() {
        let auth = authenticator();
        let expired = rs256(rsa(0), "k1", &with(json!({"exp": NOW - 61})));
        assert_eq!(reason(&auth, &expired), Reason::Expired);
        let within_leeway = rs256(rsa(0), "k1", &with(json!({"exp": NOW - 59})));
        assert!(check(&auth, &within_leeway).is_ok());
        let at_leeway = rs256(rsa(0), "k1", &with(json!({"exp": NOW - 60})));
        assert_eq!(reason(&auth, &at_leeway), Reason::Expired);
        let not_yet = rs256(rsa(0), "k1", &with(json!({"nbf": NOW + 61})));
        assert_eq!(reason(&auth, &not_yet), Reason::NotYetValid);
        let nbf_in_leeway = rs256(rsa(0), "k1", &with(json!({"nbf": NOW + 60})));
        assert!(check(&auth, &nbf_in_leeway).is_ok());
        let future = rs256(rsa(0), "k1", &with(json!({"iat": NOW + 61, "nbf": null})));
        assert_eq!(reason(&auth, &future), Reason::IssuedInFuture);
        let iat_in_leeway = rs256(rsa(0), "k1", &with(json!({"iat": NOW + 60, "nbf": null})));
        assert!(check(&auth, &iat_in_leeway).is_ok());
        // Order of SPEC §3: audience before time.
        let both = rs256(rsa(0), "k1", &with(json!({"exp": NOW - 1000, "aud": "x"})));
        assert_eq!(reason(&auth, &both), Reason::WrongAudience);
    }

    #[test]
    fn max_token_age() {
        let mut issuer = (*issuer_with(vec![Algorithm::RS256])).clone();
        issuer.max_token_age = Some(Duration::from_secs(900));
        let auth = authenticator_for(Arc::new(issuer));
        let old = rs256(
            rsa(0),
            "k1",
            &with(json!({"iat": NOW - 961, "nbf": null, "exp": NOW + 3600})),
        );
        assert_eq!(reason(&auth, &old), Reason::Expired);
        let fresh = rs256(
            rsa(0),
            "k1",
            &with(json!({"iat": NOW - 959, "nbf": null, "exp": NOW + 3600})),
        );
        assert!(check(&auth, &fresh).is_ok());
    }

    #[test]
    fn key_selection_by_kid() {
        let auth = authenticator();
        let no_kid = token(&json!({"alg": "RS256"}), &claims(), |m| {
            sign_rsa(rsa(0), &aws_sig::RSA_PKCS1_SHA256, m)
        });
        // Two RSA keys: without kid there is no telling which.
        assert_eq!(reason(&auth, &no_kid), Reason::UnknownKey);
        let single = KeySet::from_keys(vec![
            crate::jwks::parse_key(&rsa_jwk(rsa(0), "k1"), &[Algorithm::RS256]).expect("key"),
        ]);
        let store = Arc::new(KeyStore::with_keys(
            issuer_with(vec![Algorithm::RS256]),
            single,
        ));
        let one_key = Authenticator::from_stores(vec![store], Arc::new(TokenCache::new(10)));
        assert!(check(&one_key, &no_kid).is_ok());
        // A fixed store never refetches: unknown kid is unknown_key.
        let unknown = rs256(rsa(0), "nope", &claims());
        let result = futures_lite_block_on(auth.authenticate(0, AUD, &unknown, NOW));
        assert_eq!(result.map_err(|e| e.reason).err(), Some(Reason::UnknownKey));
        assert!(auth.authenticate_sync(0, AUD, &unknown, NOW).is_none());
    }

    /// Runs a future that never waits on a timer (a fixed store never refetches).
    fn futures_lite_block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    #[test]
    fn cache_hit_still_checks_audience_and_time() {
        let auth = authenticator();
        let token = good_token();
        assert!(check(&auth, &token).is_ok());
        let other_route = auth
            .authenticate_sync(0, "https://other.example", &token, NOW)
            .expect("sync");
        let error = other_route.expect_err("refused");
        assert_eq!(error.reason, Reason::WrongAudience);
        assert!(error.cache_hit);
        assert!(error.verified.is_some());
        assert_eq!(
            check_at(&auth, &token, NOW + 400).err(),
            Some(Reason::Expired)
        );
    }

    #[test]
    fn cache_entry_dies_with_its_key() {
        let issuer = issuer_with(vec![Algorithm::RS256]);
        let store = Arc::new(KeyStore::with_keys(
            Arc::clone(&issuer),
            key_set(&issuer.algorithms),
        ));
        let auth =
            Authenticator::from_stores(vec![Arc::clone(&store)], Arc::new(TokenCache::new(10)));
        let token = good_token();
        assert!(check(&auth, &token).is_ok());
        assert!(check(&auth, &token).expect("hit").cache_hit);
        // k1 rotated out: the cached entry is not used, and the token has no key now.
        let rotated = parse_jwks(
            json!({"keys": [rsa_jwk(rsa(1), "k2")]})
                .to_string()
                .as_bytes(),
            "github",
            &[Algorithm::RS256],
        )
        .expect("set");
        store.replace_keys(Some(rotated));
        assert_eq!(check(&auth, &token).err(), Some(Reason::UnknownKey));
        assert_eq!(auth.cache().len(), 0);
        // Same kid, new material: also a miss, then a bad signature.
        let reused_kid = parse_jwks(
            json!({"keys": [rsa_jwk(rsa(1), "k1")]})
                .to_string()
                .as_bytes(),
            "github",
            &[Algorithm::RS256],
        )
        .expect("set");
        store.replace_keys(Some(key_set(&issuer.algorithms)));
        assert!(check(&auth, &token).is_ok());
        store.replace_keys(Some(reused_kid));
        assert_eq!(check(&auth, &token).err(), Some(Reason::BadSignature));
        // No keys at all: an outage, not a bad token.
        store.replace_keys(None);
        assert_eq!(check(&auth, &token).err(), Some(Reason::KeysUnavailable));
        assert!(!auth.has_keys(0));
        assert_eq!(auth.issuers_without_keys(), ["github"]);
        // The header is still judged first.
        assert_eq!(check(&auth, "x.y.z").err(), Some(Reason::MalformedToken));
    }

    #[test]
    fn a_token_cached_for_one_issuer_is_not_a_hit_for_another() {
        let github = issuer_with(vec![Algorithm::RS256]);
        let mut other = (*github).clone();
        other.name = "other".into();
        other.url = "https://other.example".into();
        let stores = vec![
            Arc::new(KeyStore::with_keys(
                Arc::clone(&github),
                key_set(&github.algorithms),
            )),
            Arc::new(KeyStore::with_keys(
                Arc::new(other),
                key_set(&github.algorithms),
            )),
        ];
        let auth = Authenticator::from_stores(stores, Arc::new(TokenCache::new(10)));
        let token = good_token();
        assert!(
            auth.authenticate_sync(0, AUD, &token, NOW)
                .expect("sync")
                .is_ok()
        );
        let second = auth.authenticate_sync(1, AUD, &token, NOW).expect("sync");
        let error = second.expect_err("refused");
        assert_eq!(error.reason, Reason::WrongIssuer);
        assert!(!error.cache_hit);
        // The entry for the first issuer survived.
        assert!(
            auth.authenticate_sync(0, AUD, &token, NOW)
                .expect("sync")
                .expect("ok")
                .cache_hit
        );
        // An index the config does not have is an outage, not a panic.
        let missing = auth.authenticate_sync(9, AUD, &token, NOW).expect("sync");
        assert_eq!(
            missing.err().map(|e| e.reason),
            Some(Reason::KeysUnavailable)
        );
    }

    #[test]
    fn reload_keeps_unchanged_stores() {
        let github = issuer_with(vec![Algorithm::RS256]);
        let store = Arc::new(KeyStore::with_keys(
            Arc::clone(&github),
            key_set(&github.algorithms),
        ));
        let auth =
            Authenticator::from_stores(vec![Arc::clone(&store)], Arc::new(TokenCache::new(1000)));
        let token = good_token();
        assert!(check(&auth, &token).is_ok());
        // Equal settings in a new Arc: the same store, and the cached token is still a hit.
        let same = Arc::new((*github).clone());
        let reloaded = auth.reload(&[same], 1000);
        assert!(Arc::ptr_eq(&reloaded.stores()[0], &store));
        assert!(check(&reloaded, &token).expect("ok").cache_hit);
        let mut changed = (*github).clone();
        changed.leeway = Duration::from_secs(5);
        let changed = auth.reload(&[Arc::new(changed)], 1000);
        assert!(!Arc::ptr_eq(&changed.stores()[0], &store));
        changed.shutdown();
    }

    #[test]
    fn bearer_extraction() {
        let max = 64;
        let one = |value: &'static str| extract_bearer([value.as_bytes()], max);
        assert_eq!(
            extract_bearer(std::iter::empty(), max),
            Err(Reason::MissingToken)
        );
        assert_eq!(one("Basic dXNlcjpwYXNz"), Err(Reason::MissingToken));
        assert_eq!(one(""), Err(Reason::MissingToken));
        assert_eq!(one("Bearerx abc"), Err(Reason::MissingToken));
        assert_eq!(one("Bearer a.b.c"), Ok("a.b.c"));
        assert_eq!(one("bEaReR   a.b.c  "), Ok("a.b.c"));
        assert_eq!(one("Bearer\ta.b.c"), Ok("a.b.c"));
        assert_eq!(one("Bearer"), Err(Reason::InvalidRequest));
        assert_eq!(one("Bearer   "), Err(Reason::InvalidRequest));
        assert_eq!(one("Bearer a.b.c d.e.f"), Err(Reason::InvalidRequest));
        assert_eq!(
            extract_bearer(
                [b"Bearer a.b.c".as_slice(), b"Bearer a.b.c".as_slice()],
                max
            ),
            Err(Reason::InvalidRequest)
        );
        assert_eq!(
            extract_bearer([b"Basic x".as_slice(), b"Bearer a.b.c".as_slice()], max),
            Err(Reason::InvalidRequest)
        );
        let long = format!("Bearer {}", "a".repeat(max + 1));
        assert_eq!(
            extract_bearer([long.as_bytes()], max),
            Err(Reason::TokenTooLarge)
        );
        let exact = format!("Bearer {}", "a".repeat(max));
        assert!(extract_bearer([exact.as_bytes()], max).is_ok());
        assert_eq!(
            extract_bearer([b"Bearer a.b\xff.c".as_slice()], max),
            Err(Reason::MalformedToken)
        );
        assert_eq!(one("Bearer a,b"), Err(Reason::MalformedToken));
    }

    #[test]
    fn unverified_claims_for_the_audit_log() {
        let token = rs256(
            rsa(2),
            "k1",
            &with(json!({"run_id": 42, "jti": "j".repeat(300)})),
        );
        let claims = unverified_claims(&token);
        assert_eq!(claims.iss.as_deref(), Some(ISS));
        assert_eq!(claims.repository.as_deref(), Some("acme/app"));
        assert_eq!(claims.run_id.as_deref(), Some("42"));
        assert_eq!(claims.jti.map(|j| j.len()), Some(256));
        assert_eq!(claims.check_run_id, None);
        assert_eq!(unverified_claims("garbage"), UnverifiedClaims::default());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let auth = authenticator();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let alphabet = b"ABCxyz019-_.={}\":,[] ";
        for length in 0..400 {
            let text: String = (0..length)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    char::from(alphabet[(seed % alphabet.len() as u64) as usize])
                })
                .collect();
            let _ = auth.authenticate_sync(0, AUD, &text, NOW);
            let header = b64(text.as_bytes());
            let _ = auth.authenticate_sync(0, AUD, &format!("{header}.{header}.{header}"), NOW);
        }
    }
}
