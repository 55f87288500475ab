//! `jobgate demo`: the gateway, an embedded OIDC issuer and an echo upstream on loopback, in
//! one process and one Pingora server, with no network and no setup (SPEC §1).
//!
//! The issuer makes a fresh RSA-2048 key every run, so no private key ships with jobgate or
//! outlives the process. It serves discovery and a JWKS like any issuer, and a token endpoint
//! shaped like GitHub Actions' own (`GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=…`), so a
//! workflow's token-fetching step works against it unchanged. Query parameters override the
//! claims of a realistic job of `acme/app`, which is how the printed examples get denied.
//!
//! The gateway runs `config/demo.toml` (or the copy built into the binary) with the demo's
//! ports substituted, validated like any config. Once the issuer answers and the gateway
//! has its keys (`/readyz`), the demo prints copy-paste `curl` lines, each with the status
//! it gives; `tests/demo.rs` runs exactly those lines.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::IntoRawFd as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self as aws_sig, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::server::{ListenFds, ShutdownWatch};
use pingora::services::listening::Service;
use pingora::services::{ServiceReadyNotifier, ServiceWithDependents};
use serde_json::{Map, Value, json};

use crate::config::{self, Config};

/// Exit status for bad usage or a bad config (SPEC §1).
const EXIT_BAD_CONFIG: u8 = 2;
/// Exit status for a runtime failure, such as a port already in use.
const EXIT_RUNTIME: u8 = 1;

/// Where the demo looks for its config, relative to the current directory.
const CONFIG_PATH: &str = "config/demo.toml";
/// The same file as built into the binary, so `jobgate demo` works from any directory.
const EMBEDDED_CONFIG: &str = include_str!("../config/demo.toml");

/// Where the issuer publishes its key set (GitHub's own path).
const JWKS_PATH: &str = "/.well-known/jwks";
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// How long a minted token is valid, like GitHub's.
const TOKEN_LIFETIME_SECS: i64 = 300;
/// The echo upstream reads at most this much of a request body.
const MAX_ECHO_BODY: usize = 64 * 1024;
/// How long the demo waits for the gateway to have the issuer's keys before printing the
/// examples anyway, with a warning. The key store retries after about 1 s.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Arguments of `jobgate demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// The gateway's port.
    #[arg(long, default_value_t = DEFAULT_PORTS.proxy, value_parser = clap::value_parser!(u16).range(1..))]
    pub port: u16,
    /// The admin listener's port (/metrics, /healthz, /readyz).
    #[arg(long, default_value_t = DEFAULT_PORTS.admin, value_parser = clap::value_parser!(u16).range(1..))]
    pub admin_port: u16,
    /// The embedded OIDC issuer's port.
    #[arg(long, default_value_t = DEFAULT_PORTS.issuer, value_parser = clap::value_parser!(u16).range(1..))]
    pub issuer_port: u16,
    /// The echo upstream's port.
    #[arg(long, default_value_t = DEFAULT_PORTS.upstream, value_parser = clap::value_parser!(u16).range(1..))]
    pub upstream_port: u16,
}

