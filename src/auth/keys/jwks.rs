//! An issuer's JSON Web Key Set (RFC 7517), parsed once per fetch into the verifying keys the
//! request path uses.
//!
//! Every `DecodingKey` is built here, once per fetch, never per request. An entry that cannot
//! be used safely (an encryption key, an unknown key type or curve, a symmetric key, an RSA
//! modulus under 2048 bits, an `alg` the issuer does not allow, a point off its curve) is
//! skipped with a warning and the rest of the set still serves: one odd key published by an
//! issuer must not take its whole key set down.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{self as aws_sig, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// At most this many entries of a set are looked at. GitHub publishes a handful; a set with
/// hundreds of RSA keys is a mistake or an attack on our start-up time.
pub const MAX_KEYS: usize = 100;

/// RSA moduli shorter than this are refused (NIST SP 800-131A); longer than
/// [`RSA_MAX_BITS`] are refused because the verifier does not accept them either.
pub const RSA_MIN_BITS: usize = 2048;
pub const RSA_MAX_BITS: usize = 8192;

/// The kind of public key, which fixes the algorithms it may verify: an RSA key is never
/// used with ES256 or HS256, a P-256 key only with ES256, and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyType {
    /// Whether a key of this type can verify a signature made with `alg`.
    pub fn accepts(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (KeyType::Rsa, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
                | (KeyType::P256, ES256)
                | (KeyType::P384, ES384)
                | (KeyType::Ed25519, EdDSA)
        )
    }
}

/// One usable public key of an issuer.
pub struct VerifyingKey {
    kid: Option<Box<str>>,
    key_type: KeyType,
    /// The JWK's `alg`, when it names one: the key is then used with that algorithm only
    /// (RFC 7517 §4.4), so an RS256 key cannot be replayed as PS256.
    alg: Option<Algorithm>,
    /// SHA-256 of the key type and public material. A cached token stays usable only while
    /// a key with the same kid AND the same material is in the current set, so a kid that
    /// is reused for new material does not keep old tokens alive.
    fingerprint: [u8; 32],
    decoding: DecodingKey,
    /// The key parsed once by aws-lc for its most common algorithm (RS256 for RSA, ES256,
    /// ES384, EdDSA): verifying with it skips rebuilding the key from its components on
    /// every token (for RSA, ~10 % of a cold verify). Other algorithms of the key type go
    /// through `jsonwebtoken` with `decoding`.
    parsed: Option<(Algorithm, ParsedPublicKey)>,
}

impl fmt::Debug for VerifyingKey {
    /// Names the key without its material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("key_type", &self.key_type)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// Whether this key may verify a token signed with `alg`: the key type must fit the
    /// algorithm and, when the JWK names an `alg`, it must be that one.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.alg.is_none_or(|own| own == alg) && self.key_type.accepts(alg)
    }

    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// The key in the form `jsonwebtoken` verifies with.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The pre-parsed key, when it was parsed for `alg`.
    pub fn parsed_for(&self, alg: Algorithm) -> Option<&ParsedPublicKey> {
        match &self.parsed {
            Some((parsed_alg, key)) if *parsed_alg == alg => Some(key),
            _ => None,
        }
    }
}

/// What [`KeySet::select`] found for a token's `kid` and `alg`.
#[derive(Debug)]
pub enum KeyChoice<'a> {
    Key(&'a Arc<VerifyingKey>),
    /// The token names a kid that is not in the set.
    UnknownKid,
    /// The kid is in the set, but no key under it may verify this `alg` (an RSA key
    /// named by an ES256 token): the token cannot be genuine.
    Unsuitable,
    /// The token has no kid and the set has zero or several keys for its `alg`.
    Ambiguous,
}

/// The usable keys of one fetch of an issuer's JWKS.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Arc<VerifyingKey>>,
    /// kid → indexes into `keys`; a kid may name several keys of different types.
    by_kid: HashMap<Box<str>, Vec<usize>>,
}

impl KeySet {
    /// Builds a set from already parsed keys (tests and benches build sets this way).
    pub fn from_keys(keys: Vec<VerifyingKey>) -> KeySet {
        let mut set = KeySet::default();
        for key in keys {
            let index = set.keys.len();
            if let Some(kid) = &key.kid {
                set.by_kid.entry(kid.clone()).or_default().push(index);
            }
            set.keys.push(Arc::new(key));
        }
        set
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> &[Arc<VerifyingKey>] {
        &self.keys
    }

    /// The kids of the set (keys without kid are not listed), for change logs.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.by_kid.keys().map(|kid| kid.as_ref())
    }

