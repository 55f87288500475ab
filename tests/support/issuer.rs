//! A real OIDC issuer for integration tests: keys generated at test time, discovery and
//! JWKS served over HTTP on 127.0.0.1, and a token minter.
//!
//! The server runs on a tokio runtime in a thread of its own (`http`), so plain
//! `#[test]`s can use it. Switches make it fail (500), hang (longer than jobgate's 5 s
//! fetch timeout) or serve garbage; counters say how often discovery and the JWKS were
//! fetched. Keys can be added, removed and rotated while it runs. `mint_with_header` signs
//! any header and claims with any signer, for attack tests (`alg: none`, HS256 keyed with
//! the public key, …). Every wait is bounded.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self as aws_sig, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::{Value, json};

// benches/ compile this file alone (`#[path]`), so the server it needs comes with it; the
// echo upstream in `support` uses it from here.
#[path = "http.rs"]
pub mod http;

use http::HttpServer;

/// Where discovery points for the key set.
pub const JWKS_PATH: &str = "/.well-known/jwks";
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// Unix time now, in seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url (no padding); panics on bad input, which is a test bug.
pub fn b64url_decode(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

// ---------------------------------------------------------------------------------------
// Keys.
// ---------------------------------------------------------------------------------------

#[derive(Clone)]
enum KeyMaterial {
    Rsa(Arc<RsaKeyPair>),
    P256(Arc<EcdsaKeyPair>),
}

/// A signing key with its kid. Cheap to clone.
#[derive(Clone)]
pub struct TestKey {
    kid: String,
    material: KeyMaterial,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg())
            .finish()
    }
}

impl TestKey {
    /// A fresh RSA-2048 key for RS256.
    pub fn rsa(kid: &str) -> TestKey {
        TestKey {
            kid: kid.to_string(),
            material: KeyMaterial::Rsa(Arc::new(
                RsaKeyPair::generate(KeySize::Rsa2048).expect("RSA-2048 key generation"),
            )),
        }
    }

