//! Fetching an issuer's JWKS over HTTPS (SPEC §2 issuer settings): OIDC discovery, then the
//! key set, with bounded sizes and timeouts, HTTPS required unless the URL is loopback, and
//! the `Cache-Control: max-age` the refresh schedule honours.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use super::jwks::{JwksError, KeySet, parse_jwks, printable_kid};
use crate::config::IssuerConfig;

/// Limits of one HTTP fetch (discovery or JWKS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    pub connect_timeout: Duration,
    /// The whole request, body included.
    pub total_timeout: Duration,
    /// Larger bodies are refused while they are read, not after.
    pub max_body_bytes: usize,
}

impl Default for FetchLimits {
    fn default() -> FetchLimits {
        FetchLimits {
            connect_timeout: Duration::from_secs(2),
            total_timeout: Duration::from_secs(5),
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// The freshness lifetime a `Cache-Control` header grants: `max-age=N`, or zero for
/// `no-cache`/`no-store`. `None` when it says nothing about it.
pub fn cache_max_age(cache_control: &str) -> Option<Duration> {
    let mut result = None;
    for directive in cache_control.split(',') {
        let directive = directive.trim();
        if directive.eq_ignore_ascii_case("no-cache") || directive.eq_ignore_ascii_case("no-store")
        {
            return Some(Duration::ZERO);
        }
        if let Some((name, value)) = directive.split_once('=')
            && name.trim().eq_ignore_ascii_case("max-age")
            && result.is_none()
        {
            result = value
                .trim()
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    result
}

/// Whether `url`'s host is loopback (127.0.0.0/8, `::1`, `localhost`), where SPEC §2
/// allows plain `http://`.
pub fn is_loopback(url: &Url) -> bool {
    // `Url` has already normalised the host (IPv4 forms like `127.1`, IPv6 brackets).
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Parses a URL that keys may be fetched from: `https://`, or `http://` on loopback.
pub fn fetch_url(text: &str) -> Result<Url, FetchError> {
    let url = Url::parse(text).map_err(|_| FetchError::BadUrl(bounded(text)))?;
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        _ => Err(FetchError::BadUrl(bounded(text))),
    }
}

fn bounded(text: &str) -> String {
    printable_kid(text)
}

/// Why one refresh failed. Messages name URLs from the config or the issuer's discovery
/// document, never key material.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("not an https URL (http only on loopback): {0:?}")]
    BadUrl(String),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("response body larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Transport(String),
    #[error("discovery document: {0}")]
    Discovery(&'static str),
    #[error(transparent)]
    Jwks(#[from] JwksError),
    #[error("the JWKS has no usable key")]
    NoUsableKeys,
    #[error("cannot start the fetcher: {0}")]
    Setup(String),
}

impl From<reqwest::Error> for FetchError {
    /// Keeps the cause chain ("operation timed out", "connection refused"), which is
    /// what an operator needs, in one line.
    fn from(error: reqwest::Error) -> FetchError {
        let mut message = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        message.truncate(message.floor_char_boundary(512));
        FetchError::Transport(message)
    }
}

/// One successful JWKS fetch.
#[derive(Debug)]
pub struct Fetched {
    pub keys: KeySet,
    pub max_age: Option<Duration>,
}

/// Fetches one issuer's JWKS, through discovery unless `jwks_url` is set. The discovered
/// `jwks_uri` is kept and looked up again only after a failed JWKS fetch.
pub(super) struct Fetcher {
    issuer: Arc<IssuerConfig>,
    client: reqwest::Client,
    limits: FetchLimits,
    configured: Option<Url>,
    discovered: Option<Url>,
}

impl Fetcher {
    pub(super) fn new(
        issuer: Arc<IssuerConfig>,
        limits: FetchLimits,
    ) -> Result<Fetcher, FetchError> {
        let configured = issuer.jwks_url.as_deref().map(fetch_url).transpose()?;
        let issuer_url = fetch_url(&issuer.url)?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(limits.connect_timeout)
            .timeout(limits.total_timeout)
            .user_agent(concat!("jobgate/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                // Same scheme only (no https → http downgrade), and the same URL rules
                // as the config.
                let same_scheme = attempt
                    .previous()
                    .first()
                    .is_none_or(|first| first.scheme() == attempt.url().scheme());
                if attempt.previous().len() >= 5 {
                    attempt.error("too many redirects")
                } else if same_scheme && fetch_url(attempt.url().as_str()).is_ok() {
                    attempt.follow()
                } else {
                    attempt.error("redirect to a disallowed URL")
                }
            }));
        // A test or demo issuer on loopback must not be sent through an HTTP(S)_PROXY.
        if is_loopback(&issuer_url) && configured.as_ref().is_none_or(is_loopback) {
            builder = builder.no_proxy();
        }
        let client = builder
            .build()
            .map_err(|error| FetchError::Setup(error.to_string()))?;
        Ok(Fetcher {
            issuer,
            client,
            limits,
            configured,
            discovered: None,
        })
    }

    pub(super) async fn fetch(&mut self) -> Result<Fetched, FetchError> {
        let jwks_uri = match (&self.configured, &self.discovered) {
            (Some(url), _) | (None, Some(url)) => url.clone(),
            (None, None) => {
                let url = self.discover().await?;
                self.discovered = Some(url.clone());
                url
            }
        };
        let result = self.fetch_jwks(jwks_uri).await;
        if result.is_err() {
            self.discovered = None;
        }
        result
    }

    async fn discover(&self) -> Result<Url, FetchError> {
        let url = fetch_url(&format!(
            "{}/.well-known/openid-configuration",
            self.issuer.url.trim_end_matches('/')
        ))?;
        let (body, _) = self.get(url).await?;
        let document: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| FetchError::Discovery("not JSON"))?;
        if let Some(issuer) = document.get("issuer").and_then(|v| v.as_str())
            && issuer != self.issuer.url
        {
            tracing::warn!(
                issuer = %self.issuer.name,
                discovered = %bounded(issuer),
                "the discovery document names another issuer; tokens must still carry the configured url"
            );
        }
        let jwks_uri = document
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or(FetchError::Discovery("no jwks_uri"))?;
        fetch_url(jwks_uri)
    }

    async fn fetch_jwks(&self, url: Url) -> Result<Fetched, FetchError> {
        let (body, max_age) = self.get(url).await?;
        let keys = parse_jwks(&body, &self.issuer.name, &self.issuer.algorithms)?;
        if keys.is_empty() {
            return Err(FetchError::NoUsableKeys);
        }
        Ok(Fetched { keys, max_age })
    }

    /// GETs `url` and reads at most `max_body_bytes` of a 2xx body, chunk by chunk.
    async fn get(&self, url: Url) -> Result<(Vec<u8>, Option<Duration>), FetchError> {
        let limit = self.limits.max_body_bytes;
        let mut response = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status().as_u16()));
        }
        if response
            .content_length()
            .is_some_and(|length| length > limit as u64)
        {
            return Err(FetchError::TooLarge(limit));
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|value| value.to_str().ok())
            .and_then(cache_max_age);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > limit {
                return Err(FetchError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, max_age))
    }
}
