//! Token parsing on arbitrary bytes: `extract_bearer` (one or several `Authorization`
//! values), `split_token`, `parse_header` and `unverified_claims`. Never panics, and each
//! step's output keeps the promises the next step relies on.
#![no_main]

use jobgate::refusal::Reason;
use jobgate::auth::verify::{extract_bearer, parse_header, split_token, unverified_claims};
use jsonwebtoken::Algorithm;
use libfuzzer_sys::fuzz_target;

const ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fn is_token68(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

fn is_base64url(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_token(token: &str, allowed: &[Algorithm]) {
    match split_token(token) {
        Ok(parts) => {
            let header = parts.header;
            assert!(!header.is_empty() && is_base64url(header));
            assert!(is_base64url(parts.payload) && is_base64url(parts.signature));
            assert_eq!(
                format!("{}.{}", parts.signing_input, parts.signature),
                token,
                "the parts must be the token"
            );
            assert_eq!(
                parts.signing_input,
                format!("{header}.{}", parts.payload),
                "signing input is header.payload"
            );
        }
        Err(reason) => assert_eq!(reason, Reason::MalformedToken),
    }
    match parse_header(token, allowed) {
        Ok((header, parts)) => {
            assert!(
                allowed.contains(&header.alg),
                "alg outside the allowed list"
            );
            assert!(split_token(token).is_ok());
            assert!(parts.signing_input.len() < token.len());
        }
        Err(reason) => assert!(
            matches!(reason, Reason::MalformedToken | Reason::AlgNotAllowed),
            "unexpected reason {reason:?}"
        ),
    }
    let claims = unverified_claims(token);
    for field in [
        &claims.iss,
        &claims.sub,
        &claims.repository,
        &claims.run_id,
        &claims.check_run_id,
        &claims.jti,
    ]
    .into_iter()
    .flatten()
    {
        assert!(field.len() <= 256, "unverified claim longer than 256 bytes");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, data)) = data.split_first() else {
        return;
    };
    // Which algorithms the issuer allows: any non-empty subset.
    let bits = u32::from(control & 0x3f) * 9 + 1;
    let allowed: Vec<Algorithm> = ALGORITHMS
        .iter()
        .enumerate()
        .filter(|(index, _)| bits & (1 << index) != 0)
        .map(|(_, alg)| *alg)
        .collect();
    let max_token_bytes = if control & 0x80 != 0 { 64 } else { 16_384 };

    // Several header values, separated by NUL in the input.
    let values: Vec<&[u8]> = if control & 0x40 != 0 {
        data.split(|&b| b == 0).collect()
    } else {
        vec![data]
    };
    match extract_bearer(values.iter().copied(), max_token_bytes) {
        Ok(token) => {
            assert_eq!(values.len(), 1, "a token from several Authorization values");
            assert!(!token.is_empty() && token.len() <= max_token_bytes);
            assert!(token.bytes().all(is_token68), "token outside token68");
            check_token(token, &allowed);
        }
        Err(reason) => assert!(matches!(
            reason,
            Reason::MissingToken
                | Reason::InvalidRequest
                | Reason::TokenTooLarge
                | Reason::MalformedToken
        )),
    }
    // The token functions on their own, on any text.
    if let Ok(text) = std::str::from_utf8(data) {
        check_token(text, &allowed);
    }
});