    /// A fresh P-256 key for ES256.
    pub fn p256(kid: &str) -> TestKey {
        TestKey {
            kid: kid.to_string(),
            material: KeyMaterial::P256(Arc::new(
                EcdsaKeyPair::generate(&aws_sig::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .expect("P-256 key generation"),
            )),
        }
    }

    /// The same key material under another kid (to test kid reuse and collisions).
    pub fn with_kid(&self, kid: &str) -> TestKey {
        TestKey {
            kid: kid.to_string(),
            material: self.material.clone(),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm this key signs with by default.
    pub fn alg(&self) -> &'static str {
        match self.material {
            KeyMaterial::Rsa(_) => "RS256",
            KeyMaterial::P256(_) => "ES256",
        }
    }

    /// The public JWK, as an issuer publishes it.
    pub fn jwk(&self) -> Value {
        match &self.material {
            KeyMaterial::Rsa(pair) => {
                let components =
                    aws_sig::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
                json!({"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                       "n": b64url(&components.n), "e": b64url(&components.e)})
            }
            KeyMaterial::P256(pair) => {
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "kid": self.kid, "use": "sig", "alg": "ES256",
                       "crv": "P-256", "x": b64url(&point[1..33]), "y": b64url(&point[33..65])})
            }
        }
    }

    /// The public key as X.509 SubjectPublicKeyInfo DER: what an alg-confusion attacker
    /// uses as an HMAC secret.
    pub fn public_key_der(&self) -> Vec<u8> {
        match &self.material {
            KeyMaterial::Rsa(pair) => pair
                .public_key()
                .as_der()
                .expect("RSA public key DER")
                .as_ref()
                .to_vec(),
            KeyMaterial::P256(pair) => pair
                .public_key()
                .as_der()
                .expect("EC public key DER")
                .as_ref()
                .to_vec(),
        }
    }

    /// The same DER as PEM text (the classic alg-confusion secret).
    pub fn public_key_pem(&self) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(self.public_key_der());
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// Signs `message` with `alg` (RS256/384/512, PS256/384/512 for RSA keys, ES256 for
    /// P-256). Panics on a combination the key cannot make: a test bug.
    pub fn sign_as(&self, alg: &str, message: &[u8]) -> Vec<u8> {
        match &self.material {
            KeyMaterial::Rsa(pair) => {
                let encoding: &'static dyn aws_sig::RsaEncoding = match alg {
                    "RS256" => &aws_sig::RSA_PKCS1_SHA256,
                    "RS384" => &aws_sig::RSA_PKCS1_SHA384,
                    "RS512" => &aws_sig::RSA_PKCS1_SHA512,
                    "PS256" => &aws_sig::RSA_PSS_SHA256,
                    "PS384" => &aws_sig::RSA_PSS_SHA384,
                    "PS512" => &aws_sig::RSA_PSS_SHA512,
                    other => panic!("an RSA key cannot sign {other}"),
                };
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(encoding, &SystemRandom::new(), message, &mut signature)
                    .expect("RSA signing");
                signature
            }
            KeyMaterial::P256(pair) => {
                assert_eq!(alg, "ES256", "a P-256 key signs ES256 only");
                pair.sign(&SystemRandom::new(), message)
                    .expect("ECDSA signing")
                    .as_ref()
                    .to_vec()
            }
        }
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.sign_as(self.alg(), message)
    }
}

/// How `mint_with_header` produces the signature part.
pub enum Signer<'a> {
    /// The key's own algorithm.
    Key(&'a TestKey),
    /// The key with another algorithm (RS512 where only RS256 is allowed, …).
    KeyAs(&'a TestKey, &'a str),
    /// HMAC-SHA256 with this secret (alg confusion: pass `public_key_der()`).
    Hs256(&'a [u8]),
    /// An empty signature part (`alg: none`).
    Unsigned,
    /// These exact signature bytes.
    Raw(&'a [u8]),
}

/// `base64url(header).base64url(claims).base64url(signature)` with the JSON exactly as
/// given (no `alg` or `kid` is added).
pub fn mint_with_header(header: &Value, claims: &Value, signer: Signer<'_>) -> String {
    mint_raw(
        header.to_string().as_bytes(),
        claims.to_string().as_bytes(),
        signer,
    )
}

/// Like [`mint_with_header`] with raw header and payload bytes (duplicate members,
/// invalid JSON, …).
pub fn mint_raw(header: &[u8], payload: &[u8], signer: Signer<'_>) -> String {
    let message = format!("{}.{}", b64url(header), b64url(payload));
    let signature = match signer {
        Signer::Key(key) => key.sign(message.as_bytes()),
        Signer::KeyAs(key, alg) => key.sign_as(alg, message.as_bytes()),
        Signer::Hs256(secret) => {
            let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
            aws_lc_rs::hmac::sign(&key, message.as_bytes())
                .as_ref()
                .to_vec()
        }
        Signer::Unsigned => Vec::new(),
        Signer::Raw(bytes) => bytes.to_vec(),
    };
    format!("{message}.{}", b64url(&signature))
}

/// Claims shaped like a GitHub Actions job token for `issuer` and `audience`, valid from a
/// few seconds ago for five minutes. `overrides` (an object) replaces members; a `null`
/// removes one.
pub fn github_claims(issuer: &str, audience: &str, overrides: &Value) -> Value {
    let now = now();
    let sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4";
    let mut claims = json!({
        "jti": format!("jti-{now}-{}", fastrand::u64(..)),
        "sub": "repo:acme/app:environment:production",
        "aud": audience,
        "ref": "refs/heads/main",
        "sha": sha,
        "repository": "acme/app",
        "repository_owner": "acme",
        "repository_owner_id": "1001",
        "repository_id": "2002",
        "repository_visibility": "private",
        "run_id": "15012345678",
        "run_number": "7",
        "run_attempt": "1",
        "check_run_id": "52711234567",
        "runner_environment": "github-hosted",
        "actor": "octocat",
        "actor_id": "583231",
        "workflow": "deploy",
        "workflow_ref": "acme/app/.github/workflows/deploy.yml@refs/heads/main",
        "workflow_sha": sha,
        "job_workflow_ref": "acme/app/.github/workflows/deploy.yml@refs/heads/main",
        "job_workflow_sha": sha,
        "event_name": "push",
        "ref_type": "branch",
        "ref_protected": "true",
        "head_ref": "",
        "base_ref": "",
        "environment": "production",
        "environment_node_id": "EN_kwDOAbCdEs4AAAAB",
        "iss": issuer,
        "nbf": now - 5,
        "iat": now - 5,
        "exp": now + 300,
    });
    merge(&mut claims, overrides);
    claims
}

/// Applies `overrides` to `claims`: members replaced, `null` members removed.
pub fn merge(claims: &mut Value, overrides: &Value) {
    let (Some(target), Some(overrides)) = (claims.as_object_mut(), overrides.as_object()) else {
        return;
    };
    for (name, value) in overrides {
        if value.is_null() {
            target.remove(name);
        } else {
            target.insert(name.clone(), value.clone());
        }
    }
}

// ---------------------------------------------------------------------------------------
// The HTTP issuer.
// ---------------------------------------------------------------------------------------

/// How an endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    Normal,
    /// 500 with a JSON error body.
    Fail,
    /// Answers (500) only after the hang duration (default 10 s, longer than the fetch
    /// timeout).
    Hang,
    /// 200 with a body that is not JSON.
    Garbage,
}

struct State {
    keys: Vec<TestKey>,
    discovery: Behaviour,
    jwks: Behaviour,
    cache_control: Option<String>,
    hang_for: Duration,
    /// Overrides the discovered `jwks_uri`.
    jwks_uri: Option<String>,
}

struct Counters {
    discovery: AtomicUsize,
    jwks: AtomicUsize,
}

/// An OIDC issuer on `http://127.0.0.1:PORT`, stopped on drop.
pub struct TestIssuer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    counters: Arc<Counters>,
    _server: HttpServer,
}

impl TestIssuer {
    /// An issuer with one RSA key, kid `rsa-1`.
    pub fn start() -> TestIssuer {
        TestIssuer::start_with_keys(vec![TestKey::rsa("rsa-1")])
    }