    pub fn contains_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// Whether the key a cached token was verified with (by kid and material) is still in
    /// this set.
    pub fn contains_key(&self, kid: Option<&str>, fingerprint: &[u8; 32]) -> bool {
        match kid {
            Some(kid) => self.by_kid.get(kid).is_some_and(|indexes| {
                indexes
                    .iter()
                    .any(|&index| self.keys[index].fingerprint == *fingerprint)
            }),
            None => self.keys.iter().any(|key| key.fingerprint == *fingerprint),
        }
    }

    /// The key for a token's `kid` and `alg` (SPEC §3 step 6): by kid when the token names
    /// one; without kid, the only key that fits `alg`, if exactly one does.
    pub fn select(&self, kid: Option<&str>, alg: Algorithm) -> KeyChoice<'_> {
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                None => KeyChoice::UnknownKid,
                Some(indexes) => indexes
                    .iter()
                    .map(|&index| &self.keys[index])
                    .find(|key| key.accepts(alg))
                    .map_or(KeyChoice::Unsuitable, KeyChoice::Key),
            },
            None => {
                let mut suitable = self.keys.iter().filter(|key| key.accepts(alg));
                match (suitable.next(), suitable.next()) {
                    (Some(key), None) => KeyChoice::Key(key),
                    _ => KeyChoice::Ambiguous,
                }
            }
        }
    }
}

/// Why a whole JWKS document was refused.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("the JWKS is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("the JWKS has no \"keys\" array")]
    NoKeys,
}

/// Parses a JWKS document. Unusable entries are skipped with a warning naming `issuer`;
/// only a document that is not a JWKS at all is an error. A set may come back empty.
pub fn parse_jwks(body: &[u8], issuer: &str, allowed: &[Algorithm]) -> Result<KeySet, JwksError> {
    let document: Value = serde_json::from_slice(body)?;
    let entries = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or(JwksError::NoKeys)?;
    if entries.len() > MAX_KEYS {
        tracing::warn!(
            issuer,
            published = entries.len(),
            used = MAX_KEYS,
            "JWKS has too many keys; only the first ones are used"
        );
    }
    let mut keys = Vec::with_capacity(entries.len().min(MAX_KEYS));
    for (index, entry) in entries.iter().take(MAX_KEYS).enumerate() {
        match parse_key(entry, allowed) {
            Ok(key) => keys.push(key),
            Err(skip) => {
                let kid = entry.get("kid").and_then(Value::as_str).map(printable_kid);
                tracing::warn!(issuer, index, kid, reason = %skip, "skipping unusable JWKS key");
            }
        }
    }
    Ok(KeySet::from_keys(keys))
}

