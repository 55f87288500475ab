//! SPEC §3 step 5: the bearer token of a request, from its `Authorization` header values.
//!
//! The byte-class checks are branch-free so that the whole token is checked in one pass
//! (the compiler vectorises them); `jose` reuses them for base64url.

use crate::refusal::Reason;

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
pub(super) fn all_token68(bytes: &[u8]) -> bool {
    all_bytes(bytes, is_token68)
}

/// True when `class` holds for every byte. Written without early exits inside fixed-size
/// chunks, so that with a branch-free `class` the compiler emits vector compares: a
/// GitHub token is ~1–2 KB and is scanned on every authenticated request.
#[inline(always)]
pub(super) fn all_bytes(bytes: &[u8], class: impl Fn(u8) -> bool) -> bool {
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
pub(super) fn is_token68(byte: u8) -> bool {
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