    /// An issuer publishing `keys`; the first one signs by default.
    pub fn start_with_keys(keys: Vec<TestKey>) -> TestIssuer {
        let state = Arc::new(Mutex::new(State {
            keys,
            discovery: Behaviour::Normal,
            jwks: Behaviour::Normal,
            cache_control: None,
            hang_for: Duration::from_secs(10),
            jwks_uri: None,
        }));
        let counters = Arc::new(Counters {
            discovery: AtomicUsize::new(0),
            jwks: AtomicUsize::new(0),
        });
        let (server_state, server_counters) = (Arc::clone(&state), Arc::clone(&counters));
        let server = HttpServer::start("test-issuer", move |request, addr| {
            let state = Arc::clone(&server_state);
            let counters = Arc::clone(&server_counters);
            async move { answer(request, addr, &state, &counters).await }
        });
        TestIssuer {
            addr: server.addr(),
            state,
            counters,
            _server: server,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The issuer URL: the `iss` of its tokens and the `url` of its `[[issuer]]`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn jwks_url(&self) -> String {
        format!("{}{JWKS_PATH}", self.url())
    }

    /// An `[[issuer]]` table named `name` for jobgate's config, then `extra` lines (last, so
    /// that they may open an `[issuer.headers]` sub-table). `min_refetch_interval` is 1 s,
    /// short for tests, unless `extra` sets it.
    pub fn issuer_table(&self, name: &str, extra: &str) -> String {
        let min_refetch = if extra.contains("min_refetch_interval") {
            ""
        } else {
            "min_refetch_interval = \"1s\"\n"
        };
        format!(
            "[[issuer]]\nname = \"{name}\"\nurl = \"{}\"\nalgorithms = [\"RS256\", \"ES256\"]\n{min_refetch}{extra}\n",
            self.url()
        )
    }

    // --- keys -------------------------------------------------------------------------

    pub fn keys(&self) -> Vec<TestKey> {
        self.state().keys.clone()
    }

    pub fn key(&self, kid: &str) -> Option<TestKey> {
        self.state().keys.iter().find(|key| key.kid == kid).cloned()
    }

    /// The key that signs by default (the first published one).
    pub fn signing_key(&self) -> TestKey {
        self.state()
            .keys
            .first()
            .cloned()
            .expect("the test issuer has no key; add one first")
    }

    pub fn add_key(&self, key: TestKey) {
        self.state().keys.push(key);
    }

    pub fn add_rsa_key(&self, kid: &str) -> TestKey {
        let key = TestKey::rsa(kid);
        self.add_key(key.clone());
        key
    }

    pub fn add_p256_key(&self, kid: &str) -> TestKey {
        let key = TestKey::p256(kid);
        self.add_key(key.clone());
        key
    }

    /// Stops publishing `kid`; whether it was published.
    pub fn remove_key(&self, kid: &str) -> bool {
        let mut state = self.state();
        let before = state.keys.len();
        state.keys.retain(|key| key.kid != kid);
        state.keys.len() != before
    }

    /// A completed rotation: a new RSA key `new_kid` replaces every published key.
    pub fn rotate(&self, new_kid: &str) -> TestKey {
        let key = TestKey::rsa(new_kid);
        self.state().keys = vec![key.clone()];
        key
    }

    // --- switches ---------------------------------------------------------------------

    /// Both endpoints answer this way.
    pub fn set_behaviour(&self, behaviour: Behaviour) {
        let mut state = self.state();
        state.discovery = behaviour;
        state.jwks = behaviour;
    }

    pub fn set_discovery_behaviour(&self, behaviour: Behaviour) {
        self.state().discovery = behaviour;
    }

    pub fn set_jwks_behaviour(&self, behaviour: Behaviour) {
        self.state().jwks = behaviour;
    }

    pub fn fail(&self) {
        self.set_behaviour(Behaviour::Fail);
    }

    pub fn hang(&self) {
        self.set_behaviour(Behaviour::Hang);
    }

    pub fn garbage(&self) {
        self.set_behaviour(Behaviour::Garbage);
    }

    pub fn heal(&self) {
        self.set_behaviour(Behaviour::Normal);
    }

    /// How long `Hang` holds a request (default 10 s; keep it bounded).
    pub fn set_hang_duration(&self, duration: Duration) {
        self.state().hang_for = duration;
    }

    /// A `Cache-Control` header on JWKS responses (`Some("max-age=2")`), or none.
    pub fn set_cache_control(&self, value: Option<&str>) {
        self.state().cache_control = value.map(str::to_string);
    }

    /// Makes discovery point at another `jwks_uri` (e.g. a non-loopback http URL).
    pub fn set_jwks_uri(&self, uri: Option<&str>) {
        self.state().jwks_uri = uri.map(str::to_string);
    }

    // --- counters ---------------------------------------------------------------------

    pub fn discovery_fetches(&self) -> usize {
        self.counters.discovery.load(Ordering::SeqCst)
    }

    pub fn jwks_fetches(&self) -> usize {
        self.counters.jwks.load(Ordering::SeqCst)
    }

    /// Waits until the JWKS was fetched at least `count` times; false after `limit`.
    pub fn wait_for_jwks_fetches(&self, count: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.jwks_fetches() >= count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.jwks_fetches() >= count
    }

    // --- tokens -----------------------------------------------------------------------

    /// GitHub-Actions-shaped claims from this issuer for `audience`.
    pub fn github_claims(&self, audience: &str) -> Value {
        github_claims(&self.url(), audience, &json!({}))
    }

    /// [`TestIssuer::github_claims`] with `overrides` applied (`null` removes a claim).
    pub fn github_claims_with(&self, audience: &str, overrides: Value) -> Value {
        github_claims(&self.url(), audience, &overrides)
    }

    /// Signs `claims` with the default key, header `{alg, typ: JWT, kid}`.
    pub fn mint(&self, claims: Value) -> String {
        self.mint_with_key(&self.signing_key(), claims)
    }

    pub fn mint_with_key(&self, key: &TestKey, claims: Value) -> String {
        let header = json!({"alg": key.alg(), "typ": "JWT", "kid": key.kid});
        mint_with_header(&header, &claims, Signer::Key(key))
    }

    /// A valid GitHub-shaped token for `audience`.
    pub fn mint_github(&self, audience: &str) -> String {
        self.mint(self.github_claims(audience))
    }

    /// A GitHub-shaped token for `audience` with `overrides` applied.
    pub fn mint_github_with(&self, audience: &str, overrides: Value) -> String {
        self.mint(self.github_claims_with(audience, overrides))
    }

    /// A valid GitHub-shaped token for `audience` of exactly `length` bytes (RSA-2048 signing
    /// key), padded with a `pad` claim and, for lengths base64 cannot reach with the claim
    /// alone, a header member.
    pub fn mint_github_of_length(&self, audience: &str, length: usize) -> String {
        let key = self.signing_key();
        let base = self.github_claims_with(audience, json!({"pad": ""}));
        let base_len = base.to_string().len();
        let b64_len = |bytes: usize| (bytes * 4).div_ceil(3);
        for header_pad in 0..4 {
            let header = json!({"alg": "RS256", "typ": "JWT", "kid": key.kid(), "x": "y".repeat(header_pad)});
            // Two dots, and an RSA-2048 signature is 342 base64url characters.
            let fixed = b64_len(header.to_string().len()) + 2 + 342;
            let Some(room) = length.checked_sub(fixed) else {
                continue;
            };
            // The pad is ASCII, so each character is one more byte of JSON.
            let Some(pad) = (0..=room).find(|pad| b64_len(base_len + pad) == room) else {
                continue;
            };
            let mut claims = base.clone();
            claims["pad"] = json!("p".repeat(pad));
            let token = mint_with_header(&header, &claims, Signer::Key(&key));
            assert_eq!(token.len(), length);
            return token;
        }
        panic!("no token of exactly {length} bytes");
    }
}

fn response(
    status: u16,
    body: String,
    cache_control: Option<&str>,
) -> hyper::Response<Full<Bytes>> {
    let mut builder = hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(value) = cache_control {
        builder = builder.header("cache-control", value);
    }
    builder
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

async fn answer(
    request: hyper::Request<hyper::body::Incoming>,
    addr: SocketAddr,
    state: &Mutex<State>,
    counters: &Counters,
) -> hyper::Response<Full<Bytes>> {
    let url = format!("http://{addr}");
    let path = request.uri().path().to_string();
    let (behaviour, hang_for, body, cache_control) = {
        let state = state.lock().unwrap_or_else(PoisonError::into_inner);
        match path.as_str() {
            DISCOVERY_PATH => {
                counters.discovery.fetch_add(1, Ordering::SeqCst);
                let jwks_uri = state
                    .jwks_uri
                    .clone()
                    .unwrap_or_else(|| format!("{url}{JWKS_PATH}"));
                let body = json!({
                    "issuer": url,
                    "jwks_uri": jwks_uri,
                    "subject_types_supported": ["public", "pairwise"],
                    "response_types_supported": ["id_token"],
                    "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "repository"],
                    "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                    "scopes_supported": ["openid"],
                });
                (state.discovery, state.hang_for, body.to_string(), None)
            }
            JWKS_PATH => {
                counters.jwks.fetch_add(1, Ordering::SeqCst);
                let keys: Vec<Value> = state.keys.iter().map(TestKey::jwk).collect();
                let body = json!({ "keys": keys });
                (
                    state.jwks,
                    state.hang_for,
                    body.to_string(),
                    state.cache_control.clone(),
                )
            }
            _ => return response(404, String::from(r#"{"error":"not found"}"#), None),
        }
    };
    match behaviour {
        Behaviour::Normal => response(200, body, cache_control.as_deref()),
        Behaviour::Fail => response(500, String::from(r#"{"error":"failing on purpose"}"#), None),
        Behaviour::Hang => {
            tokio::time::sleep(hang_for).await;
            response(500, String::from(r#"{"error":"hung on purpose"}"#), None)
        }
        Behaviour::Garbage => response(200, String::from("<html>this is not a JWKS"), None),
    }
}