/// A kid as it may appear in a log line: bounded and without control characters.
pub fn printable_kid(kid: &str) -> String {
    kid.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Why one JWKS entry was skipped. Never carries key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    #[error("entry is not a JSON object")]
    NotAnObject,
    #[error("a member has the wrong JSON type: {0}")]
    WrongType(&'static str),
    #[error("key is not for signatures (use = {0:?})")]
    NotForSignatures(String),
    #[error("key_ops does not allow \"verify\"")]
    NoVerifyOperation,
    #[error("unsupported alg {0:?}")]
    UnsupportedAlg(String),
    #[error("alg {0:?} is not in this issuer's algorithms")]
    AlgNotAllowed(String),
    #[error("alg {0:?} does not fit the key type")]
    AlgDoesNotFitKey(String),
    #[error("none of this issuer's algorithms uses this key type")]
    NoAllowedAlgorithm,
    #[error("symmetric keys are never accepted from a JWKS")]
    SymmetricKey,
    #[error("unsupported key type {0:?}")]
    UnsupportedKeyType(String),
    #[error("unsupported curve {0:?}")]
    UnsupportedCurve(String),
    #[error("member {0} is missing or not base64url")]
    BadComponent(&'static str),
    #[error("RSA modulus of {0} bits is outside 2048..=8192")]
    RsaSize(usize),
    #[error("invalid public key")]
    InvalidKey,
}

/// Parses one JWK into a verifying key, or says why it cannot be used.
pub fn parse_key(entry: &Value, allowed: &[Algorithm]) -> Result<VerifyingKey, SkipReason> {
    let object = entry.as_object().ok_or(SkipReason::NotAnObject)?;
    let kid = match object.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str().into()),
        Some(_) => return Err(SkipReason::WrongType("kid")),
    };
    match object.get("use") {
        None => {}
        Some(Value::String(usage)) if usage == "sig" => {}
        Some(Value::String(usage)) => return Err(SkipReason::NotForSignatures(bounded(usage))),
        Some(_) => return Err(SkipReason::WrongType("use")),
    }
    if let Some(operations) = object.get("key_ops") {
        let operations = operations
            .as_array()
            .ok_or(SkipReason::WrongType("key_ops"))?;
        if !operations.iter().any(|op| op.as_str() == Some("verify")) {
            return Err(SkipReason::NoVerifyOperation);
        }
    }
    let alg = match object.get("alg") {
        None => None,
        Some(Value::String(name)) => {
            let alg =
                Algorithm::from_str(name).map_err(|_| SkipReason::UnsupportedAlg(bounded(name)))?;
            if !allowed.contains(&alg) {
                return Err(SkipReason::AlgNotAllowed(bounded(name)));
            }
            Some(alg)
        }
        Some(_) => return Err(SkipReason::WrongType("alg")),
    };
    let kty = match object.get("kty") {
        Some(Value::String(kty)) => kty.as_str(),
        _ => return Err(SkipReason::WrongType("kty")),
    };
    let (key_type, decoding, fingerprint, parsed) = match kty {
        "RSA" => rsa_key(object)?,
        "EC" => ec_key(object)?,
        "OKP" => okp_key(object)?,
        "oct" => return Err(SkipReason::SymmetricKey),
        other => return Err(SkipReason::UnsupportedKeyType(bounded(other))),
    };
    match alg {
        Some(alg) if !key_type.accepts(alg) => {
            return Err(SkipReason::AlgDoesNotFitKey(format!("{alg:?}")));
        }
        None if !allowed.iter().any(|&alg| key_type.accepts(alg)) => {
            return Err(SkipReason::NoAllowedAlgorithm);
        }
        _ => {}
    }
    Ok(VerifyingKey {
        kid,
        key_type,
        alg,
        fingerprint,
        decoding,
        parsed,
    })
}

fn bounded(text: &str) -> String {
    printable_kid(text)
}

type ParsedKey = (
    KeyType,
    DecodingKey,
    [u8; 32],
    Option<(Algorithm, ParsedPublicKey)>,
);

/// Decodes a base64url member. Padding is tolerated because some issuers emit it.
fn component(
    object: &serde_json::Map<String, Value>,
    name: &'static str,
) -> Result<Vec<u8>, SkipReason> {
    let text = object
        .get(name)
        .and_then(Value::as_str)
        .ok_or(SkipReason::BadComponent(name))?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| SkipReason::BadComponent(name))
}

