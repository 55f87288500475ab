//! Malformed JSON in the header and the claims: duplicate members, deep nesting, and claims
//! of the wrong JSON type.

use serde_json::{Value, json};

use crate::support::issuer::{Signer, TestKey, mint_raw};
use crate::{AUD, Siege, assert_all_malformed, header, json_bytes, ready, with_raw_member};

#[test]
fn duplicate_members_in_the_header_are_malformed() {
    let world = ready();
    let rsa = world.rsa();
    let claims = json_bytes(&world.claims());
    let headers: [(&str, &[u8]); 5] = [
        (
            "alg RS256 then none",
            br#"{"alg":"RS256","alg":"none","kid":"rsa-1"}"#,
        ),
        (
            "alg none then RS256",
            br#"{"alg":"none","alg":"RS256","kid":"rsa-1"}"#,
        ),
        (
            "alg RS256 twice",
            br#"{"alg":"RS256","alg":"RS256","kid":"rsa-1"}"#,
        ),
        (
            "kid twice",
            br#"{"alg":"RS256","kid":"attacker","kid":"rsa-1"}"#,
        ),
        (
            "the published kid twice",
            br#"{"alg":"RS256","kid":"rsa-1","kid":"rsa-1"}"#,
        ),
    ];
    for (what, header) in headers {
        // Signed by the issuer's real key: only the duplicate is wrong.
        let token = mint_raw(header, &claims, Signer::Key(&rsa));
        world.refused(&token, "malformed_token", what);
    }
    world.finish();
}

#[test]
fn duplicate_claims_in_the_payload_are_malformed() {
    // RFC 7519 §4 lets a parser either reject duplicate claim names or keep the last one;
    // a security gateway that already rejects duplicate header members should reject them
    // here too, so that no consumer with a first-wins parser (an upstream given the token
    // with strip_authorization = false, a log pipeline) can read another identity.
    let world = ready();
    let rsa = world.rsa();
    let claims = world.claims();
    let evil_aud = json!("https://other.example").to_string();
    let good_aud = json!(AUD).to_string();
    let evil_iss = json!("https://token.actions.githubusercontent.com").to_string();
    let good_iss = json!(world.issuer().url()).to_string();
    let header = json_bytes(&header("RS256", Some("rsa-1")));
    let members: Vec<(&str, &str, String)> = vec![
        (
            "aud: another service's, then ours",
            "aud",
            format!("{evil_aud},\"aud\":{good_aud}"),
        ),
        (
            "aud: ours, then another service's",
            "aud",
            format!("{good_aud},\"aud\":{evil_aud}"),
        ),
        (
            "iss: another issuer, then ours",
            "iss",
            format!("{evil_iss},\"iss\":{good_iss}"),
        ),
        (
            "iss: ours, then another issuer",
            "iss",
            format!("{good_iss},\"iss\":{evil_iss}"),
        ),
        (
            "repository_owner: evil, then acme",
            "repository_owner",
            "\"evil\",\"repository_owner\":\"acme\"".to_string(),
        ),
    ];
    // Issuer-signed: only the duplicate is wrong.
    let cases: Vec<(String, String)> = members
        .into_iter()
        .map(|(what, name, raw)| {
            let payload = with_raw_member(&claims, name, &raw);
            (
                what.to_string(),
                mint_raw(&header, &payload, Signer::Key(&rsa)),
            )
        })
        .collect();
    assert_all_malformed(&world, &cases);
    world.finish();
}

/// `depth` opening brackets, then as many closing ones when `balanced`.
fn nested(depth: usize, open: &str, close: &str, balanced: bool) -> String {
    let mut text = open.repeat(depth);
    if balanced {
        text.push_str(&close.repeat(depth));
    }
    text
}

