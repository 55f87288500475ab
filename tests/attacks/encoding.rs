//! Malformed compact serialisation: base64url that a lenient decoder would accept, the wrong
//! number of parts, and bytes that are not UTF-8.

use crate::support::issuer::{Signer, TestKey, b64url, mint_raw};
use crate::{Siege, assert_all_malformed, header, json_bytes, parts, ready, with_raw_member};

/// Changes the last character of a base64url part so that its unused low bits are not
/// zero: the same bytes for a lenient decoder, an error for a strict one. `None` when the
/// part has no unused bits (length a multiple of 4).
fn with_nonzero_padding_bits(part: &str) -> Option<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let unused_bits_mask = match part.len() % 4 {
        2 => 0b1111,
        3 => 0b11,
        _ => return None,
    };
    let last = *part.as_bytes().last()?;
    let value = ALPHABET.iter().position(|&c| c == last)?;
    let changed = ALPHABET[value | unused_bits_mask] as char;
    Some(format!("{}{changed}", &part[..part.len() - 1]))
}

/// Cuts a base64url part to a length that no base64 text can have (4k + 1).
fn with_impossible_length(part: &str) -> String {
    let mut cut = part.to_string();
    while cut.len() % 4 != 1 {
        cut.pop();
    }
    cut
}

#[test]
fn bad_base64_in_any_part_is_malformed() {
    let world = ready();
    let rsa = world.rsa();
    let claims = world.claims();
    let genuine = world.issuer().mint(claims.clone());
    let original = parts(&genuine);
    let middle = |part: &str, insert: &str| {
        let half = part.len() / 2;
        format!("{}{insert}{}", &part[..half], &part[half..])
    };
    // The same edits in each of the three parts.
    for (index, name) in ["header", "payload", "signature"].iter().enumerate() {
        let part = &original[index];
        let mut edits: Vec<(String, String)> = vec![
            ("padding `=`".into(), format!("{part}=")),
            ("padding `==`".into(), format!("{part}==")),
            ("`+` of the standard alphabet".into(), middle(part, "+")),
            ("`/` of the standard alphabet".into(), middle(part, "/")),
            ("`~`".into(), middle(part, "~")),
            ("`!`".into(), middle(part, "!")),
            ("`*`".into(), middle(part, "*")),
            ("`%`-encoding".into(), middle(part, "%41")),
            ("`,`".into(), middle(part, ",")),
            ("a non-ASCII character".into(), middle(part, "é")),
        ];
        if index != 1 {
            // Header and signature are decoded before anything is verified. (Payload
            // edits that stay in the alphabet change what the signature covers: below.)
            if let Some(loose) = with_nonzero_padding_bits(part) {
                edits.push(("non-zero padding bits".into(), loose));
            }
            edits.push(("an impossible length".into(), with_impossible_length(part)));
        }
        for (edit, replaced) in edits {
            let mut token_parts = original.clone();
            token_parts[index] = replaced;
            let token = token_parts.join(".");
            world.refused(&token, "malformed_token", &format!("{name}: {edit}"));
        }
    }
    // A payload that is not canonical base64url, under a signature that covers it: the
    // signature verifies, the payload does not decode.
    let header_bytes = json_bytes(&header("RS256", Some("rsa-1")));
    let payload = b64url(&json_bytes(&claims));
    let mut payloads = vec![("an impossible length", with_impossible_length(&payload))];
    if let Some(loose) = with_nonzero_padding_bits(&payload) {
        payloads.push(("non-zero padding bits", loose));
    }
    payloads.push(("an empty payload", String::new()));
    for (what, payload) in payloads {
        let message = format!("{}.{payload}", b64url(&header_bytes));
        let signature = rsa.sign(message.as_bytes());
        let token = format!("{message}.{}", b64url(&signature));
        world.refused(
            &token,
            "malformed_token",
            &format!("signed payload: {what}"),
        );
    }
    // The same payload edits without a matching signature fail at the signature first.
    let mut token_parts = original.clone();
    token_parts[1] = with_impossible_length(&original[1]);
    world.refused(
        &token_parts.join("."),
        "bad_signature",
        "payload edit under the old signature",
    );
    world.finish();
}

