//! The embedded OIDC issuer: a fresh RSA-2048 key per run, discovery and JWKS like any
//! issuer, and a token endpoint shaped like GitHub Actions' own.

use async_trait::async_trait;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self as aws_sig, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::{Map, Value, json};

use super::job::{TokenRequest, job_claims, parse_token_target};
use super::respond::{JsonStyle, json_response};

/// Where the issuer publishes its key set (GitHub's own path).
pub(super) const JWKS_PATH: &str = "/.well-known/jwks";

pub(super) const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// The demo issuer's key and identity. The private key never leaves this value: it is not
/// printed, logged, serialised or written anywhere.
pub struct DemoIssuer {
    url: String,
    kid: String,
    key: KeyPair,
    jwk: Value,
}

impl std::fmt::Debug for DemoIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoIssuer")
            .field("url", &self.url)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl DemoIssuer {
    /// An issuer at `url` with a fresh RSA-2048 key; its kid is the key's RFC 7638
    /// thumbprint, as many real issuers do.
    pub fn generate(url: String) -> Result<DemoIssuer, String> {
        let key = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| "cannot generate the demo issuer's RSA key".to_string())?;
        let components = aws_sig::RsaPublicKeyComponents::<Vec<u8>>::from(key.public_key());
        let n = URL_SAFE_NO_PAD.encode(&components.n);
        let e = URL_SAFE_NO_PAD.encode(&components.e);
        // RFC 7638: the required members in lexicographic order, no whitespace.
        let thumbprint_input = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            thumbprint_input.as_bytes(),
        ));
        let jwk = json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": n, "e": e});
        Ok(DemoIssuer { url, kid, key, jwk })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The discovery document: what jobgate reads to find the JWKS.
    pub fn discovery(&self) -> Value {
        json!({
            "issuer": self.url,
            "jwks_uri": format!("{}{JWKS_PATH}", self.url),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public", "pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid"],
            "claims_supported": GITHUB_CLAIMS.split_whitespace().collect::<Vec<_>>(),
        })
    }

    /// The public key set.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// Signs `claims` as an RS256 compact JWS with this issuer's kid.
    pub fn mint(&self, claims: &Map<String, Value>) -> Result<String, String> {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let payload = serde_json::to_vec(claims).map_err(|error| error.to_string())?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_sig::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| "RS256 signing failed".to_string())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// The claims GitHub Actions tokens carry (SPEC §2), for the discovery document.
pub(super) const GITHUB_CLAIMS: &str = "iss sub aud exp iat nbf jti actor actor_id base_ref check_run_id \
    enterprise enterprise_id environment environment_node_id event_name head_ref \
    job_workflow_ref job_workflow_sha ref ref_protected ref_type repository repository_id \
    repository_owner repository_owner_id repository_visibility run_attempt run_id run_number \
    runner_environment sha workflow workflow_ref workflow_sha";

/// Serves discovery, the JWKS and the token endpoint.
pub struct IssuerApp {
    pub issuer: DemoIssuer,
}

impl IssuerApp {
    fn token_response(&self, request: &TokenRequest) -> Response<Vec<u8>> {
        let claims = job_claims(&self.issuer.url, request, crate::clock::unix_now());
        match self.issuer.mint(&claims) {
            Ok(token) => {
                let claim = |name: &str| claims.get(name).and_then(Value::as_str).unwrap_or("-");
                tracing::info!(
                    repository = claim("repository"),
                    audience = claim("aud"),
                    "demo issuer: token minted"
                );
                // Compact JSON on purpose: the printed `sed` extracts `"value":"…"`.
                json_response(
                    StatusCode::OK,
                    &json!({ "value": token }),
                    JsonStyle::Private,
                )
            }
            Err(message) => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({ "error": message }),
                JsonStyle::Private,
            ),
        }
    }
}

#[async_trait]
impl ServeHttp for IssuerApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let header = session.req_header();
        let method = header.method.clone();
        let target = header.uri.path_and_query().map_or_else(
            || header.uri.path().to_string(),
            |pq| pq.as_str().to_string(),
        );
        // The workflow-style request carries `Authorization: bearer $ACTIONS_ID_TOKEN_
        // REQUEST_TOKEN`; the demo has no runner to authenticate, so it is ignored.
        if method != http::Method::GET && method != http::Method::HEAD {
            if method == http::Method::POST
                && let Some(request) = parse_token_target(&target)
            {
                return self.token_response(&request);
            }
            return json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({"error": "GET only"}),
                JsonStyle::Private,
            );
        }
        if let Some(request) = parse_token_target(&target) {
            return self.token_response(&request);
        }
        match header.uri.path() {
            DISCOVERY_PATH => {
                json_response(StatusCode::OK, &self.issuer.discovery(), JsonStyle::Public)
            }
            JWKS_PATH => json_response(StatusCode::OK, &self.issuer.jwks(), JsonStyle::Public),
            _ => json_response(
                StatusCode::NOT_FOUND,
                &json!({"error": "not found",
                        "endpoints": [DISCOVERY_PATH, JWKS_PATH, "/token?audience=…&<claim>=<value>"]}),
                JsonStyle::Private,
            ),
        }
    }
}