#[test]
fn deeply_nested_json_neither_overflows_nor_passes() {
    let world = ready();
    let rsa = world.rsa();
    let attacker = TestKey::rsa("rsa-1");
    let claims = world.claims();
    let arrays = nested(10_000, "[", "]", true);
    let objects = nested(5_000, "{\"a\":", "}", false) + "1" + &"}".repeat(5_000);
    let unbalanced = nested(40_000, "[", "]", false);

    // In the header. The whole header is parsed as JSON once (so that no member escapes
    // validation), and serde_json's recursion limit makes any deep nesting malformed,
    // without a stack overflow.
    let header_cases: Vec<(&str, String, &str)> = vec![
        (
            "10 000 nested arrays in an unknown header member",
            format!(r#"{{"alg":"RS256","kid":"rsa-1","x":{arrays}}}"#),
            "malformed_token",
        ),
        (
            "5 000 nested objects in an unknown header member",
            format!(r#"{{"alg":"RS256","kid":"rsa-1","x":{objects}}}"#),
            "malformed_token",
        ),
        (
            "10 000 nested arrays as alg",
            format!(r#"{{"alg":{arrays},"kid":"rsa-1"}}"#),
            "malformed_token",
        ),
        (
            "10 000 nested arrays as kid",
            format!(r#"{{"alg":"RS256","kid":{arrays}}}"#),
            "malformed_token",
        ),
        (
            "40 000 unterminated arrays",
            format!(r#"{{"alg":"RS256","kid":"rsa-1","x":{unbalanced}"#),
            "malformed_token",
        ),
        (
            "a header that is only arrays",
            arrays.clone(),
            "malformed_token",
        ),
    ];
    for (what, header, reason) in header_cases {
        let token = mint_raw(
            header.as_bytes(),
            &json_bytes(&claims),
            Signer::Key(&attacker),
        );
        world.refused(&token, reason, what);
    }

    // In the payload, signed by the issuer so that the claims are parsed: past the JSON
    // recursion limit, malformed.
    let header = json_bytes(&header("RS256", Some("rsa-1")));
    let payload_cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "10 000 nested arrays in a claim",
            with_raw_member(&claims, "deep", &arrays),
        ),
        (
            "5 000 nested objects in a claim",
            with_raw_member(&claims, "deep", &objects),
        ),
        (
            "10 000 nested arrays as sub",
            with_raw_member(&claims, "sub", &arrays),
        ),
        ("a payload that is only arrays", arrays.clone().into_bytes()),
        (
            "40 000 unterminated arrays",
            unbalanced.clone().into_bytes(),
        ),
    ];
    for (what, payload) in payload_cases {
        let token = mint_raw(&header, &payload, Signer::Key(&rsa));
        world.refused(&token, "malformed_token", what);
        // And forged: the signature fails before the payload is read.
        let forged = mint_raw(&header, &payload, Signer::Key(&attacker));
        world.refused(&forged, "bad_signature", &format!("{what}, forged"));
    }
    world.finish();
}

#[test]
fn claims_of_the_wrong_json_type_are_malformed() {
    let world = ready();
    let cases: Vec<(&str, Value)> = vec![
        ("iss a number", json!({"iss": 42})),
        (
            "iss an object",
            json!({"iss": {"url": world.issuer().url()}}),
        ),
        (
            "iss an array of the right value",
            json!({"iss": [world.issuer().url()]}),
        ),
        ("aud an object", json!({"aud": {"aud": AUD}})),
        ("aud a number", json!({"aud": 1})),
        ("aud an array with null", json!({"aud": [AUD, null]})),
        ("aud an array with an array", json!({"aud": [AUD, [AUD]]})),
        (
            "sub an array",
            json!({"sub": ["repo:acme/app:environment:production"]}),
        ),
        ("sub a number", json!({"sub": 7})),
        ("jti an object", json!({"jti": {}})),
        ("nbf a string", json!({"nbf": "0"})),
        ("nbf a boolean", json!({"nbf": false})),
        ("iat a string", json!({"iat": "1700000000"})),
        ("exp an object", json!({"exp": {"seconds": 1}})),
    ];
    for (what, overrides) in cases {
        let token = world.issuer().mint_github_with(AUD, overrides);
        world.refused(&token, "malformed_token", what);
    }
    // A payload that is not an object at all.
    let rsa = world.rsa();
    let header = json_bytes(&header("RS256", Some("rsa-1")));
    for payload in ["[]", "null", "42", "\"claims\"", "true", ""] {
        let token = mint_raw(&header, payload.as_bytes(), Signer::Key(&rsa));
        world.refused(&token, "malformed_token", &format!("payload {payload:?}"));
    }
    world.finish();
}
