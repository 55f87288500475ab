//! `parse_jwks` on arbitrary bytes, with any non-empty set of allowed algorithms. Never
//! panics; every key it keeps can verify at least one allowed algorithm, and key
//! selection over the set is consistent with what the set holds.
#![no_main]

use jobgate::auth::keys::jwks::{KeyChoice, parse_jwks};
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

fuzz_target!(|data: &[u8]| {
    let Some((&control, body)) = data.split_first() else {
        return;
    };
    let bits = u32::from(control) * 3 + 1;
    let allowed: Vec<Algorithm> = ALGORITHMS
        .iter()
        .enumerate()
        .filter(|(index, _)| bits & (1 << index) != 0)
        .map(|(_, alg)| *alg)
        .collect();
    let Ok(set) = parse_jwks(body, "fuzz", &allowed) else {
        return;
    };
    assert_eq!(set.is_empty(), set.len() == 0);
    for key in set.keys() {
        assert!(
            allowed.iter().any(|alg| key.accepts(*alg)),
            "kept a key that verifies none of the allowed algorithms"
        );
        assert!(set.contains_key(key.kid(), key.fingerprint()));
        if let Some(kid) = key.kid() {
            assert!(set.contains_kid(kid));
            assert!(set.kids().any(|k| k == kid));
        }
        for alg in &allowed {
            match set.select(key.kid(), *alg) {
                KeyChoice::Key(chosen) => {
                    assert!(
                        chosen.accepts(*alg),
                        "selected a key that does not fit the alg"
                    );
                    assert_eq!(chosen.kid(), key.kid().or(chosen.kid()));
                }
                KeyChoice::UnknownKid => panic!("a kid in the set is unknown"),
                KeyChoice::Unsuitable => {
                    assert!(key.kid().is_some(), "unsuitable without a kid");
                    assert!(!key.accepts(*alg), "unsuitable, yet the key fits");
                }
                KeyChoice::Ambiguous => assert!(key.kid().is_none()),
            }
        }
    }
});