fn fingerprint(tag: u8, parts: &[&[u8]]) -> [u8; 32] {
    let mut context = digest::Context::new(&digest::SHA256);
    context.update(&[tag]);
    for part in parts {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn rsa_key(object: &serde_json::Map<String, Value>) -> Result<ParsedKey, SkipReason> {
    let n = component(object, "n")?;
    let e = component(object, "e")?;
    let n = strip_leading_zeros(&n);
    let e = strip_leading_zeros(&e);
    let bits = match n.first() {
        Some(first) => n.len() * 8 - first.leading_zeros() as usize,
        None => 0,
    };
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(SkipReason::RsaSize(bits));
    }
    // A real modulus is odd, and so is a real exponent (≥ 3, at most 64 bits here); aws-lc
    // does not check a public key's parity when it is parsed.
    let odd = |bytes: &[u8]| bytes.last().is_some_and(|last| last & 1 == 1);
    if !odd(n) || !odd(e) || e.len() > 8 || e == [1] {
        return Err(SkipReason::InvalidKey);
    }
    // Let aws-lc judge the components (odd modulus, sane exponent) now rather than at the
    // first request, and keep the parsed key for RS256 (the same parameters `jsonwebtoken`
    // verifies RS256 with).
    let parsed = RsaPublicKeyComponents { n, e }
        .to_parsed_public_key(&aws_sig::RSA_PKCS1_2048_8192_SHA256)
        .map_err(|_| SkipReason::InvalidKey)?;
    Ok((
        KeyType::Rsa,
        DecodingKey::from_rsa_raw_components(n, e),
        fingerprint(b'R', &[n, e]),
        Some((Algorithm::RS256, parsed)),
    ))
}

fn ec_key(object: &serde_json::Map<String, Value>) -> Result<ParsedKey, SkipReason> {
    let curve = object
        .get("crv")
        .and_then(Value::as_str)
        .ok_or(SkipReason::WrongType("crv"))?;
    let (key_type, size, jws_alg, algorithm): (
        _,
        _,
        _,
        &'static aws_sig::EcdsaVerificationAlgorithm,
    ) = match curve {
        "P-256" => (
            KeyType::P256,
            32,
            Algorithm::ES256,
            &aws_sig::ECDSA_P256_SHA256_FIXED,
        ),
        "P-384" => (
            KeyType::P384,
            48,
            Algorithm::ES384,
            &aws_sig::ECDSA_P384_SHA384_FIXED,
        ),
        other => return Err(SkipReason::UnsupportedCurve(bounded(other))),
    };
    let x = component(object, "x")?;
    let y = component(object, "y")?;
    if x.len() != size {
        return Err(SkipReason::BadComponent("x"));
    }
    if y.len() != size {
        return Err(SkipReason::BadComponent("y"));
    }
    let mut point = Vec::with_capacity(1 + 2 * size);
    point.push(0x04);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    // Refuses points that are not on the curve. The parameters are those `jsonwebtoken`
    // verifies the algorithm with (fixed-size r‖s signatures, as JWS has them).
    let parsed = ParsedPublicKey::new(algorithm, &point).map_err(|_| SkipReason::InvalidKey)?;
    let tag = if key_type == KeyType::P256 {
        b'P'
    } else {
        b'Q'
    };
    Ok((
        key_type,
        DecodingKey::from_ec_der(&point),
        fingerprint(tag, &[&point]),
        Some((jws_alg, parsed)),
    ))
}

fn okp_key(object: &serde_json::Map<String, Value>) -> Result<ParsedKey, SkipReason> {
    let curve = object
        .get("crv")
        .and_then(Value::as_str)
        .ok_or(SkipReason::WrongType("crv"))?;
    if curve != "Ed25519" {
        return Err(SkipReason::UnsupportedCurve(bounded(curve)));
    }
    let x = component(object, "x")?;
    if x.len() != aws_sig::ED25519_PUBLIC_KEY_LEN {
        return Err(SkipReason::BadComponent("x"));
    }
    let parsed = ParsedPublicKey::new(&aws_sig::ED25519, &x).map_err(|_| SkipReason::InvalidKey)?;
    Ok((
        KeyType::Ed25519,
        DecodingKey::from_ed_der(&x),
        fingerprint(b'E', &[&x]),
        Some((Algorithm::EdDSA, parsed)),
    ))
}

/// Keys and signatures made at test time, shared by the unit tests of the auth modules.
#[cfg(test)]
pub(crate) mod test_keys {
    use std::sync::OnceLock;

    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{self as aws_sig, EcdsaKeyPair, KeyPair, RsaKeyPair};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::{Value, json};

    /// Generating RSA keys is slow: each test process makes three and shares them.
    pub fn rsa(index: usize) -> &'static RsaKeyPair {
        static KEYS: [OnceLock<RsaKeyPair>; 3] =
            [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        KEYS[index].get_or_init(|| RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA keygen"))
    }

    pub fn p256() -> &'static EcdsaKeyPair {
        static KEY: OnceLock<EcdsaKeyPair> = OnceLock::new();
        KEY.get_or_init(|| {
            EcdsaKeyPair::generate(&aws_sig::ECDSA_P256_SHA256_FIXED_SIGNING).expect("EC keygen")
        })
    }

    pub fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn rsa_components(key: &RsaKeyPair) -> (Vec<u8>, Vec<u8>) {
        let components = aws_sig::RsaPublicKeyComponents::<Vec<u8>>::from(key.public_key());
        (components.n, components.e)
    }

    pub fn rsa_jwk(key: &RsaKeyPair, kid: &str) -> Value {
        let (n, e) = rsa_components(key);
        json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64(&n), "e": b64(&e)})
    }

    pub fn p256_jwk(key: &EcdsaKeyPair, kid: &str) -> Value {
        let point = key.public_key().as_ref();
        json!({"kty": "EC", "kid": kid, "use": "sig", "crv": "P-256",
               "x": b64(&point[1..33]), "y": b64(&point[33..65])})
    }

    pub fn sign_rsa(
        key: &RsaKeyPair,
        encoding: &'static dyn aws_sig::RsaEncoding,
        message: &[u8],
    ) -> Vec<u8> {
        let mut signature = vec![0; key.public_modulus_len()];
        key.sign(encoding, &SystemRandom::new(), message, &mut signature)
            .expect("RSA signing");
        signature
    }

    pub fn sign_p256(key: &EcdsaKeyPair, message: &[u8]) -> Vec<u8> {
        key.sign(&SystemRandom::new(), message)
            .expect("EC signing")
            .as_ref()
            .to_vec()
    }

    /// `header.payload.signature` with the signature over the first two parts.
    pub fn token(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
        let message = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = sign(message.as_bytes());
        format!("{message}.{}", b64(&signature))
    }

    pub fn rs256(key: &RsaKeyPair, kid: &str, claims: &Value) -> String {
        token(
            &json!({"alg": "RS256", "typ": "JWT", "kid": kid}),
            claims,
            |m| sign_rsa(key, &aws_sig::RSA_PKCS1_SHA256, m),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::test_keys::*;
    use super::*;
    use serde_json::json;

    const RS256_ONLY: &[Algorithm] = &[Algorithm::RS256];
    const RS_AND_ES: &[Algorithm] = &[Algorithm::RS256, Algorithm::ES256];

    fn parse(document: &Value, allowed: &[Algorithm]) -> KeySet {
        parse_jwks(document.to_string().as_bytes(), "test", allowed).expect("a JWKS")
    }

    #[test]
    fn good_set_is_indexed_by_kid() {
        let document =
            json!({"keys": [rsa_jwk(rsa(0), "a"), rsa_jwk(rsa(1), "b"), p256_jwk(p256(), "c")]});
        let set = parse(&document, RS_AND_ES);
        assert_eq!(set.len(), 3);
        assert!(set.contains_kid("a") && set.contains_kid("b") && set.contains_kid("c"));
        assert!(
            matches!(set.select(Some("a"), Algorithm::RS256), KeyChoice::Key(key) if key.kid() == Some("a"))
        );
        assert!(
            matches!(set.select(Some("c"), Algorithm::ES256), KeyChoice::Key(key) if key.key_type() == KeyType::P256)
        );
        // An RSA key is never used for ES256, nor an EC key for RS256.
        assert!(matches!(
            set.select(Some("a"), Algorithm::ES256),
            KeyChoice::Unsuitable
        ));
        assert!(matches!(
            set.select(Some("c"), Algorithm::RS256),
            KeyChoice::Unsuitable
        ));
        // The JWK says RS256: not usable as PS256 even though the type fits.
        assert!(matches!(
            set.select(Some("a"), Algorithm::PS256),
            KeyChoice::Unsuitable
        ));
        assert!(matches!(
            set.select(Some("zz"), Algorithm::RS256),
            KeyChoice::UnknownKid
        ));
        // No kid: two RSA keys are ambiguous, one EC key is not.
        assert!(matches!(
            set.select(None, Algorithm::RS256),
            KeyChoice::Ambiguous
        ));
        assert!(matches!(
            set.select(None, Algorithm::ES256),
            KeyChoice::Key(_)
        ));
        let mut kids: Vec<_> = set.kids().collect();
        kids.sort_unstable();
        assert_eq!(kids, ["a", "b", "c"]);
    }

    #[test]
    fn fingerprints_follow_material_not_kid() {
        let one = parse(&json!({"keys": [rsa_jwk(rsa(0), "a")]}), RS256_ONLY);
        let again = parse(&json!({"keys": [rsa_jwk(rsa(0), "a")]}), RS256_ONLY);
        let swapped = parse(&json!({"keys": [rsa_jwk(rsa(1), "a")]}), RS256_ONLY);
        let fingerprint = *one.keys()[0].fingerprint();
        assert!(again.contains_key(Some("a"), &fingerprint));
        assert!(!swapped.contains_key(Some("a"), &fingerprint));
        assert!(!again.contains_key(Some("b"), &fingerprint));
    }

    #[test]
    fn bad_keys_are_skipped_and_the_rest_serves() {
        let good = rsa_jwk(rsa(0), "good");
        let (n, e) = rsa_components(rsa(0));
        let mut enc = rsa_jwk(rsa(1), "enc");
        enc["use"] = json!("enc");
        let mut rs512 = rsa_jwk(rsa(1), "rs512");
        rs512["alg"] = json!("RS512");
        let mut bad_modulus = rsa_jwk(rsa(1), "bad-n");
        bad_modulus["n"] = json!("!!!not base64!!!");
        let mut even_modulus = n.clone();
        if let Some(last) = even_modulus.last_mut() {
            *last &= 0xfe;
        }
        let small = json!({"kty": "RSA", "kid": "small", "n": b64(&n[..128]), "e": b64(&e)});
        let mut bad_point = p256_jwk(p256(), "bad-point");
        bad_point["y"] = bad_point["x"].clone();
        let document = json!({"keys": [
            {"kty": "foo", "kid": "unknown-kty"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            enc,
            rs512,
            bad_modulus,
            {"kty": "RSA", "kid": "even", "n": b64(&even_modulus), "e": b64(&e)},
            small,
            bad_point,
            {"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": 7, "n": b64(&n), "e": b64(&e)},
            {"kty": "RSA", "kid": "no-verify", "key_ops": ["encrypt"], "n": b64(&n), "e": b64(&e)},
            "not an object",
            good,
        ]});
        let set = parse(&document, RS256_ONLY);
        let kids: Vec<_> = set.kids().collect();
        assert_eq!(kids, ["good"]);
        // The EC key is fine in itself but this issuer only allows RS256.
        assert!(parse(&json!({"keys": [p256_jwk(p256(), "ec")]}), RS256_ONLY).is_empty());
    }

    #[test]
    fn each_skip_has_its_reason() {
        let (n, e) = rsa_components(rsa(0));
        let small = json!({"kty": "RSA", "n": b64(&n[..128]), "e": b64(&e)});
        assert_eq!(
            parse_key(&small, RS256_ONLY).err(),
            Some(SkipReason::RsaSize(1024))
        );
        let hmac = json!({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"});
        assert_eq!(
            parse_key(&hmac, &[Algorithm::HS256]).err(),
            Some(SkipReason::SymmetricKey)
        );
        let none = json!({"kty": "RSA", "alg": "none", "n": b64(&n), "e": b64(&e)});
        assert_eq!(
            parse_key(&none, RS256_ONLY).err(),
            Some(SkipReason::UnsupportedAlg("none".into()))
        );
        let wrong_family = json!({"kty": "RSA", "alg": "ES256", "n": b64(&n), "e": b64(&e)});
        assert_eq!(
            parse_key(&wrong_family, RS_AND_ES).err(),
            Some(SkipReason::AlgDoesNotFitKey("ES256".into()))
        );
        // Padding is tolerated.
        let padded = json!({"kty": "RSA", "n": format!("{}==", b64(&n)), "e": b64(&e)});
        assert!(parse_key(&padded, RS256_ONLY).is_ok());
    }

    #[test]
    fn empty_set_and_garbage() {
        assert!(parse(&json!({"keys": []}), RS256_ONLY).is_empty());
        assert!(matches!(
            parse_jwks(b"<html>", "test", RS256_ONLY),
            Err(JwksError::NotJson(_))
        ));
        assert!(matches!(
            parse_jwks(b"{\"keys\": {}}", "test", RS256_ONLY),
            Err(JwksError::NoKeys)
        ));
        assert!(matches!(
            parse_jwks(b"[]", "test", RS256_ONLY),
            Err(JwksError::NoKeys)
        ));
        assert!(parse_jwks(b"", "test", RS256_ONLY).is_err());
    }

    #[test]
    fn too_many_keys_are_capped() {
        let entry = rsa_jwk(rsa(0), "k");
        let document = json!({"keys": vec![entry; MAX_KEYS + 5]});
        assert_eq!(parse(&document, RS256_ONLY).len(), MAX_KEYS);
    }
}