/// Runs the demo until Ctrl-C (SIGINT) or SIGTERM stops the gateway, the issuer and the
/// echo upstream together.
pub fn run(args: DemoArgs) -> ExitCode {
    let ports = DemoPorts {
        proxy: args.port,
        admin: args.admin_port,
        issuer: args.issuer_port,
        upstream: args.upstream_port,
    };
    if let Err(message) = ports.check_distinct() {
        eprintln!("jobgate demo: {message}");
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    // Checked before anything starts: Pingora would only panic in a service thread.
    if let Err(message) = ports.check_free() {
        eprintln!("jobgate demo: {message}");
        return ExitCode::from(EXIT_RUNTIME);
    }
    let (source, effective, config) = match load_config(ports) {
        Ok(loaded) => loaded,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let issuer = match DemoIssuer::generate(ports.issuer_url()) {
        Ok(issuer) => issuer,
        Err(message) => {
            eprintln!("jobgate demo: {message}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    // Editing config/demo.toml reloads it live, but only when the file on disk IS the
    // effective config. Otherwise SIGHUP must not re-read a file with other ports, so the
    // gateway is pointed at a private copy of the effective config.
    let live_reload = source.disk_path().is_some() && effective == source.text();
    let reload_copy = if live_reload {
        None
    } else {
        match EffectiveConfigFile::write(&effective) {
            Ok(file) => Some(file),
            Err(message) => {
                eprintln!("jobgate demo: {message}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        }
    };
    let reload_path = reload_copy
        .as_ref()
        .map_or_else(|| source.path().to_path_buf(), |file| file.path.clone());

    let banner = instructions(ports, &source.label(), issuer.kid(), live_reload);
    let services = match demo_services(ports, issuer) {
        Ok(services) => services,
        Err(message) => {
            eprintln!("jobgate demo: {message}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    std::thread::spawn(move || announce_when_ready(ports, &banner));

    let result = crate::server::serve_with(config, &reload_path, live_reload, services);
    drop(reload_copy);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("jobgate demo: {error}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

// ---------------------------------------------------------------------------------------
// Ports and the effective config.
// ---------------------------------------------------------------------------------------

/// The four loopback ports of the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoPorts {
    pub proxy: u16,
    pub admin: u16,
    pub issuer: u16,
    pub upstream: u16,
}

/// The ports `config/demo.toml` is written with; the flags' defaults.
pub const DEFAULT_PORTS: DemoPorts = DemoPorts {
    proxy: 8080,
    admin: 9090,
    issuer: 8090,
    upstream: 8081,
};

impl DemoPorts {
    /// Each port with the flag that sets it, for messages.
    fn named(&self) -> [(&'static str, u16); 4] {
        [
            ("--port", self.proxy),
            ("--admin-port", self.admin),
            ("--issuer-port", self.issuer),
            ("--upstream-port", self.upstream),
        ]
    }

    /// Two services cannot share a port.
    pub fn check_distinct(&self) -> Result<(), String> {
        let named = self.named();
        for (index, (flag, port)) in named.iter().enumerate() {
            if let Some((other, _)) = named[index + 1..].iter().find(|(_, p)| p == port) {
                return Err(format!(
                    "{flag} and {other} are both {port}; give each its own port"
                ));
            }
        }
        Ok(())
    }

    /// Binds each port on 127.0.0.1 and lets it go again, so that a port in use is a clear
    /// message naming the flag that moves it.
    pub fn check_free(&self) -> Result<(), String> {
        for (flag, port) in self.named() {
            if let Err(error) = TcpListener::bind(("127.0.0.1", port)) {
                let why = if error.kind() == std::io::ErrorKind::AddrInUse {
                    "is in use".to_string()
                } else {
                    format!("cannot be used ({error})")
                };
                let others = self.named().map(|(_, port)| port);
                return Err(format!(
                    "port {port} {why}; pass {flag} with a free port (e.g. {flag} {})",
                    suggest_port(port, &others)
                ));
            }
        }
        Ok(())
    }

    pub fn issuer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.issuer)
    }

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }
}

/// A nearby port that is free right now and not one of the demo's, for the "pass --port …"
/// hint.
fn suggest_port(taken: u16, demo_ports: &[u16]) -> u16 {
    (1..=100u16)
        .filter_map(|step| taken.checked_add(step))
        .filter(|port| !demo_ports.contains(port))
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .unwrap_or(taken)
}

/// `text` with every `127.0.0.1:<default port>` replaced by the port chosen for that
/// service, in one pass (so swapping two ports works), other addresses left alone. Line
/// and column numbers stay those of the file, for error messages.
pub fn effective_config(text: &str, ports: DemoPorts) -> String {
    let pairs = [
        (DEFAULT_PORTS.proxy, ports.proxy),
        (DEFAULT_PORTS.admin, ports.admin),
        (DEFAULT_PORTS.issuer, ports.issuer),
        (DEFAULT_PORTS.upstream, ports.upstream),
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    const HOST: &str = "127.0.0.1:";
    while let Some(at) = rest.find(HOST) {
        let (before, after) = rest.split_at(at + HOST.len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let (number, tail) = after.split_at(digits);
        let replaced = number
            .parse::<u16>()
            .ok()
            .and_then(|port| pairs.iter().find(|(from, _)| *from == port))
            .map(|(_, to)| to.to_string());
        out.push_str(replaced.as_deref().unwrap_or(number));
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Finds the demo config, substitutes the ports and validates the result like any config:
/// the source, the effective text and the compiled config, or the messages to print.
fn load_config(ports: DemoPorts) -> Result<(DemoConfigSource, String, Config), String> {
    let source = DemoConfigSource::find()?;
    let effective = effective_config(source.text(), ports);
    let config = config::parse(&effective, source.path()).map_err(|error| error.to_string())?;
    check_layout(&config, ports)
        .map_err(|message| format!("{}: error: {message}", source.path().display()))?;
    Ok((source, effective, config))
}

/// The printed examples assume where the gateway listens and which issuer it trusts: an
/// edited `config/demo.toml` that moved them is refused rather than half working.
pub fn check_layout(config: &Config, ports: DemoPorts) -> Result<(), String> {
    let listen = DemoPorts::address(ports.proxy).to_string();
    let admin = DemoPorts::address(ports.admin).to_string();
    let issuer = ports.issuer_url();
    let mut missing = Vec::new();
    if !config.server.listen.contains(&listen) {
        missing.push(format!("listen = \"{listen}\""));
    }
    if config.server.admin_listen != admin {
        missing.push(format!("admin_listen = \"{admin}\""));
    }
    if !config
        .issuers
        .iter()
        .any(|candidate| candidate.url == issuer)
    {
        missing.push(format!("an [[issuer]] with url = \"{issuer}\""));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the demo needs {} (written with the default ports; the flags move them)",
            missing.join(", ")
        ))
    }
}

/// Where the demo's config text came from.
enum DemoConfigSource {
    Disk { path: PathBuf, text: String },
    Embedded { path: PathBuf },
}

impl DemoConfigSource {
    /// `config/demo.toml` under the current directory, else (when there is none) the copy
    /// built into the binary. A file that exists but cannot be read is an error, not a
    /// silent switch to other rules.
    fn find() -> Result<DemoConfigSource, String> {
        let path = PathBuf::from(CONFIG_PATH);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(DemoConfigSource::Disk { path, text }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Ok(DemoConfigSource::Embedded { path })
            }
            Err(error) => Err(format!("{CONFIG_PATH}:0:0: error: cannot read it: {error}")),
        }
    }

    fn text(&self) -> &str {
        match self {
            DemoConfigSource::Disk { text, .. } => text,
            DemoConfigSource::Embedded { .. } => EMBEDDED_CONFIG,
        }
    }

    /// The name messages use; for the built-in copy, the file it was built from.
    fn path(&self) -> &Path {
        match self {
            DemoConfigSource::Disk { path, .. } | DemoConfigSource::Embedded { path } => path,
        }
    }

    fn disk_path(&self) -> Option<&Path> {
        match self {
            DemoConfigSource::Disk { path, .. } => Some(path),
            DemoConfigSource::Embedded { .. } => None,
        }
    }

    fn label(&self) -> String {
        match self {
            DemoConfigSource::Disk { path, .. } => path.display().to_string(),
            DemoConfigSource::Embedded { .. } => {
                format!("{CONFIG_PATH} (the copy built into jobgate)")
            }
        }
    }
}

/// A private copy of the effective config that SIGHUP re-reads, removed when dropped.
struct EffectiveConfigFile {
    path: PathBuf,
}

impl EffectiveConfigFile {
    fn write(text: &str) -> Result<EffectiveConfigFile, String> {
        let dir = std::env::temp_dir();
        let mut last_error = None;
        for _ in 0..8 {
            let path = dir.join(format!(
                "jobgate-demo-{}-{:016x}.toml",
                std::process::id(),
                fastrand::u64(..)
            ));
            // `create_new`: never follow or overwrite what someone else put there.
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    let file_guard = EffectiveConfigFile { path };
                    file.write_all(text.as_bytes()).map_err(|error| {
                        format!("cannot write {}: {error}", file_guard.path.display())
                    })?;
                    return Ok(file_guard);
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(format!(
            "cannot create the effective config in {}: {}",
            dir.display(),
            last_error.map_or_else(|| "unknown error".to_string(), |error| error.to_string())
        ))
    }
}

impl Drop for EffectiveConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

// ---------------------------------------------------------------------------------------
// The embedded OIDC issuer.
// ---------------------------------------------------------------------------------------

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
const GITHUB_CLAIMS: &str = "iss sub aud exp iat nbf jti actor actor_id base_ref check_run_id \
    enterprise enterprise_id environment environment_node_id event_name head_ref \
    job_workflow_ref job_workflow_sha ref ref_protected ref_type repository repository_id \
    repository_owner repository_owner_id repository_visibility run_attempt run_id run_number \
    runner_environment sha workflow workflow_ref workflow_sha";

/// What one call of the token endpoint asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRequest {
    /// GitHub's default when absent: the owner's URL, `https://github.com/<owner>`.
    pub audience: Option<String>,
    /// Every other parameter: a claim and its value, in request order. An empty value
    /// removes the claim.
    pub overrides: Vec<(String, String)>,
}

/// Parameters of the token endpoint that are not claims (`api-version` is in GitHub's own
/// `$ACTIONS_ID_TOKEN_REQUEST_URL`).
const NON_CLAIM_PARAMETERS: [&str; 2] = ["audience", "api-version"];

/// Parses a request target for the token endpoint: `/token`, `/token?a=b&…` (also with a
/// leading `&` after the `?`), or `/token&a=b…` — what a workflow script makes of
/// `"$ACTIONS_ID_TOKEN_REQUEST_URL&audience=…"` when the URL has no query. `None`: not the
/// token endpoint.
pub fn parse_token_target(target: &str) -> Option<TokenRequest> {
    let rest = target.strip_prefix("/token")?;
    let query = match rest.chars().next() {
        None => "",
        Some('?' | '&') => &rest[1..],
        Some(_) => return None,
    };
    let mut url = reqwest::Url::parse("http://demo.invalid/token").ok()?;
    url.set_query(Some(query));
    let mut request = TokenRequest::default();
    for (name, value) in url.query_pairs() {
        if name.is_empty() {
            continue;
        }
        if name == "audience" {
            request.audience = Some(value.into_owned());
        } else if !NON_CLAIM_PARAMETERS.contains(&name.as_ref()) {
            request
                .overrides
                .push((name.into_owned(), value.into_owned()));
        }
    }
    Some(request)
}

/// The job the demo issuer mints tokens for, unless a request says otherwise.
const DEFAULT_REPOSITORY: &str = "acme/app";
const DEFAULT_REPOSITORY_ID: &str = "812345678";
const DEFAULT_OWNER_ID: &str = "51234567";
const DEFAULT_REF: &str = "refs/heads/main";
const DEFAULT_ENVIRONMENT: &str = "production";
const DEFAULT_SHA: &str = "4f9c2a7e1d3b5c8a9e0f1b2c3d4e5f6a7b8c9d0e";

/// A stable, realistic-looking numeric id for a name the demo does not know (so `evil/app`
/// gets an id of its own, not acme's).
fn pseudo_id(name: &str) -> String {
    // FNV-1a: stable across runs and platforms, unlike `DefaultHasher`.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    (10_000_000 + hash % 890_000_000).to_string()
}

/// A random UUID v4, as GitHub's `jti`.
fn random_uuid() -> String {
    let bits = fastrand::u128(..) & !(0xf000_u128 << 64) | (0x4000_u128 << 64);
    let bits = bits & !(0xc000_u128 << 48) | (0x8000_u128 << 48);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The claims of a GitHub Actions job token from `issuer`, issued at `now`: a push to
/// `main` of `acme/app` deploying to `production` on a GitHub-hosted runner, changed by
/// the request. Claims GitHub derives from others follow the request's `repository`, `ref`
/// and `environment` (a token for `repository=evil/app` names owner `evil`, its own ids
/// and `sub`), unless the request sets them too.
pub fn job_claims(issuer: &str, request: &TokenRequest, now: i64) -> Map<String, Value> {
    let given = |name: &str| {
        request
            .overrides
            .iter()
            .rev()
            .find(|(claim, _)| claim == name)
            .map(|(_, value)| value.as_str())
    };
    let repository = given("repository").unwrap_or(DEFAULT_REPOSITORY);
    let owner = repository.split('/').next().unwrap_or(repository);
    let git_ref = given("ref").unwrap_or(DEFAULT_REF);
    let environment = given("environment").unwrap_or(DEFAULT_ENVIRONMENT);
    let workflow_ref = format!("{repository}/.github/workflows/deploy.yml@{git_ref}");
    let sub = if environment.is_empty() {
        format!("repo:{repository}:ref:{git_ref}")
    } else {
        format!("repo:{repository}:environment:{environment}")
    };
    let (repository_id, owner_id) = if repository == DEFAULT_REPOSITORY {
        (
            DEFAULT_REPOSITORY_ID.to_string(),
            DEFAULT_OWNER_ID.to_string(),
        )
    } else if DEFAULT_REPOSITORY.split('/').next() == Some(owner) {
        (pseudo_id(repository), DEFAULT_OWNER_ID.to_string())
    } else {
        (pseudo_id(repository), pseudo_id(owner))
    };
    let audience = request
        .audience
        .clone()
        .unwrap_or_else(|| format!("https://github.com/{owner}"));
    let ref_type = if git_ref.starts_with("refs/tags/") {
        "tag"
    } else {
        "branch"
    };
    let Value::Object(mut claims) = json!({
        "jti": random_uuid(),
        "sub": sub,
        "aud": audience,
        "ref": git_ref,
        "sha": DEFAULT_SHA,
        "repository": repository,
        "repository_id": repository_id,
        "repository_owner": owner,
        "repository_owner_id": owner_id,
        "repository_visibility": "private",
        "run_id": "15012345678",
        "run_number": "42",
        "run_attempt": "1",
        "check_run_id": "42170012345",
        "runner_environment": "github-hosted",
        "actor": "octocat",
        "actor_id": "583231",
        "workflow": "Deploy",
        "workflow_ref": workflow_ref,
        "workflow_sha": DEFAULT_SHA,
        "job_workflow_ref": workflow_ref,
        "job_workflow_sha": DEFAULT_SHA,
        "event_name": "push",
        "ref_type": ref_type,
        "ref_protected": "true",
        "head_ref": "",
        "base_ref": "",
        "environment": environment,
        "environment_node_id": "EN_kwDOMGQxhs8AAAABx2mVfA",
        "iss": issuer,
        "nbf": now,
        "iat": now,
        "exp": now + TOKEN_LIFETIME_SECS,
    }) else {
        return Map::new();
    };
    if environment.is_empty() {
        // A job without an environment has neither claim.
        claims.remove("environment");
        claims.remove("environment_node_id");
    }
    for (name, value) in &request.overrides {
        if value.is_empty() {
            claims.remove(name);
        } else if matches!(name.as_str(), "exp" | "iat" | "nbf")
            && let Ok(seconds) = value.parse::<i64>()
        {
            claims.insert(name.clone(), Value::from(seconds));
        } else {
            claims.insert(name.clone(), Value::String(value.clone()));
        }
    }
    claims
}

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

// ---------------------------------------------------------------------------------------
// The echo upstream.
// ---------------------------------------------------------------------------------------

/// Answers every request with its method, path and headers as JSON, so the demo shows
/// what jobgate forwarded: the identity headers it set, and that it stripped the token.
pub struct EchoApp;

/// What the echo upstream answers; a struct so that method and path print first.
#[derive(serde::Serialize)]
struct Echo {
    method: String,
    path: String,
    /// Lower-case name → value, or the list of values when the header was repeated.
    headers: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
}

#[async_trait]
impl ServeHttp for EchoApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let header = session.req_header();
        let method = header.method.to_string();
        let path = header.uri.path_and_query().map_or_else(
            || header.uri.path().to_string(),
            |pq| pq.as_str().to_string(),
        );
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in &header.headers {
            headers
                .entry(name.as_str().to_string())
                .or_default()
                .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
        let headers: Map<String, Value> = headers
            .into_iter()
            .map(|(name, mut values)| {
                let value = if values.len() == 1 {
                    Value::String(values.remove(0))
                } else {
                    Value::from(values)
                };
                (name, value)
            })
            .collect();
        let mut body = Vec::new();
        let mut truncated = false;
        loop {
            match session.read_request_body().await {
                Ok(Some(chunk)) => {
                    let room = MAX_ECHO_BODY.saturating_sub(body.len());
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if chunk.len() > room {
                        truncated = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    truncated = true;
                    break;
                }
            }
        }
        if truncated {
            // The rest of the body is unread: the connection cannot carry another request.
            session.set_keepalive(None);
        }
        let echo = Echo {
            method,
            path,
            headers,
            body: (!body.is_empty()).then(|| String::from_utf8_lossy(&body).into_owned()),
        };
        json_response(StatusCode::OK, &echo, JsonStyle::Pretty)
    }
}

/// How a JSON response is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonStyle {
    /// Compact, and never cached (tokens, errors).
    Private,
    /// Compact and cacheable: discovery and the JWKS. `no-store` there would make jobgate's
    /// key store refetch every second (its floor), so they carry no cache header and the
    /// issuer's `refresh` applies.
    Public,
    /// Indented, for what a person reads in a terminal.
    Pretty,
}

/// A JSON response with its length.
fn json_response<T: serde::Serialize>(
    status: StatusCode,
    value: &T,
    style: JsonStyle,
) -> Response<Vec<u8>> {
    let mut body = if style == JsonStyle::Pretty {
        serde_json::to_vec_pretty(value).unwrap_or_default()
    } else {
        serde_json::to_vec(value).unwrap_or_default()
    };
    body.push(b'\n');
    let mut response = Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CONTENT_LENGTH, body.len());
    if style != JsonStyle::Public {
        response = response.header(http::header::CACHE_CONTROL, "no-store");
    }
    response
        .body(body)
        .unwrap_or_else(|_| Response::new(Vec::new()))
}

/// The issuer and the echo upstream as Pingora services, one thread each: they run in the
/// gateway's server, so the gateway's signal handling stops them too. Their sockets listen
/// from here on, before the gateway's key store makes its first fetch.
fn demo_services(
    ports: DemoPorts,
    issuer: DemoIssuer,
) -> Result<Vec<Box<dyn ServiceWithDependents>>, String> {
    let mut issuer_service = Service::new("jobgate demo issuer".to_string(), IssuerApp { issuer });
    issuer_service.threads = Some(1);
    let mut echo_service = Service::new("jobgate demo upstream".to_string(), EchoApp);
    echo_service.threads = Some(1);
    Ok(vec![
        PreBound::bind(ports.issuer, issuer_service)?,
        PreBound::bind(ports.upstream, echo_service)?,
    ])
}

/// A listening service whose socket is bound before the server runs. The gateway's key
/// store starts fetching before the server does; a connection to a bound socket waits in
/// the listen backlog and is answered once the service runs, where an unbound port would
/// refuse it. Pingora's listener takes a socket it finds in the server's fd table under its
/// address (as after a graceful upgrade) instead of binding a new one.
struct PreBound {
    address: String,
    listener: Option<TcpListener>,
    service: Box<dyn ServiceWithDependents>,
}

impl PreBound {
    fn bind<A>(port: u16, mut service: Service<A>) -> Result<Box<dyn ServiceWithDependents>, String>
    where
        Service<A>: ServiceWithDependents + 'static,
    {
        let address = DemoPorts::address(port).to_string();
        // Tokio, which Pingora hands the socket to, needs it non-blocking.
        let listener = TcpListener::bind(&address)
            .and_then(|listener| listener.set_nonblocking(true).map(|()| listener))
            .map_err(|error| format!("cannot listen on {address}: {error}"))?;
        service.add_tcp(&address);
        Ok(Box::new(PreBound {
            address,
            listener: Some(listener),
            service: Box::new(service),
        }))
    }
}

#[async_trait]
impl ServiceWithDependents for PreBound {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        listeners_per_fd: usize,
        ready_notifier: ServiceReadyNotifier,
    ) {
        if let (Some(fds), Some(listener)) = (&fds, self.listener.take()) {
            fds.lock().add(self.address.clone(), listener.into_raw_fd());
        }
        self.service
            .start_service(fds, shutdown, listeners_per_fd, ready_notifier)
            .await;
    }

    fn name(&self) -> &str {
        self.service.name()
    }

    fn threads(&self) -> Option<usize> {
        self.service.threads()
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.service.listen_addresses()
    }
}

// ---------------------------------------------------------------------------------------
// The printed instructions.
// ---------------------------------------------------------------------------------------

/// One printed example: a request and the status it gives.
#[derive(Debug, Clone, Copy)]
struct Example {
    status: u16,
    /// The outcome word after the status: a refusal reason, or `allowed` / `public`.
    outcome: &'static str,
    what: &'static str,
    /// The token endpoint's query (`audience=…&<claim>=<value>`); `None`: no token sent.
    token_query: Option<&'static str>,
    /// Fetch the token the way a workflow step does, through `$ACTIONS_ID_TOKEN_REQUEST_URL`.
    workflow_style: bool,
    /// The gateway path requested.
    path: &'static str,
}

/// The examples, in the order printed. `tests/demo.rs` runs each printed block and checks
/// the status and reason; a unit test checks them against the config without a server.
const EXAMPLES: [Example; 7] = [
    Example {
        status: 200,
        outcome: "allowed",
        what: "acme/app's deploy job on main, environment production; the echo upstream shows the X-GitHub-* headers jobgate added",
        token_query: Some("audience=jobgate-demo"),
        workflow_style: false,
        path: "/deploy/app",
    },
    Example {
        status: 403,
        outcome: "policy_denied",
        what: "the same job in evil/app: the allow rule pins repository_owner acme and its id",
        token_query: Some("audience=jobgate-demo&repository=evil/app"),
        workflow_style: false,
        path: "/deploy/app",
    },
    Example {
        status: 403,
        outcome: "policy_denied",
        what: "acme/app on a self-hosted runner: the deny rule runner_environment = \"self-hosted\" wins",
        token_query: Some("audience=jobgate-demo&runner_environment=self-hosted"),
        workflow_style: false,
        path: "/deploy/app",
    },
    Example {
        status: 401,
        outcome: "missing_token",
        what: "no token at all",
        token_query: None,
        workflow_style: false,
        path: "/deploy/app",
    },
    Example {
        status: 401,
        outcome: "wrong_audience",
        what: "a valid token minted for another service",
        token_query: Some("audience=https://github.com/acme"),
        workflow_style: false,
        path: "/deploy/app",
    },
    Example {
        status: 200,
        outcome: "allowed",
        what: "a workflow step's own token request, unchanged, with $ACTIONS_ID_TOKEN_REQUEST_URL pointing at the demo issuer",
        token_query: Some("audience=jobgate-demo"),
        workflow_style: true,
        path: "/artifacts/build.tar",
    },
    Example {
        status: 200,
        outcome: "public",
        what: "no token needed on a public route",
        token_query: None,
        workflow_style: false,
        path: "/public/hello",
    },
];

/// The `sed` that extracts `.value` from the token endpoint's JSON, so no `jq` is needed.
const EXTRACT_VALUE: &str = r#"sed -E 's/.*"value":"([^"]+)".*/\1/'"#;

/// The shell lines of one example.
fn example_commands(example: &Example, ports: DemoPorts) -> Vec<String> {
    let issuer = ports.issuer_url();
    let gateway = format!("http://127.0.0.1:{}{}", ports.proxy, example.path);
    let mut lines = Vec::new();
    match example.token_query {
        None => lines.push(format!("curl -i {gateway}")),
        Some(query) => {
            if example.workflow_style {
                lines.push(format!(
                    "export ACTIONS_ID_TOKEN_REQUEST_URL='{issuer}/token?api-version=2.0' ACTIONS_ID_TOKEN_REQUEST_TOKEN=demo"
                ));
                lines.push(format!(
                    "TOKEN=$(curl -s -H \"Authorization: bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN\" \"$ACTIONS_ID_TOKEN_REQUEST_URL&{query}\" | {EXTRACT_VALUE})"
                ));
            } else {
                lines.push(format!(
                    "TOKEN=$(curl -s '{issuer}/token?{query}' | {EXTRACT_VALUE})"
                ));
            }
            lines.push(format!(
                "curl -i -H \"Authorization: Bearer $TOKEN\" {gateway}"
            ));
        }
    }
    lines
}

/// Everything the demo prints once it is ready. The private key is never part of it.
fn instructions(ports: DemoPorts, config_label: &str, kid: &str, live_reload: bool) -> String {
    let mut out = String::new();
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    let _ = writeln!(
        out,
        "jobgate demo: gateway, OIDC issuer and echo upstream on loopback; Ctrl-C stops all three.\n"
    );
    let _ = writeln!(
        out,
        "  gateway        {}  config: {config_label}",
        url(ports.proxy)
    );
    let _ = writeln!(
        out,
        "  admin          {}  /metrics /healthz /readyz (200: the gateway has the issuer's keys)",
        url(ports.admin)
    );
    let _ = writeln!(
        out,
        "  OIDC issuer    {}  fresh RSA-2048 key (kid {}…), GET /token?audience=…&<claim>=<value>",
        url(ports.issuer),
        kid.get(..12).unwrap_or(kid)
    );
    let _ = writeln!(
        out,
        "  echo upstream  {}  answers with the method, path and headers it received\n",
        url(ports.upstream)
    );
    let _ = writeln!(out, "Routes:");
    let _ = writeln!(
        out,
        "  /deploy     acme/app (owner and repository pinned by name and id), main, production; self-hosted runners denied"
    );
    let _ = writeln!(
        out,
        "  /artifacts  any acme repository; pull_request jobs denied"
    );
    let _ = writeln!(out, "  /public     no token\n");
    let _ = writeln!(
        out,
        "The token endpoint mints a GitHub Actions token of acme/app's deploy job; query parameters\n\
         override its claims (repository=evil/app also changes the owner, ids and sub it implies).\n\
         Paste these into another terminal; each comment says the status it gives:\n"
    );
    for (index, example) in EXAMPLES.iter().enumerate() {
        let _ = writeln!(
            out,
            "# {}. {} {}: {}",
            index + 1,
            example.status,
            example.outcome,
            example.what
        );
        for line in example_commands(example, ports) {
            let _ = writeln!(out, "{line}");
        }
        out.push('\n');
    }
    let _ = writeln!(out, "# Metrics (Prometheus text) on the admin listener:");
    let _ = writeln!(
        out,
        "curl -s {}/metrics | grep '^jobgate_requests_total'\n",
        url(ports.admin)
    );
    let _ = writeln!(
        out,
        "The audit log (one JSON line per authenticated request) follows below."
    );
    if live_reload {
        let _ = writeln!(
            out,
            "Edit {config_label} and the gateway reloads it within a second."
        );
    }
    let _ = writeln!(out, "Ctrl-C stops the demo.");
    out
}

/// Prints the instructions once the issuer answers and the gateway has its keys, so the
/// first pasted line already works; prints them anyway after [`READY_TIMEOUT`], saying so.
fn announce_when_ready(ports: DemoPorts, banner: &str) {
    let issuer = DemoPorts::address(ports.issuer);
    let admin = DemoPorts::address(ports.admin);
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut ready = false;
    while Instant::now() < deadline {
        if http_status(issuer, DISCOVERY_PATH) == Some(200)
            && http_status(admin, "/readyz") == Some(200)
        {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut stdout = std::io::stdout().lock();
    if !ready {
        let _ = writeln!(
            stdout,
            "warning: the gateway does not have the issuer's keys yet; authenticated requests get 503 until\n\
             http://127.0.0.1:{}/readyz says ready (see the log above).\n",
            ports.admin
        );
    }
    let _ = stdout.write_all(banner.as_bytes());
    let _ = stdout.flush();
}

/// The status of `GET path` on a loopback service; `None` when it does not answer (yet).
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    let head = std::str::from_utf8(&head[..read]).ok()?;
    head.strip_prefix("HTTP/1.1 ")
        .or_else(|| head.strip_prefix("HTTP/1.0 "))?
        .get(..3)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, OnceLock};

    use jsonwebtoken::Algorithm;

    use super::*;
    use crate::policy::{PolicyDecision, evaluate};
    use crate::refusal::Reason;
    use crate::verify::{check_request, parse_header, verify_with_key};

    /// RSA key generation is slow in a debug build: the tests share one issuer.
    fn issuer() -> &'static DemoIssuer {
        static ISSUER: OnceLock<DemoIssuer> = OnceLock::new();
        ISSUER.get_or_init(|| {
            DemoIssuer::generate(DEFAULT_PORTS.issuer_url()).expect("demo issuer key")
        })
    }

    fn embedded_config(ports: DemoPorts) -> Config {
        let text = effective_config(EMBEDDED_CONFIG, ports);
        config::parse(&text, Path::new(CONFIG_PATH)).unwrap_or_else(|error| panic!("{error}"))
    }

    fn request(target: &str) -> TokenRequest {
        parse_token_target(target).expect("a token endpoint target")
    }

    #[test]
    fn the_shipped_file_and_the_built_in_copy_are_the_same() {
        let on_disk =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml"))
                .expect("config/demo.toml");
        assert_eq!(on_disk, EMBEDDED_CONFIG);
    }

    #[test]
    fn demo_config_validates_without_warnings_at_default_and_moved_ports() {
        let config = embedded_config(DEFAULT_PORTS);
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        check_layout(&config, DEFAULT_PORTS).expect("layout");
        assert_eq!(config.issuers.len(), 1);
        assert_eq!(config.issuers[0].kind, config::IssuerKind::Github);
        // Effective config at other ports: validated again, and everything moved.
        let moved = DemoPorts {
            proxy: 18080,
            admin: 19090,
            issuer: 18090,
            upstream: 18081,
        };
        let config = embedded_config(moved);
        check_layout(&config, moved).expect("layout at moved ports");
        assert_eq!(config.issuers[0].url, "http://127.0.0.1:18090");
        for route in &config.routes {
            assert!(
                route
                    .upstreams
                    .iter()
                    .all(|upstream| upstream.port == 18081),
                "{}",
                route.name
            );
        }
        // The defaults no longer fit the moved config.
        assert!(check_layout(&config, DEFAULT_PORTS).is_err());
    }

    #[test]
    fn port_substitution_is_one_pass_and_exact() {
        let swapped = DemoPorts {
            proxy: 8081,
            upstream: 8080,
            ..DEFAULT_PORTS
        };
        let text = "a = \"127.0.0.1:8080\"\nb = \"http://127.0.0.1:8081/x\"\nc = \"127.0.0.1:80800\"\nd = \"10.0.0.1:8080\"\ne = \"127.0.0.1:\"";
        assert_eq!(
            effective_config(text, swapped),
            "a = \"127.0.0.1:8081\"\nb = \"http://127.0.0.1:8080/x\"\nc = \"127.0.0.1:80800\"\nd = \"10.0.0.1:8080\"\ne = \"127.0.0.1:\""
        );
        assert_eq!(effective_config(text, DEFAULT_PORTS), text);
    }

    #[test]
    fn ports_must_differ_and_be_free() {
        let same = DemoPorts {
            admin: 8080,
            ..DEFAULT_PORTS
        };
        let error = same.check_distinct().expect_err("duplicate ports");
        assert!(
            error.contains("--port and --admin-port are both 8080"),
            "{error}"
        );
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = taken.local_addr().expect("addr").port();
        let ports = DemoPorts {
            proxy: port,
            admin: 1,
            issuer: 2,
            upstream: 3,
        };
        let error = ports.check_free().expect_err("port in use");
        assert!(
            error.starts_with(&format!("port {port} is in use; pass --port ")),
            "{error}"
        );
    }

    #[test]
    fn token_targets_in_every_shape_a_script_makes() {
        assert_eq!(request("/token"), TokenRequest::default());
        let plain = request("/token?audience=jobgate-demo&repository=evil%2Fapp&ref=refs/heads/x");
        assert_eq!(plain.audience.as_deref(), Some("jobgate-demo"));
        assert_eq!(
            plain.overrides,
            [
                ("repository".to_string(), "evil/app".to_string()),
                ("ref".to_string(), "refs/heads/x".to_string())
            ]
        );
        // "$ACTIONS_ID_TOKEN_REQUEST_URL&audience=…" with and without a query in the URL.
        assert_eq!(request("/token&audience=a"), request("/token?audience=a"));
        assert_eq!(request("/token?&audience=a"), request("/token?audience=a"));
        let github = request("/token?api-version=2.0&audience=a");
        assert_eq!(github.audience.as_deref(), Some("a"));
        assert!(github.overrides.is_empty());
        assert!(parse_token_target("/tokens").is_none());
        assert!(parse_token_target("/").is_none());
    }

    #[test]
    fn default_claims_are_a_github_job_of_acme_app() {
        let claims = job_claims("http://127.0.0.1:8090", &TokenRequest::default(), 1_000);
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
        assert_eq!(text("iss").as_deref(), Some("http://127.0.0.1:8090"));
        assert_eq!(
            text("sub").as_deref(),
            Some("repo:acme/app:environment:production")
        );
        assert_eq!(text("aud").as_deref(), Some("https://github.com/acme"));
        assert_eq!(text("repository_owner").as_deref(), Some("acme"));
        assert_eq!(
            text("repository_owner_id").as_deref(),
            Some(DEFAULT_OWNER_ID)
        );
        assert_eq!(text("run_attempt").as_deref(), Some("1"));
        assert_eq!(text("runner_environment").as_deref(), Some("github-hosted"));
        assert_eq!(text("ref_type").as_deref(), Some("branch"));
        assert_eq!(claims.get("iat"), Some(&Value::from(1_000)));
        assert_eq!(claims.get("exp"), Some(&Value::from(1_300)));
        for name in claims.keys() {
            assert!(
                GITHUB_CLAIMS.split_whitespace().any(|claim| claim == name),
                "{name}"
            );
        }
        let jti = text("jti").unwrap_or_default();
        assert_eq!(jti.len(), 36);
        assert_eq!(jti.as_bytes()[14], b'4');
        assert_ne!(
            jti,
            text_of(&job_claims("i", &TokenRequest::default(), 0), "jti")
        );
    }

    fn text_of(claims: &Map<String, Value>, name: &str) -> String {
        claims
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn overrides_change_the_claims_github_derives_from_them() {
        let evil = job_claims(
            "i",
            &request("/token?repository=evil/app&ref=refs/tags/v1&environment="),
            0,
        );
        assert_eq!(text_of(&evil, "repository_owner"), "evil");
        assert_ne!(text_of(&evil, "repository_owner_id"), DEFAULT_OWNER_ID);
        assert_ne!(text_of(&evil, "repository_id"), DEFAULT_REPOSITORY_ID);
        assert_eq!(text_of(&evil, "sub"), "repo:evil/app:ref:refs/tags/v1");
        assert_eq!(text_of(&evil, "ref_type"), "tag");
        assert_eq!(
            text_of(&evil, "job_workflow_ref"),
            "evil/app/.github/workflows/deploy.yml@refs/tags/v1"
        );
        assert!(!evil.contains_key("environment"));
        // Explicit values win over derived ones; numeric dates stay numbers.
        let explicit = job_claims(
            "i",
            &request("/token?repository=evil/app&repository_owner=acme&exp=5&actor="),
            0,
        );
        assert_eq!(text_of(&explicit, "repository_owner"), "acme");
        assert_eq!(explicit.get("exp"), Some(&Value::from(5)));
        assert!(!explicit.contains_key("actor"));
    }

    #[test]
    fn the_issuer_publishes_only_public_material() {
        let issuer = issuer();
        let jwks = issuer.jwks().to_string();
        for private in ["\"d\"", "\"p\"", "\"q\"", "\"dp\"", "\"dq\"", "\"qi\""] {
            assert!(!jwks.contains(private), "{jwks}");
        }
        assert!(!format!("{issuer:?}").contains("key"));
        let discovery = issuer.discovery();
        assert_eq!(discovery["issuer"], "http://127.0.0.1:8090");
        assert_eq!(
            discovery["jwks_uri"],
            "http://127.0.0.1:8090/.well-known/jwks"
        );
        assert_eq!(issuer.kid().len(), 43);
    }

    /// Every printed example, run through the gateway's own verification and rules against
    /// the demo config, gives the status it says. (`tests/demo.rs` does it over HTTP.)
    #[test]
    fn examples_give_the_printed_outcome() {
        let issuer = issuer();
        let config = embedded_config(DEFAULT_PORTS);
        let keys = crate::jwks::parse_jwks(
            issuer.jwks().to_string().as_bytes(),
            "demo",
            &[Algorithm::RS256],
        )
        .expect("the gateway accepts the demo JWKS");
        let issuer_config = Arc::clone(&config.issuers[0]);
        let now = crate::clock::unix_now();
        for example in EXAMPLES {
            let route = config
                .routes
                .iter()
                .filter(|route| example.path.starts_with(&route.path_prefix))
                .max_by_key(|route| route.path_prefix.len())
                .expect("a route for every example");
            let outcome = match (&route.auth, example.token_query) {
                (None, _) => "public".to_string(),
                (Some(_), None) => Reason::MissingToken.as_str().to_string(),
                (Some(auth), Some(query)) => {
                    let target = if example.workflow_style {
                        format!("/token?api-version=2.0&{query}")
                    } else {
                        format!("/token?{query}")
                    };
                    let claims = job_claims(issuer.url(), &request(&target), now);
                    let token = issuer.mint(&claims).expect("mint");
                    let (header, parts) =
                        parse_header(&token, &issuer_config.algorithms).expect("header");
                    let crate::jwks::KeyChoice::Key(key) =
                        keys.select(header.kid.as_deref(), header.alg)
                    else {
                        panic!("no key for the demo token's kid");
                    };
                    let verified = verify_with_key(&issuer_config, 1, key, &header, &parts)
                        .expect("the demo token verifies");
                    match check_request(
                        &verified,
                        &issuer_config,
                        &auth.audience,
                        u64::try_from(now).unwrap_or(0),
                    ) {
                        Err(reason) => reason.as_str().to_string(),
                        Ok(()) => match evaluate(auth, &verified.claims) {
                            PolicyDecision::Allowed { .. } => "allowed".to_string(),
                            _ => Reason::PolicyDenied.as_str().to_string(),
                        },
                    }
                }
            };
            assert_eq!(outcome, example.outcome, "{}", example.what);
        }
    }

    #[test]
    fn instructions_name_the_ports_and_no_key() {
        let ports = DemoPorts {
            proxy: 1111,
            admin: 2222,
            issuer: 3333,
            upstream: 4444,
        };
        let text = instructions(ports, CONFIG_PATH, issuer().kid(), true);
        assert!(text.contains("TOKEN=$(curl -s 'http://127.0.0.1:3333/token?audience=jobgate-demo' | sed -E 's/.*\"value\":\"([^\"]+)\".*/\\1/')"), "{text}");
        assert!(text.contains(
            "curl -i -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:1111/deploy/app"
        ));
        assert!(text.contains("curl -s http://127.0.0.1:2222/metrics"));
        assert!(text.contains("http://127.0.0.1:4444"));
        assert!(!text.contains("8080") && !text.contains("8090"));
        assert!(!text.contains("PRIVATE"));
        assert_eq!(text.matches("\n# ").count(), EXAMPLES.len() + 1);
    }
}
