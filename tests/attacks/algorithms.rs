//! Algorithms the route does not allow: `alg: none` in any spelling, HMAC keyed with the
//! published public key (CVE-2015-9235), and ECDSA "psychic signatures" with r = s = 0
//! (CVE-2022-21449).

use aws_lc_rs::hmac;

use crate::support::issuer::{Signer, b64url, b64url_decode, mint_raw};
use crate::{Siege, header, json_bytes, parts, ready, signing_input};

/// The order n of the P-256 group: r = s = n is r = s = 0 modulo n.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

#[test]
fn alg_none_in_any_spelling_is_refused_with_or_without_a_signature() {
    let world = ready();
    let claims = world.claims();
    let genuine = world.issuer().mint(claims.clone());
    let genuine_signature = b64url_decode(&parts(&genuine)[2]);
    for alg in ["none", "None", "NONE", "nOnE"] {
        for kid in [None, Some("rsa-1")] {
            let header = json_bytes(&header(alg, kid));
            let payload = json_bytes(&claims);
            let what = format!("alg {alg:?}, kid {kid:?}");
            // The classic form: an empty signature part.
            let unsigned = mint_raw(&header, &payload, Signer::Unsigned);
            assert!(unsigned.ends_with('.'));
            world.refused(
                &unsigned,
                "alg_not_allowed",
                &format!("{what}, empty signature"),
            );
            // With a signature: the issuer's genuine signature of another token, and junk.
            let replayed = mint_raw(&header, &payload, Signer::Raw(&genuine_signature));
            world.refused(
                &replayed,
                "alg_not_allowed",
                &format!("{what}, replayed signature"),
            );
            let junk = mint_raw(&header, &payload, Signer::Raw(b"signature"));
            world.refused(&junk, "alg_not_allowed", &format!("{what}, junk signature"));
            // No signature part at all is not a compact JWS.
            let two_parts = unsigned.trim_end_matches('.');
            world.refused(two_parts, "malformed_token", &format!("{what}, two parts"));
        }
    }
    // Near misses of allowed names are not allowed either.
    for alg in [
        "rs256",
        "RS256 ",
        " RS256",
        "RS256\u{0}",
        "RSA256",
        "ES256K",
        "EdDSA",
    ] {
        let token = mint_raw(
            &json_bytes(&header(alg, Some("rsa-1"))),
            &json_bytes(&claims),
            Signer::Raw(&genuine_signature),
        );
        world.refused(&token, "alg_not_allowed", &format!("alg {alg:?}"));
    }
    world.finish();
}

/// HMAC-SHA-256/384/512 of `message` with `secret`, by JOSE name.
fn hmac_sign(alg: &str, secret: &[u8], message: &[u8]) -> Vec<u8> {
    let algorithm = match alg {
        "HS256" => hmac::HMAC_SHA256,
        "HS384" => hmac::HMAC_SHA384,
        "HS512" => hmac::HMAC_SHA512,
        other => panic!("not an HMAC alg: {other}"),
    };
    hmac::sign(&hmac::Key::new(algorithm, secret), message)
        .as_ref()
        .to_vec()
}

#[test]
fn hmac_keyed_with_the_published_public_key_is_refused() {
    let world = ready();
    let claims = json_bytes(&world.claims());
    let rsa = world.rsa();
    let ec = world.ec();
    let rsa_pem = rsa.public_key_pem();
    let ec_pem = ec.public_key_pem();
    let rsa_jwk = rsa.jwk().to_string();
    let secrets: Vec<(&str, &str, Vec<u8>)> = vec![
        ("rsa-1", "RSA SPKI DER", rsa.public_key_der()),
        ("rsa-1", "RSA PEM", rsa_pem.clone().into_bytes()),
        (
            "rsa-1",
            "RSA PEM without the final newline",
            rsa_pem.trim_end().as_bytes().to_vec(),
        ),
        ("rsa-1", "RSA JWK text", rsa_jwk.into_bytes()),
        ("ec-1", "P-256 SPKI DER", ec.public_key_der()),
        ("ec-1", "P-256 PEM", ec_pem.into_bytes()),
    ];
    for alg in ["HS256", "HS384", "HS512"] {
        for (kid, name, secret) in &secrets {
            for kid in [Some(*kid), None] {
                let header = json_bytes(&header(alg, kid));
                let message = signing_input(&header, &claims);
                let signature = hmac_sign(alg, secret, message.as_bytes());
                let token = format!("{message}.{}", b64url(&signature));
                world.refused(
                    &token,
                    "alg_not_allowed",
                    &format!("{alg} keyed with the {name}, kid {kid:?}"),
                );
            }
        }
    }
    world.finish();
}

#[test]
fn ecdsa_signature_with_r_and_s_zero_is_refused() {
    let world = ready();
    let claims = json_bytes(&world.claims());
    let zero = [0u8; 32];
    let fixed = |r: &[u8], s: &[u8]| [r, s].concat();
    // DER SEQUENCE { INTEGER r, INTEGER s }, as some libraries accept.
    let der = |r: &[u8], s: &[u8]| {
        let mut body = vec![0x02, r.len() as u8];
        body.extend_from_slice(r);
        body.extend_from_slice(&[0x02, s.len() as u8]);
        body.extend_from_slice(s);
        let mut out = vec![0x30, body.len() as u8];
        out.extend(body);
        out
    };
    let signatures: Vec<(&str, Vec<u8>)> = vec![
        ("r = s = 0, 64 zero bytes", fixed(&zero, &zero)),
        ("r = s = n", fixed(&P256_ORDER, &P256_ORDER)),
        ("r = 0, s = n", fixed(&zero, &P256_ORDER)),
        ("r = n, s = 0", fixed(&P256_ORDER, &zero)),
        ("DER r = s = 0, one byte each", der(&[0], &[0])),
        ("DER r = s = 0, 32 bytes each", der(&zero, &zero)),
        (
            "DER r = s = n",
            der(
                &[&[0][..], &P256_ORDER].concat(),
                &[&[0][..], &P256_ORDER].concat(),
            ),
        ),
        (
            "DER with empty integers",
            vec![0x30, 0x04, 0x02, 0x00, 0x02, 0x00],
        ),
        ("an empty DER sequence", vec![0x30, 0x00]),
        ("a single zero byte", vec![0]),
        ("65 zero bytes", vec![0; 65]),
        ("no bytes at all", Vec::new()),
    ];
    for (name, signature) in &signatures {
        for kid in [Some("ec-1"), None] {
            let token = mint_raw(
                &json_bytes(&header("ES256", kid)),
                &claims,
                Signer::Raw(signature),
            );
            world.refused(
                &token,
                "bad_signature",
                &format!("ES256 {name}, kid {kid:?}"),
            );
        }
    }
    // The same zero signature under the RSA key's kid: that key cannot verify ES256.
    let token = mint_raw(
        &json_bytes(&header("ES256", Some("rsa-1"))),
        &claims,
        Signer::Raw(&[0; 64]),
    );
    world.refused(
        &token,
        "bad_signature",
        "ES256 zero signature, kid of the RSA key",
    );
    world.finish();
}