#[test]
fn wrong_number_of_parts_or_empty_parts_is_malformed() {
    let world = ready();
    let genuine = world.token();
    let p = parts(&genuine);
    let (h, pl, s) = (&p[0], &p[1], &p[2]);
    let jwe_header = b64url(br#"{"alg":"RSA-OAEP","enc":"A256GCM","kid":"rsa-1"}"#);
    let cases: Vec<(&str, String, &str)> = vec![
        ("one part", h.clone(), "malformed_token"),
        ("two parts", format!("{h}.{pl}"), "malformed_token"),
        ("four parts", format!("{genuine}.{s}"), "malformed_token"),
        (
            "six parts",
            format!("{genuine}.{h}.{pl}.{s}"),
            "malformed_token",
        ),
        (
            "JWE compact, five parts",
            format!(
                "{jwe_header}.{}.{}.{}.{}",
                b64url(&[1; 256]),
                b64url(&[2; 12]),
                pl,
                b64url(&[3; 16])
            ),
            "malformed_token",
        ),
        ("only dots", "..".into(), "malformed_token"),
        ("many dots", ".....".into(), "malformed_token"),
        ("empty header", format!(".{pl}.{s}"), "malformed_token"),
        (
            "empty header and payload",
            format!("..{s}"),
            "malformed_token",
        ),
        ("a leading dot", format!(".{genuine}"), "malformed_token"),
        ("a trailing dot", format!("{genuine}."), "malformed_token"),
        ("a doubled dot", format!("{h}..{pl}.{s}"), "malformed_token"),
        // A well-formed header and payload with an empty or foreign signature are not
        // malformed: the signature is simply wrong.
        ("empty signature", format!("{h}.{pl}."), "bad_signature"),
        ("empty payload", format!("{h}..{s}"), "bad_signature"),
    ];
    for (what, token, reason) in cases {
        world.refused(&token, reason, what);
    }
    world.finish();
}

#[test]
fn non_utf8_header_or_payload_is_malformed() {
    let world = ready();
    let rsa = world.rsa();
    let claims = world.claims();
    let claims_text = claims.to_string();
    // Every header below is signed by the issuer's real key.
    let headers: Vec<(&str, Vec<u8>)> = vec![
        (
            "0xff in alg",
            b"{\"alg\":\"RS\xff256\",\"kid\":\"rsa-1\"}".to_vec(),
        ),
        (
            "0xff in kid",
            b"{\"alg\":\"RS256\",\"kid\":\"rsa-1\xff\"}".to_vec(),
        ),
        (
            "overlong UTF-8 '/' in kid",
            b"{\"alg\":\"RS256\",\"kid\":\"..\xc0\xafetc\"}".to_vec(),
        ),
        (
            "a lone surrogate escape in kid",
            b"{\"alg\":\"RS256\",\"kid\":\"\\ud800\"}".to_vec(),
        ),
        (
            "0xff between members",
            b"{\"alg\":\"RS256\",\xff\"kid\":\"rsa-1\"}".to_vec(),
        ),
        (
            "a UTF-8 byte-order mark",
            b"\xef\xbb\xbf{\"alg\":\"RS256\",\"kid\":\"rsa-1\"}".to_vec(),
        ),
        (
            "UTF-16",
            "{\"alg\":\"RS256\"}"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect(),
        ),
        (
            "Latin-1 bytes",
            b"{\"alg\":\"RS256\",\"kid\":\"r\xe9sa\"}".to_vec(),
        ),
    ];
    for (what, header) in headers {
        let token = mint_raw(&header, claims_text.as_bytes(), Signer::Key(&rsa));
        world.refused(&token, "malformed_token", &format!("header: {what}"));
    }
    // Payloads signed by the issuer's real key, with a valid header.
    let header = json_bytes(&header("RS256", Some("rsa-1")));
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        (
            "0xff in sub",
            raw_replace(
                &with_raw_member(&claims, "sub", "\"repo:@@\""),
                b"@@",
                b"\xff",
            ),
        ),
        (
            "a raw NUL byte in sub",
            with_raw_member(&claims, "sub", "\"repo:\u{0}\""),
        ),
        (
            "an escaped NUL in sub",
            with_raw_member(&claims, "sub", "\"repo:\\u0000\""),
        ),
        (
            "0xff in a claim value",
            raw_replace(
                &with_raw_member(&claims, "repository", "\"acme/app@@\""),
                b"@@",
                b"\xff\xfe",
            ),
        ),
        (
            "0xff in a claim name",
            raw_replace(&with_raw_member(&claims, "x@@", "1"), b"@@", b"\xff"),
        ),
        (
            "a lone surrogate escape",
            with_raw_member(&claims, "repository", "\"\\udc00\""),
        ),
        (
            "a byte-order mark",
            [b"\xef\xbb\xbf".as_slice(), claims_text.as_bytes()].concat(),
        ),
    ];
    for (what, payload) in payloads {
        let token = mint_raw(&header, &payload, Signer::Key(&rsa));
        // A NUL is valid UTF-8 and valid JSON ("\u0000"); it is refused later as a claim
        // that cannot be a header value.
        let reason = if what == "an escaped NUL in sub" {
            "unforwardable_claim"
        } else {
            "malformed_token"
        };
        world.refused(&token, reason, &format!("payload: {what}"));
    }
    world.finish();
}

/// `bytes` with every `from` replaced by `to`.
fn raw_replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

#[test]
fn non_utf8_in_an_unknown_header_member_is_malformed() {
    // RFC 7515 §4 and SPEC §3 step 6: the header must be JSON, which is UTF-8 (RFC 8259
    // §8.1); members jobgate skips are still part of it.
    let world = ready();
    let rsa = world.rsa();
    let attacker = TestKey::rsa("rsa-1");
    let claims = json_bytes(&world.claims());
    let headers: [(&str, &[u8]); 3] = [
        (
            "0xff in an unknown member",
            b"{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"x\":\"\xff\xfe\"}",
        ),
        (
            "0xff in typ",
            b"{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"typ\":\"JW\xffT\"}",
        ),
        (
            "a lone surrogate in an unknown member",
            b"{\"alg\":\"RS256\",\"kid\":\"rsa-1\",\"x\":\"\\ud800\"}",
        ),
    ];
    let mut cases = Vec::new();
    for (what, header) in headers {
        cases.push((
            format!("{what}, forged"),
            mint_raw(header, &claims, Signer::Key(&attacker)),
        ));
        cases.push((
            format!("{what}, issuer-signed"),
            mint_raw(header, &claims, Signer::Key(&rsa)),
        ));
    }
    assert_all_malformed(&world, &cases);
    world.finish();
}
