//! The validated, compiled config: the buffer between the stable file format
//! (`config::file`) and the types the request path reads. Built once per load.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::diagnostic::Diagnostic;
use super::rules::CompiledRule;

/// The public GitHub Actions issuer: it signs tokens for every repository on github.com.
pub const PUBLIC_GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// The derived `job_url` value (SPEC §4): a header table may name it, a rule may not.
pub const JOB_URL: &str = "job_url";

/// Everything one load of the config file produced.
#[derive(Debug)]
pub struct Config {
    /// The file it came from; relative paths in it were resolved against its directory.
    pub source: PathBuf,
    /// Hex SHA-256 of the file's bytes, for `jobgate_config_info`.
    pub sha256: String,
    pub server: ServerConfig,
    pub audit: AuditOutput,
    pub issuers: Vec<Arc<IssuerConfig>>,
    pub routes: Vec<RouteConfig>,
    pub revocation_file: Option<PathBuf>,
    /// `[revocation] state_file`: where runtime revocations live without `[cluster]`.
    pub revocation_state_file: Option<PathBuf>,
    /// `[cluster]`: state shared with other gateways through Redis (SPEC §9).
    pub cluster: Option<ClusterConfig>,
    /// Non-fatal findings that `check` prints and `serve` logs.
    pub warnings: Vec<Diagnostic>,
}

/// `[cluster]`: where the rate-limit buckets and used tokens shared by every gateway with the
/// same Redis and prefix live.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `redis://…` or `rediss://…`; may hold a password, so it is never printed (see `Debug`).
    pub redis_url: String,
    /// Default `jobgate:`.
    pub key_prefix: String,
    /// One Redis call on the request path; default 50 ms.
    pub timeout: Duration,
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis_url", &"<redacted>")
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// `host:port` strings, validated as socket addresses.
    pub listen: Vec<String>,
    pub tls: Option<TlsFiles>,
    /// Default `127.0.0.1:9090`.
    pub admin_listen: String,
    /// 0 in the file means the number of CPUs; this is already resolved.
    pub threads: usize,
    /// Default 16384.
    pub max_token_bytes: usize,
    /// Default 10 s.
    pub grace_period: Duration,
    /// Client connections of the proxy listeners open at once (SPEC §8); default 10 000.
    pub max_connections: usize,
    /// A whole request head is due within this; default 10 s, never zero.
    pub header_timeout: Duration,
    /// An idle keep-alive client connection is closed after this; default 60 s, never zero.
    pub idle_timeout: Duration,
    /// Bound of the verified-token cache; default 100 000.
    pub token_cache_entries: usize,
    /// Peers whose `X-Forwarded-For` names the client (SPEC §8); empty by default.
    pub trusted_proxies: super::TrustedProxies,
    /// From `admin_token_file`: enables the `/revocations` admin API (SPEC §9).
    pub admin_token: Option<AdminToken>,
}

/// The admin API's bearer token, read from `admin_token_file` at each config load. Only its
/// SHA-256 digest is kept, so the token itself cannot end up in a log or a `Debug` dump.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken {
    /// The file it was read from: `jobgate revoke` reads the token there itself.
    pub path: PathBuf,
    digest: [u8; 32],
}

impl AdminToken {
    pub fn new(path: PathBuf, token: &str) -> AdminToken {
        AdminToken {
            path,
            digest: sha256(token.as_bytes()),
        }
    }

    /// The token held by `path`: one line, trimmed. The error says what is wrong with the
    /// file and never quotes it.
    pub fn read_file(path: &std::path::Path) -> Result<String, String> {
        /// A token file longer than this is not a token file.
        const MAX_BYTES: u64 = 4096;
        let metadata = std::fs::metadata(path).map_err(|e| format!("cannot be read ({e})"))?;
        if metadata.len() > MAX_BYTES {
            return Err(format!("is larger than {MAX_BYTES} bytes"));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot be read ({e})"))?;
        let token = text.trim();
        if token.is_empty() {
            return Err("is empty".to_owned());
        }
        if !token.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(
                "holds more than one line, spaces, or characters that are not printable ASCII"
                    .to_owned(),
            );
        }
        Ok(token.to_owned())
    }

    /// Whether `presented` is the token. Digests of equal length are compared in constant
    /// time, so the answer's timing says nothing about how much of a guess was right.
    pub fn accepts(&self, presented: &[u8]) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(&sha256(presented), &self.digest).is_ok()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AdminToken({}: <redacted>)", self.path.display())
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditOutput {
    Stdout,
    Off,
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssuerKind {
    Github,
    Generic,
}

/// One `[[issuer]]`. Compared as a whole on reload: an unchanged issuer keeps its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerConfig {
    pub name: String,
    /// The exact `iss` value tokens must carry.
    pub url: String,
    /// Set: discovery is skipped.
    pub jwks_url: Option<String>,
    pub kind: IssuerKind,
    /// GitHub kind: base of derived job URLs. Default `https://github.com`.
    pub server_url: String,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub refresh: Duration,
    pub min_refetch_interval: Duration,
    pub max_stale: Duration,
    pub max_token_age: Option<Duration>,
    /// Identity headers: (header name, claim name), defaults already applied.
    pub headers: Vec<(http::HeaderName, String)>,
}

impl IssuerConfig {
    /// True for the public github.com issuer, which signs for every repository on github.com.
    pub fn is_public_github(&self) -> bool {
        self.url == PUBLIC_GITHUB_ISSUER
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Any,
    /// Lower-case exact host.
    Exact(String),
    /// Lower-case suffix including the leading dot: `*.example` is stored as `.example`.
    Suffix(String),
}

/// An upstream URL, parsed but not resolved: `check` must not touch the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub tls: bool,
    /// Lower-case host name or IP address; an IPv6 address without its brackets.
    pub host: String,
    /// Explicit, or 80 / 443 by scheme.
    pub port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Shadow,
}

#[derive(Debug)]
pub struct RouteConfig {
    pub name: String,
    pub host: HostMatch,
    /// Starts with `/`. Default `/`.
    pub path_prefix: String,
    /// `None`: every method.
    pub methods: Option<Vec<http::Method>>,
    pub upstreams: Vec<UpstreamUrl>,
    pub upstream_ca: Option<PathBuf>,
    /// Upstream connect + response timeout; default 30 s.
    pub timeout: Duration,
    /// `None` for a public route (`auth = false`).
    pub auth: Option<RouteAuth>,
    /// `[[route.limit]]` tables in file order (SPEC §8).
    pub limits: Vec<RouteLimit>,
    /// Each token admitted once on this route (SPEC §8); only on authenticated routes.
    pub single_use: bool,
}

/// One `[[route.limit]]`: `requests` per `per`, per distinct value of `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLimit {
    pub key: LimitKey,
    /// At least 1.
    pub requests: u32,
    /// At least 1 s.
    pub per: Duration,
}

/// What a limit counts by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// The client address (SPEC §8, behind `trusted_proxies`): checked before any token is
    /// read, counting every request that reaches the route.
    ClientIp,
    /// A verified claim's value: checked after the rules admitted the request.
    Claim(String),
}

impl fmt::Display for LimitKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKey::ClientIp => f.write_str("client_ip"),
            LimitKey::Claim(claim) => f.write_str(claim),
        }
    }
}

#[derive(Debug)]
pub struct RouteAuth {
    /// Index into `Config::issuers`.
    pub issuer: usize,
    pub audience: String,
    pub strip_authorization: bool,
    pub mode: Mode,
    pub allow_any_repository: bool,
    pub allow: Vec<CompiledRule>,
    pub deny: Vec<CompiledRule>,
}
