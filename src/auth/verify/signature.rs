//! The signature check of SPEC §3 step 6: with the key's own algorithm family, through
//! the key aws-lc parsed once per fetch, or `jsonwebtoken::crypto::verify` for the
//! algorithms a key is not pre-parsed for. `jsonwebtoken::decode` and its `Validation` are
//! not used at all (they read the clock themselves and skip `iss`/`aud` when absent).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use jsonwebtoken::errors::ErrorKind;

use super::jose::TokenParts;
use crate::auth::keys::jwks::VerifyingKey;
use crate::refusal::Reason;

/// Checks the signature with `key`, which must fit `alg` (the caller chose it so; checked
/// again here because using a key with another family's algorithm is the classic attack).
pub fn check_signature(
    parts: &TokenParts<'_>,
    key: &VerifyingKey,
    alg: Algorithm,
) -> Result<(), Reason> {
    let signature = URL_SAFE_NO_PAD
        .decode(parts.signature)
        .map_err(|_| Reason::MalformedToken)?;
    check_decoded_signature(parts, &signature, key, alg)
}

/// [`check_signature`] for a caller that has decoded the signature already (the verifier
/// keeps it for the cache's compare): `signature` is `parts.signature` decoded.
pub fn check_decoded_signature(
    parts: &TokenParts<'_>,
    signature: &[u8],
    key: &VerifyingKey,
    alg: Algorithm,
) -> Result<(), Reason> {
    if !key.accepts(alg) {
        return Err(Reason::BadSignature);
    }
    if let Some(parsed) = key.parsed_for(alg) {
        // The same decoding and the same aws-lc parameters as `jsonwebtoken::crypto::verify`
        // (tests compare the two), without rebuilding the key for every token.
        return parsed
            .verify_sig(parts.signing_input.as_bytes(), signature)
            .map_err(|_| Reason::BadSignature);
    }
    verify_with_library(parts, key, alg)
}

/// The signature check through `jsonwebtoken`, for the algorithms a key is not pre-parsed for.
pub(super) fn verify_with_library(
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
