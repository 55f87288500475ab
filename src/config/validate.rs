//! Validation and compilation of a config file (SPEC §2): TOML text → `config::file` structs
//! → checked → `config::compiled` types, with every problem reported at its line and column.
//!
//! Validation never stops at the first problem: each section is checked on its own and every
//! error is collected by [`Diagnostics`], so an operator fixes a config in one pass. Each
//! message says what is wrong and what to write instead. Non-fatal findings (the GitHub
//! warnings of SPEC §2, a route that admits nobody, …) go to `Config::warnings`.
//!
//! Nothing here touches the network; the file system is only consulted to warn about TLS
//! and CA files that do not exist.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Method};
use jsonwebtoken::Algorithm;
use toml::Spanned;

use super::duration::parse_duration;
use super::file::{
    AuditSection, ConfigFile, IssuerSection, RevocationSection, RouteSection, RuleTable,
    ServerSection,
};
use super::{
    AuditOutput, Config, ConfigError, Diagnostic, HostMatch, IssuerConfig, IssuerKind, Mode,
    PUBLIC_GITHUB_ISSUER, RouteAuth, RouteConfig, ServerConfig, TlsFiles, UpstreamUrl,
};
use crate::policy::{CompiledRule, Condition, GITHUB_CLAIMS, Matcher, RuleKind, RuleRef};

/// Identity headers of a GitHub-kind issuer without `[issuer.headers]` (SPEC §4), in order.
pub const DEFAULT_GITHUB_HEADERS: &[(&str, &str)] = &[
    ("x-github-repository", "repository"),
    ("x-github-repository-id", "repository_id"),
    ("x-github-repository-owner", "repository_owner"),
    ("x-github-ref", "ref"),
    ("x-github-sha", "sha"),
    ("x-github-actor", "actor"),
    ("x-github-event-name", "event_name"),
    ("x-github-environment", "environment"),
    ("x-github-workflow-ref", "workflow_ref"),
    ("x-github-job-workflow-ref", "job_workflow_ref"),
    ("x-github-run-id", "run_id"),
    ("x-github-run-attempt", "run_attempt"),
    ("x-github-check-run-id", "check_run_id"),
    ("x-github-job-url", JOB_URL),
];

/// The derived `job_url` value (SPEC §4): a header table may name it, a rule may not.
pub const JOB_URL: &str = "job_url";

/// Enterprise issuers live under the public one: `…/<enterprise slug>`.
const GITHUB_ENTERPRISE_ISSUER_PREFIX: &str = "https://token.actions.githubusercontent.com/";

const ALLOWED_ALGORITHMS: &str = "RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA";

/// Headers a `[issuer.headers]` table must not set: they carry the request itself, the
/// token, or connection framing, and overwriting them would break or bypass the proxy.
const FORBIDDEN_IDENTITY_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
];

/// Claims that identify the repository or its owner; used to tell a rule that relies on
/// `sub` alone.
const IDENTIFYING_CLAIMS: &[&str] = &[
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "enterprise",
    "enterprise_id",
    "job_workflow_ref",
];

/// Parses, validates and compiles config text. `path` names the file in messages and anchors
/// relative paths. On failure, every error found is returned, sorted by position.
pub fn compile(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let file: ConfigFile = toml::from_str(text).map_err(|error| ConfigError {
        file: path.to_path_buf(),
        errors: vec![toml_error(text, &error)],
    })?;
    let base = path.parent().unwrap_or(Path::new(""));
    let mut diagnostics = Diagnostics::new(text);
    let server = compile_server(&file.server, base, &mut diagnostics);
    let audit = compile_audit(&file.audit, base, &mut diagnostics);
    let issuers = compile_issuers(&file.issuer, &mut diagnostics);
    let routes = compile_routes(&file.route, &file.issuer, &issuers, base, &mut diagnostics);
    let revocation_file = compile_revocation(file.revocation.as_ref(), base, &mut diagnostics);
    let warnings = diagnostics.finish().map_err(|errors| ConfigError {
        file: path.to_path_buf(),
        errors,
    })?;
    Ok(Config {
        source: path.to_path_buf(),
        sha256: sha256_hex(text),
        server,
        audit,
        issuers: issuers.into_iter().map(Arc::new).collect(),
        routes,
        revocation_file,
        warnings,
    })
}

/// A TOML syntax or schema error (unknown key, wrong type, duplicate key) as one diagnostic,
/// keeping toml's message and adding the fix where toml's message lacks one.
fn toml_error(text: &str, error: &toml::de::Error) -> Diagnostic {
    let (line, column) = error
        .span()
        .map_or((1, 1), |span| Diagnostics::new(text).position(span.start));
    let mut message = error.message().trim().replace('\n', "; ");
    if message.starts_with("unknown field") {
        message
            .push_str("; this key is unknown here: check its spelling and section, or remove it");
    } else if message.starts_with("missing field") {
        message.push_str("; add it to this table");
    }
    Diagnostic {
        line,
        column,
        message,
    }
}

fn sha256_hex(text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Collects errors and warnings and turns byte spans into 1-based line and column (in
/// characters) numbers.
struct Diagnostics<'a> {
    text: &'a str,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl<'a> Diagnostics<'a> {
    fn new(text: &'a str) -> Diagnostics<'a> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        Diagnostics {
            text,
            line_starts,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let line = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .max(1);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset.saturating_sub(start), |prefix| {
                prefix.chars().count()
            });
        (line, column + 1)
    }

    fn line(&self, span: &Range<usize>) -> usize {
        self.position(span.start).0
    }

    fn diagnostic(&self, span: &Range<usize>, message: String) -> Diagnostic {
        let (line, column) = self.position(span.start);
        Diagnostic {
            line,
            column,
            message,
        }
    }

    fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let diagnostic = self.diagnostic(span, message.into());
        self.errors.push(diagnostic);
    }

    fn warn(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let diagnostic = self.diagnostic(span, message.into());
        self.warnings.push(diagnostic);
    }

    /// The warnings when there was no error, else the errors; either sorted by position.
    fn finish(self) -> Result<Vec<Diagnostic>, Vec<Diagnostic>> {
        let by_position = |list: &mut Vec<Diagnostic>| list.sort_by_key(|d| (d.line, d.column));
        let (mut errors, mut warnings) = (self.errors, self.warnings);
        if errors.is_empty() {
            by_position(&mut warnings);
            Ok(warnings)
        } else {
            by_position(&mut errors);
            Err(errors)
        }
    }
}

/// A duration key, or its default when absent (or invalid: the error is recorded).
fn duration(
    d: &mut Diagnostics,
    key: &str,
    value: Option<&Spanned<String>>,
    default: Duration,
) -> Duration {
    let Some(value) = value else {
        return default;
    };
    parse_duration(value.get_ref()).unwrap_or_else(|message| {
        d.error(&value.span(), format!("`{key}`: {message}"));
        default
    })
}

/// A duration that must not be zero (a zero interval would spin or refuse everything).
fn positive_duration(
    d: &mut Diagnostics,
    key: &str,
    value: Option<&Spanned<String>>,
    default: Duration,
) -> Duration {
    let parsed = duration(d, key, value, default);
    if let Some(value) = value.filter(|_| parsed.is_zero()) {
        d.error(
            &value.span(),
            format!("`{key}` must be longer than zero, e.g. \"30s\""),
        );
        return default;
    }
    parsed
}

/// A path from the config, resolved against the config file's directory.
fn config_path(d: &mut Diagnostics, key: &str, value: &Spanned<String>, base: &Path) -> PathBuf {
    if value.get_ref().trim().is_empty() {
        d.error(&value.span(), format!("`{key}` is empty; give a file path"));
    }
    base.join(value.get_ref())
}

/// Warns when a file `serve` will need at start-up is missing: `check` should not pass a
/// config that cannot start, but the file may legitimately be created later (by a secret
/// mount, say), so this is not an error.
fn warn_if_missing(d: &mut Diagnostics, key: &str, value: &Spanned<String>, path: &Path) {
    if !value.get_ref().trim().is_empty() && !path.exists() {
        d.warn(
            &value.span(),
            format!(
                "`{key}` file {} does not exist; serve will fail to start until it does",
                path.display()
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------
// [server], [audit], [revocation]

fn compile_server(section: &ServerSection, base: &Path, d: &mut Diagnostics) -> ServerConfig {
    let listen = compile_listen(section, d);
    let admin_listen = compile_admin_listen(section, &listen, d);
    ServerConfig {
        listen: listen
            .into_iter()
            .map(|(_, addr)| addr.to_string())
            .collect(),
        tls: compile_tls(section, base, d),
        admin_listen,
        threads: compile_threads(section, d),
        max_token_bytes: positive_count(d, "max_token_bytes", section.max_token_bytes.as_ref())
            .unwrap_or(16_384),
        grace_period: duration(
            d,
            "grace_period",
            section.grace_period.as_ref(),
            Duration::from_secs(10),
        ),
        token_cache_entries: positive_count(
            d,
            "token_cache_entries",
            section.token_cache_entries.as_ref(),
        )
        .unwrap_or(100_000),
    }
}

fn socket_addr(d: &mut Diagnostics, key: &str, value: &Spanned<String>) -> Option<SocketAddr> {
    let parsed = value.get_ref().parse::<SocketAddr>();
    if parsed.is_err() {
        d.error(
            &value.span(),
            format!(
                "`{key}` {:?} is not an IP address and port; write e.g. \"0.0.0.0:8080\" or \
                 \"[::]:8080\" (host names are not resolved)",
                value.get_ref()
            ),
        );
    }
    parsed.ok()
}

fn compile_listen(section: &ServerSection, d: &mut Diagnostics) -> Vec<(Range<usize>, SocketAddr)> {
    let Some(listen) = &section.listen else {
        return vec![(0..0, SocketAddr::from(([0, 0, 0, 0], 8080)))];
    };
    let entries = listen.get_ref().to_vec(listen.span());
    if entries.is_empty() {
        d.error(
            &listen.span(),
            "`listen` is an empty list; give at least one address, e.g. \"0.0.0.0:8080\"",
        );
    }
    let mut seen: Vec<(Range<usize>, SocketAddr)> = Vec::new();
    for entry in &entries {
        let Some(addr) = socket_addr(d, "listen", entry) else {
            continue;
        };
        if seen.iter().any(|(_, other)| *other == addr) {
            d.error(
                &entry.span(),
                format!("`listen` names {addr} twice; remove the duplicate"),
            );
            continue;
        }
        seen.push((entry.span(), addr));
    }
    seen
}

fn compile_admin_listen(
    section: &ServerSection,
    listen: &[(Range<usize>, SocketAddr)],
    d: &mut Diagnostics,
) -> String {
    let Some(value) = &section.admin_listen else {
        return "127.0.0.1:9090".to_owned();
    };
    let Some(addr) = socket_addr(d, "admin_listen", value) else {
        return value.get_ref().clone();
    };
    if listen.iter().any(|(_, other)| *other == addr) {
        d.error(
            &value.span(),
            format!(
                "`admin_listen` {addr} is also a `listen` address; give the admin listener \
                its own port"
            ),
        );
    }
    addr.to_string()
}

fn compile_tls(section: &ServerSection, base: &Path, d: &mut Diagnostics) -> Option<TlsFiles> {
    match (&section.tls_cert, &section.tls_key) {
        (None, None) => None,
        (Some(cert), None) => {
            d.error(
                &cert.span(),
                "`tls_cert` is set but `tls_key` is not; set both to terminate TLS, or neither",
            );
            None
        }
        (None, Some(key)) => {
            d.error(
                &key.span(),
                "`tls_key` is set but `tls_cert` is not; set both to terminate TLS, or neither",
            );
            None
        }
        (Some(cert), Some(key)) => {
            let cert_path = config_path(d, "tls_cert", cert, base);
            let key_path = config_path(d, "tls_key", key, base);
            warn_if_missing(d, "tls_cert", cert, &cert_path);
            warn_if_missing(d, "tls_key", key, &key_path);
            Some(TlsFiles {
                cert: cert_path,
                key: key_path,
            })
        }
    }
}

fn compile_threads(section: &ServerSection, d: &mut Diagnostics) -> usize {
    let cpus = || std::thread::available_parallelism().map_or(1, |n| n.get());
    let Some(threads) = &section.threads else {
        return cpus();
    };
    match usize::try_from(*threads.get_ref()) {
        Ok(0) => cpus(),
        Ok(count) => count,
        Err(_) => {
            d.error(
                &threads.span(),
                "`threads` cannot be negative; use 0 for one worker thread per CPU",
            );
            cpus()
        }
    }
}

/// A count that must be at least 1; `None` when absent or invalid (the error is recorded).
fn positive_count(d: &mut Diagnostics, key: &str, value: Option<&Spanned<i64>>) -> Option<usize> {
    let value = value?;
    match usize::try_from(*value.get_ref()) {
        Ok(count) if count > 0 => Some(count),
        _ => {
            d.error(
                &value.span(),
                format!("`{key}` must be a positive number, got {}", value.get_ref()),
            );
            None
        }
    }
}

fn compile_audit(section: &AuditSection, base: &Path, d: &mut Diagnostics) -> AuditOutput {
    let Some(output) = &section.output else {
        return AuditOutput::Stdout;
    };
    match output.get_ref().as_str() {
        "stdout" => AuditOutput::Stdout,
        "off" => AuditOutput::Off,
        "stderr" => {
            d.error(
                &output.span(),
                "audit `output` \"stderr\" is not supported (stderr carries the service log); \
                 use \"stdout\", \"off\" or a file path",
            );
            AuditOutput::Stdout
        }
        _ => AuditOutput::File(config_path(d, "audit output", output, base)),
    }
}

fn compile_revocation(
    section: Option<&RevocationSection>,
    base: &Path,
    d: &mut Diagnostics,
) -> Option<PathBuf> {
    let file = section?.file.as_ref()?;
    Some(config_path(d, "revocation file", file, base))
}

// ---------------------------------------------------------------------------------------
// [[issuer]]

fn compile_issuers(sections: &[IssuerSection], d: &mut Diagnostics) -> Vec<IssuerConfig> {
    check_unique_names(
        sections.iter().map(|section| &section.name),
        "issuer",
        "github",
        d,
    );
    sections
        .iter()
        .map(|section| compile_issuer(section, d))
        .collect()
}

fn compile_issuer(section: &IssuerSection, d: &mut Diagnostics) -> IssuerConfig {
    let url = issuer_url(d, "url", &section.url);
    let jwks_url = section
        .jwks_url
        .as_ref()
        .map(|jwks_url| issuer_url(d, "jwks_url", jwks_url));
    let kind = compile_kind(section, d);
    let refresh = positive_duration(
        d,
        "refresh",
        section.refresh.as_ref(),
        Duration::from_secs(600),
    );
    let max_stale = positive_duration(
        d,
        "max_stale",
        section.max_stale.as_ref(),
        Duration::from_secs(86_400),
    );
    if let Some(value) = section.max_stale.as_ref().filter(|_| max_stale < refresh) {
        d.warn(
            &value.span(),
            "`max_stale` is shorter than `refresh`: keys will be dropped before the next \
             scheduled refresh, causing 503s; make max_stale several times refresh",
        );
    }
    IssuerConfig {
        name: section.name.get_ref().clone(),
        url,
        jwks_url,
        kind,
        server_url: compile_server_url(section, kind, d),
        algorithms: compile_algorithms(section, d),
        leeway: duration(
            d,
            "leeway",
            section.leeway.as_ref(),
            Duration::from_secs(60),
        ),
        refresh,
        min_refetch_interval: duration(
            d,
            "min_refetch_interval",
            section.min_refetch_interval.as_ref(),
            Duration::from_secs(30),
        ),
        max_stale,
        max_token_age: section
            .max_token_age
            .as_ref()
            .map(|age| positive_duration(d, "max_token_age", Some(age), Duration::ZERO)),
        headers: compile_headers(section, kind, d),
    }
}

/// True when tokens (or keys) from this host may come over plain http: loopback only.
fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `url` / `jwks_url`: https, or http on a loopback host (SPEC §2). Returned as written,
/// because `iss` must equal it exactly.
fn issuer_url(d: &mut Diagnostics, key: &str, value: &Spanned<String>) -> String {
    let text = value.get_ref();
    if let Some(problem) = issuer_url_problem(text) {
        d.error(&value.span(), format!("issuer `{key}` {text:?} {problem}"));
    }
    text.clone()
}

fn issuer_url_problem(text: &str) -> Option<String> {
    const EXAMPLE: &str = "write e.g. \"https://issuer.example\"";
    if text.contains(['#', '?']) {
        return Some(format!("has a query or fragment; remove it ({EXAMPLE})"));
    }
    let Ok(uri) = text.parse::<http::Uri>() else {
        return Some(format!("is not a valid URL; {EXAMPLE}"));
    };
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host().filter(|h| !h.is_empty()))
    else {
        return Some(format!("is not an absolute URL; {EXAMPLE}"));
    };
    let https = scheme.eq_ignore_ascii_case("https");
    let http = scheme.eq_ignore_ascii_case("http");
    if https || (http && is_loopback_host(host)) {
        None
    } else if http {
        Some(format!(
            "uses http:// off loopback ({host}); keys and tokens must come over https:// \
             (http is allowed only on 127.0.0.0/8, ::1 and localhost)"
        ))
    } else {
        Some(format!("has scheme {scheme:?}; use https://"))
    }
}

fn compile_kind(section: &IssuerSection, d: &mut Diagnostics) -> IssuerKind {
    let url = section.url.get_ref();
    let default = if url == PUBLIC_GITHUB_ISSUER || url.starts_with(GITHUB_ENTERPRISE_ISSUER_PREFIX)
    {
        IssuerKind::Github
    } else {
        IssuerKind::Generic
    };
    let Some(kind) = &section.kind else {
        return default;
    };
    match kind.get_ref().as_str() {
        "github" => IssuerKind::Github,
        "generic" => IssuerKind::Generic,
        other => {
            d.error(
                &kind.span(),
                format!("issuer `kind` {other:?} is unknown; use \"github\" or \"generic\""),
            );
            default
        }
    }
}

fn compile_server_url(section: &IssuerSection, kind: IssuerKind, d: &mut Diagnostics) -> String {
    let Some(value) = &section.server_url else {
        return "https://github.com".to_owned();
    };
    if kind == IssuerKind::Generic {
        d.warn(
            &value.span(),
            "`server_url` only matters for GitHub-kind issuers (it builds job URLs); it is \
             ignored here",
        );
    }
    let text = value.get_ref();
    let valid = text.parse::<http::Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https"))
            && uri.host().is_some_and(|h| !h.is_empty())
    });
    if !valid || text.contains(['?', '#']) {
        d.error(
            &value.span(),
            format!(
                "`server_url` {text:?} is not an http(s) base URL; write e.g. \
                \"https://github.example.com\""
            ),
        );
    }
    text.trim_end_matches('/').to_owned()
}

fn compile_algorithms(section: &IssuerSection, d: &mut Diagnostics) -> Vec<Algorithm> {
    let Some(list) = &section.algorithms else {
        return vec![Algorithm::RS256];
    };
    if list.get_ref().is_empty() {
        d.error(
            &list.span(),
            format!(
                "`algorithms` is empty, so no token could verify; list at least one of \
                {ALLOWED_ALGORITHMS}"
            ),
        );
    }
    let mut algorithms = Vec::new();
    for name in list.get_ref() {
        match algorithm(name.get_ref()) {
            Ok(algorithm) if !algorithms.contains(&algorithm) => algorithms.push(algorithm),
            Ok(_) => {}
            Err(message) => d.error(&name.span(), message),
        }
    }
    algorithms
}

/// An asymmetric signature algorithm by its JOSE name; `none` and the HMAC family are refused
/// because an issuer's keys come from a public JWKS.
fn algorithm(name: &str) -> Result<Algorithm, String> {
    match name {
        "RS256" => Ok(Algorithm::RS256),
        "RS384" => Ok(Algorithm::RS384),
        "RS512" => Ok(Algorithm::RS512),
        "PS256" => Ok(Algorithm::PS256),
        "PS384" => Ok(Algorithm::PS384),
        "PS512" => Ok(Algorithm::PS512),
        "ES256" => Ok(Algorithm::ES256),
        "ES384" => Ok(Algorithm::ES384),
        "EdDSA" => Ok(Algorithm::EdDSA),
        _ if name.eq_ignore_ascii_case("none") => Err(format!(
            "algorithm {name:?} would accept unsigned tokens; remove it (allowed: \
             {ALLOWED_ALGORITHMS})"
        )),
        _ if name.to_ascii_uppercase().starts_with("HS") => Err(format!(
            "algorithm {name:?} is a shared-secret (HMAC) algorithm and cannot be verified \
             with an issuer's public keys; remove it (allowed: {ALLOWED_ALGORITHMS})"
        )),
        _ => Err(format!(
            "algorithm {name:?} is unknown; use one of {ALLOWED_ALGORITHMS} (names are \
             case-sensitive)"
        )),
    }
}

fn compile_headers(
    section: &IssuerSection,
    kind: IssuerKind,
    d: &mut Diagnostics,
) -> Vec<(HeaderName, String)> {
    let Some(table) = &section.headers else {
        return match kind {
            IssuerKind::Github => DEFAULT_GITHUB_HEADERS
                .iter()
                .map(|(header, claim)| (HeaderName::from_static(header), (*claim).to_owned()))
                .collect(),
            IssuerKind::Generic => Vec::new(),
        };
    };
    let mut entries: Vec<_> = table.get_ref().iter().collect();
    entries.sort_by_key(|(header, _)| header.span().start);
    let mut headers: Vec<(HeaderName, String)> = Vec::new();
    for (header, claim) in entries {
        let Some(name) = identity_header_name(d, header) else {
            continue;
        };
        if headers.iter().any(|(existing, _)| *existing == name) {
            d.error(
                &header.span(),
                format!(
                    "identity header {name} is listed twice (names are case-insensitive); keep one"
                ),
            );
            continue;
        }
        compile_header_claim(d, claim, kind);
        headers.push((name, claim.get_ref().clone()));
    }
    headers
}

fn identity_header_name(d: &mut Diagnostics, header: &Spanned<String>) -> Option<HeaderName> {
    let Ok(name) = HeaderName::from_bytes(header.get_ref().as_bytes()) else {
        d.error(
            &header.span(),
            format!(
                "{:?} is not a valid HTTP header name; use letters, digits and '-', e.g. \
                 \"X-GitHub-Repository\"",
                header.get_ref()
            ),
        );
        return None;
    };
    let reserved = name.as_str().starts_with("x-jobgate-");
    if reserved || FORBIDDEN_IDENTITY_HEADERS.contains(&name.as_str()) {
        let why = if reserved {
            "X-Jobgate-* headers are set by jobgate itself"
        } else {
            "it carries the request itself"
        };
        d.error(
            &header.span(),
            format!(
                "identity header {name} cannot be set from a claim ({why}); choose another \
                name, e.g. \"X-GitHub-…\""
            ),
        );
        return None;
    }
    Some(name)
}

fn compile_header_claim(d: &mut Diagnostics, claim: &Spanned<String>, kind: IssuerKind) {
    let name = claim.get_ref();
    if name.is_empty() {
        d.error(
            &claim.span(),
            "identity header names an empty claim; give a claim name, e.g. \"repository\"",
        );
    } else if kind == IssuerKind::Github
        && name != JOB_URL
        && !GITHUB_CLAIMS.contains(&name.as_str())
    {
        d.warn(
            &claim.span(),
            format!(
                "claim `{name}` is not issued by GitHub{}, so this header is never set",
                did_you_mean(name)
            ),
        );
    }
}

// ---------------------------------------------------------------------------------------
// [[route]]

fn compile_routes(
    sections: &[RouteSection],
    issuer_sections: &[IssuerSection],
    issuers: &[IssuerConfig],
    base: &Path,
    d: &mut Diagnostics,
) -> Vec<RouteConfig> {
    if sections.is_empty() {
        d.error(
            &(0..0),
            "the config has no [[route]]; add at least one, see SPEC §2",
        );
    }
    check_route_names(sections, d);
    let issuer_names: Vec<&str> = issuer_sections
        .iter()
        .map(|i| i.name.get_ref().as_str())
        .collect();
    let routes: Vec<RouteConfig> = sections
        .iter()
        .map(|section| compile_route(section, &issuer_names, issuers, base, d))
        .collect();
    warn_shadowed_routes(sections, &routes, d);
    routes
}

fn check_route_names(sections: &[RouteSection], d: &mut Diagnostics) {
    check_unique_names(
        sections.iter().map(|section| &section.name),
        "route",
        "deploy",
        d,
    );
}

/// `[[issuer]]` and `[[route]]` names: present and unique, each duplicate pointing at the
/// line of the first use.
fn check_unique_names<'a>(
    names: impl Iterator<Item = &'a Spanned<String>>,
    table: &str,
    example: &str,
    d: &mut Diagnostics,
) {
    let mut first_line: HashMap<&str, usize> = HashMap::new();
    for name in names {
        if name.get_ref().is_empty() {
            d.error(
                &name.span(),
                format!("{table} `name` is empty; give it a short unique name, e.g. \"{example}\""),
            );
        } else if let Some(line) = first_line.get(name.get_ref().as_str()) {
            d.error(
                &name.span(),
                format!(
                    "duplicate {table} name \"{}\" (first used on line {line}); give each \
                     [[{table}]] a unique name",
                    name.get_ref()
                ),
            );
        } else {
            first_line.insert(name.get_ref(), d.line(&name.span()));
        }
    }
}

fn compile_route(
    section: &RouteSection,
    issuer_names: &[&str],
    issuers: &[IssuerConfig],
    base: &Path,
    d: &mut Diagnostics,
) -> RouteConfig {
    let upstreams = compile_upstreams(section, d);
    let upstream_ca = section.upstream_ca.as_ref().map(|ca| {
        let path = config_path(d, "upstream_ca", ca, base);
        warn_if_missing(d, "upstream_ca", ca, &path);
        if !upstreams.is_empty() && !upstreams.iter().any(|upstream| upstream.tls) {
            d.warn(
                &ca.span(),
                "`upstream_ca` is ignored: this route has no https:// upstream",
            );
        }
        path
    });
    let auth_enabled = section.auth.as_ref().is_none_or(|auth| *auth.get_ref());
    let auth = if auth_enabled {
        compile_route_auth(section, issuer_names, issuers, d)
    } else {
        check_public_route(section, d);
        None
    };
    RouteConfig {
        name: section.name.get_ref().clone(),
        host: compile_host(section, d),
        path_prefix: compile_path_prefix(section, d),
        methods: compile_methods(section, d),
        upstreams,
        upstream_ca,
        timeout: positive_duration(
            d,
            "timeout",
            section.timeout.as_ref(),
            Duration::from_secs(30),
        ),
        auth,
    }
}

fn compile_host(section: &RouteSection, d: &mut Diagnostics) -> HostMatch {
    let Some(host) = &section.host else {
        return HostMatch::Any;
    };
    parse_host(host.get_ref()).unwrap_or_else(|message| {
        d.error(
            &host.span(),
            format!("route `host` {:?} {message}", host.get_ref()),
        );
        HostMatch::Any
    })
}

/// `host`: an exact host name or `*.suffix`, stored lower-case.
fn parse_host(text: &str) -> Result<HostMatch, String> {
    let lower = text.to_ascii_lowercase();
    if lower == "*" {
        return Err("matches every host; remove `host` instead".to_owned());
    }
    let (wildcard, name) = match lower.strip_prefix("*.") {
        Some(suffix) => (true, suffix),
        None => (false, lower.as_str()),
    };
    if name.contains('*') {
        return Err(
            "has a wildcard in the wrong place; only a leading \"*.\" is supported, e.g. \
            \"*.internal.example\""
                .to_owned(),
        );
    }
    let is_ipv6 = !wildcard && name.starts_with('[') && name.ends_with(']');
    if !is_ipv6 && name.contains(':') {
        return Err(
            "has a port; ports are ignored when matching, so write the host alone".to_owned(),
        );
    }
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    let valid = if is_ipv6 {
        name[1..name.len() - 1]
            .parse::<std::net::Ipv6Addr>()
            .is_ok()
    } else {
        !name.is_empty() && !name.starts_with('.') && name.chars().all(valid_char)
    };
    if !valid {
        return Err(
            "is not a host name; write e.g. \"deploy.internal.example\" or \"*.internal.example\""
                .to_owned(),
        );
    }
    Ok(if wildcard {
        HostMatch::Suffix(format!(".{name}"))
    } else {
        HostMatch::Exact(name.to_owned())
    })
}

fn compile_path_prefix(section: &RouteSection, d: &mut Diagnostics) -> String {
    let Some(prefix) = &section.path_prefix else {
        return "/".to_owned();
    };
    let text = prefix.get_ref();
    let lower = text.to_ascii_lowercase();
    let problem = if !text.starts_with('/') {
        Some(format!(
            "must start with '/', e.g. \"/{}\"",
            text.trim_start_matches('/')
        ))
    } else if text.contains(['?', '#']) || text.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        Some("must be a plain path (no query, fragment, spaces or control characters)".to_owned())
    } else if text
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        Some(
            "has a '.' or '..' segment; paths are normalised before routing, so it would never \
            match"
                .to_owned(),
        )
    } else if ["%2f", "%5c", "%2e"]
        .iter()
        .any(|escape| lower.contains(escape))
    {
        Some(
            "has an encoded '/', '\\' or '.'; such paths are refused before routing, so it \
            would never match"
                .to_owned(),
        )
    } else {
        None
    };
    if let Some(problem) = problem {
        d.error(&prefix.span(), format!("`path_prefix` {text:?} {problem}"));
    }
    text.clone()
}

fn compile_methods(section: &RouteSection, d: &mut Diagnostics) -> Option<Vec<Method>> {
    let list = section.methods.as_ref()?;
    if list.get_ref().is_empty() {
        d.error(
            &list.span(),
            "`methods` is empty, so the route matches no request; list \
            methods or remove `methods` to allow all",
        );
    }
    let mut methods: Vec<Method> = Vec::new();
    for name in list.get_ref() {
        let upper = name.get_ref().to_ascii_uppercase();
        match Method::from_bytes(upper.as_bytes()) {
            Ok(method) if !upper.is_empty() => {
                if !methods.contains(&method) {
                    methods.push(method);
                }
            }
            _ => d.error(
                &name.span(),
                format!(
                    "{:?} is not an HTTP method; write e.g. \"GET\" or \"POST\"",
                    name.get_ref()
                ),
            ),
        }
    }
    Some(methods)
}

fn compile_upstreams(section: &RouteSection, d: &mut Diagnostics) -> Vec<UpstreamUrl> {
    let Some(upstream) = &section.upstream else {
        d.error(
            &section.name.span(),
            format!(
                "route \"{}\" has no `upstream`; add e.g. upstream = \"http://10.0.0.12:8080\"",
                section.name.get_ref()
            ),
        );
        return Vec::new();
    };
    let entries = upstream.get_ref().to_vec(upstream.span());
    if entries.is_empty() {
        d.error(
            &upstream.span(),
            "`upstream` is an empty list; give at least one http:// or https:// URL",
        );
    }
    let mut upstreams = Vec::new();
    for entry in &entries {
        match parse_upstream(entry.get_ref()) {
            Ok(url) => upstreams.push(url),
            Err(problem) => d.error(
                &entry.span(),
                format!("`upstream` {:?} {problem}", entry.get_ref()),
            ),
        }
    }
    upstreams
}

/// `http(s)://host[:port]`, nothing else: the request's own path is forwarded unchanged, so a
/// path in the upstream URL would be silently ignored, and credentials do not belong here.
fn parse_upstream(text: &str) -> Result<UpstreamUrl, String> {
    const EXAMPLE: &str = "write scheme://host[:port], e.g. \"http://10.0.0.12:8080\"";
    let not_url = || format!("is not an http(s) URL; {EXAMPLE}");
    let uri: http::Uri = text.parse().map_err(|_| not_url())?;
    let tls = match uri.scheme_str() {
        Some(scheme) if scheme.eq_ignore_ascii_case("http") => false,
        Some(scheme) if scheme.eq_ignore_ascii_case("https") => true,
        Some(scheme) => {
            return Err(format!(
                "has scheme {scheme:?}; only http:// and https:// are supported"
            ));
        }
        None => return Err(not_url()),
    };
    let authority = uri.authority().ok_or_else(not_url)?;
    if authority.as_str().contains('@') {
        return Err(format!("contains credentials; remove them ({EXAMPLE})"));
    }
    if uri.path() != "/" || uri.query().is_some() || text.contains('#') || text.ends_with('?') {
        return Err(format!(
            "has a path, query or fragment; the request's path is forwarded unchanged, so {EXAMPLE}"
        ));
    }
    let host = authority.host();
    if host.is_empty() {
        return Err(not_url());
    }
    let port_text = authority.as_str()[host.len()..].strip_prefix(':');
    let port = match port_text {
        None | Some("") => {
            if tls {
                443
            } else {
                80
            }
        }
        Some(digits) => digits
            .parse::<u16>()
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| format!("has an invalid port {digits:?}; use 1-65535"))?,
    };
    Ok(UpstreamUrl {
        tls,
        host: host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
        port,
    })
}

/// Warns about a route that can never be selected because an earlier route has the same
/// host and path prefix and accepts every method it does (SPEC §3: the first declared wins).
fn warn_shadowed_routes(sections: &[RouteSection], routes: &[RouteConfig], d: &mut Diagnostics) {
    for (later_index, later) in routes.iter().enumerate() {
        let shadowing = routes[..later_index].iter().find(|earlier| {
            earlier.host == later.host
                && earlier.path_prefix == later.path_prefix
                && match (&earlier.methods, &later.methods) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(theirs), Some(ours)) => ours.iter().all(|method| theirs.contains(method)),
                }
        });
        if let (Some(earlier), Some(section)) = (shadowing, sections.get(later_index)) {
            d.warn(
                &section.name.span(),
                format!(
                    "route \"{}\" is never used: route \"{}\" has the same host and \
                     path_prefix, accepts its methods and is declared first; change one of \
                     them or remove this route",
                    later.name, earlier.name
                ),
            );
        }
    }
}

/// A public route has no token to check, so rules would silently never run: refused. Other
/// authentication keys are harmless but misleading: warned.
fn check_public_route(section: &RouteSection, d: &mut Diagnostics) {
    let name = section.name.get_ref();
    let rules = section.allow.iter().chain(&section.deny);
    for rule in rules {
        d.error(
            &rule.span(),
            format!(
                "route \"{name}\" is public (auth = false), so this rule would never be \
                evaluated; remove the rule or set auth = true"
            ),
        );
    }
    let ignored = [
        ("issuer", section.issuer.as_ref().map(Spanned::span)),
        ("audience", section.audience.as_ref().map(Spanned::span)),
        ("mode", section.mode.as_ref().map(Spanned::span)),
        (
            "strip_authorization",
            section.strip_authorization.as_ref().map(Spanned::span),
        ),
        (
            "allow_any_repository",
            section.allow_any_repository.as_ref().map(Spanned::span),
        ),
    ];
    for (key, span) in ignored {
        if let Some(span) = span {
            d.warn(
                &span,
                format!("`{key}` is ignored on public route \"{name}\" (auth = false)"),
            );
        }
    }
}

fn compile_route_auth(
    section: &RouteSection,
    issuer_names: &[&str],
    issuers: &[IssuerConfig],
    d: &mut Diagnostics,
) -> Option<RouteAuth> {
    let issuer = route_issuer(section, issuer_names, d);
    let audience = route_audience(section, d);
    let mode = route_mode(section, d);
    let allow = compile_rules(&section.allow, d);
    let deny = compile_rules(&section.deny, d);
    let issuer_config = issuer.and_then(|index| issuers.get(index));
    if let Some(issuer_config) = issuer_config {
        check_route_rules(section, issuer_config, &allow, &deny, d);
    }
    if section.allow.is_empty() {
        d.warn(
            &section.name.span(),
            format!(
                "route \"{}\" has no [[route.allow]] rule, so it admits nobody; add an allow \
                 rule (an empty [[route.allow]] admits every verified token for the audience) \
                 or set auth = false",
                section.name.get_ref()
            ),
        );
    }
    Some(RouteAuth {
        issuer: issuer?,
        audience,
        strip_authorization: section
            .strip_authorization
            .as_ref()
            .is_none_or(|s| *s.get_ref()),
        mode,
        allow_any_repository: section
            .allow_any_repository
            .as_ref()
            .is_some_and(|a| *a.get_ref()),
        allow: allow.into_iter().map(|rule| rule.compiled).collect(),
        deny: deny.into_iter().map(|rule| rule.compiled).collect(),
    })
}

/// The route's issuer index; optional in the file only when exactly one issuer exists.
fn route_issuer(
    section: &RouteSection,
    issuer_names: &[&str],
    d: &mut Diagnostics,
) -> Option<usize> {
    let route = section.name.get_ref();
    if let Some(issuer) = &section.issuer {
        let found = issuer_names
            .iter()
            .position(|name| name == issuer.get_ref());
        if found.is_none() {
            let known = if issuer_names.is_empty() {
                "no [[issuer]] is configured; add one".to_owned()
            } else {
                format!("configured issuers: {}", issuer_names.join(", "))
            };
            d.error(
                &issuer.span(),
                format!(
                    "route \"{route}\" names unknown issuer \"{}\"; {known}",
                    issuer.get_ref()
                ),
            );
        }
        return found;
    }
    match issuer_names {
        [_] => Some(0),
        [] => {
            d.error(
                &section.name.span(),
                format!(
                    "route \"{route}\" needs a token but no [[issuer]] is configured; add \
                    an [[issuer]] or set auth = false for a public route"
                ),
            );
            None
        }
        several => {
            d.error(
                &section.name.span(),
                format!(
                    "route \"{route}\" has no `issuer` while several are configured ({}); set \
                     issuer = \"…\" on the route",
                    several.join(", ")
                ),
            );
            None
        }
    }
}

fn route_audience(section: &RouteSection, d: &mut Diagnostics) -> String {
    let route = section.name.get_ref();
    match &section.audience {
        Some(audience) if !audience.get_ref().is_empty() => audience.get_ref().clone(),
        Some(audience) => {
            d.error(
                &audience.span(),
                format!(
                    "route \"{route}\" has an empty `audience`; use \
                the URL jobs request tokens for, e.g. \"https://deploy.internal.example\""
                ),
            );
            String::new()
        }
        None => {
            d.error(
                &section.name.span(),
                format!(
                    "authenticated route \"{route}\" has no `audience`; add e.g. audience = \
                     \"https://{route}.internal.example\" \
                     (the value jobs request tokens for), or set auth = false for a public route"
                ),
            );
            String::new()
        }
    }
}

fn route_mode(section: &RouteSection, d: &mut Diagnostics) -> Mode {
    let Some(mode) = &section.mode else {
        return Mode::Enforce;
    };
    match mode.get_ref().as_str() {
        "enforce" => Mode::Enforce,
        "shadow" => Mode::Shadow,
        other => {
            d.error(
                &mode.span(),
                format!("`mode` {other:?} is unknown; use \"enforce\" or \"shadow\""),
            );
            Mode::Enforce
        }
    }
}

// ---------------------------------------------------------------------------------------
// [[route.allow]] / [[route.deny]]

/// A compiled rule with the spans its warnings point at.
struct SpannedRule {
    span: Range<usize>,
    /// Span of each condition's key, parallel to `compiled.conditions`.
    keys: Vec<Range<usize>>,
    compiled: CompiledRule,
}

impl SpannedRule {
    fn condition(&self, claim: &str) -> Option<(&Range<usize>, &Condition)> {
        self.keys
            .iter()
            .zip(&self.compiled.conditions)
            .find(|(_, condition)| condition.claim == claim)
    }

    fn has(&self, claim: &str) -> bool {
        self.condition(claim).is_some()
    }
}

fn compile_rules(rules: &[Spanned<RuleTable>], d: &mut Diagnostics) -> Vec<SpannedRule> {
    rules.iter().map(|rule| compile_rule(rule, d)).collect()
}

/// Conditions are kept in file order so that `explain` reads like the config.
fn compile_rule(rule: &Spanned<RuleTable>, d: &mut Diagnostics) -> SpannedRule {
    let mut entries: Vec<_> = rule.get_ref().iter().collect();
    entries.sort_by_key(|(claim, _)| claim.span().start);
    let mut keys = Vec::new();
    let mut conditions = Vec::new();
    for (claim, value) in entries {
        if claim.get_ref().is_empty() {
            d.error(
                &claim.span(),
                "a condition names an empty claim; write claim = value, e.g. \
                repository_owner = \"acme\"",
            );
            continue;
        }
        match Matcher::from_toml(value.get_ref()) {
            Ok(matcher) => {
                keys.push(claim.span());
                conditions.push(Condition::new(claim.get_ref(), matcher));
            }
            Err(message) => d.error(
                &value.span(),
                format!("condition on `{}`: {message}", claim.get_ref()),
            ),
        }
    }
    SpannedRule {
        span: rule.span(),
        keys,
        compiled: CompiledRule::new(conditions),
    }
}

/// The safety rule (public GitHub issuer) and the GitHub warnings of SPEC §2. The name-only
/// and `sub`-only warnings concern allow rules, since they are about who gets in; unknown
/// claims are reported on deny rules too, where a typo silently disables the deny.
fn check_route_rules(
    section: &RouteSection,
    issuer: &IssuerConfig,
    allow: &[SpannedRule],
    deny: &[SpannedRule],
    d: &mut Diagnostics,
) {
    let route = section.name.get_ref();
    if issuer.is_public_github() {
        check_owner_pinning(section, allow, d);
    } else if let Some(flag) = section
        .allow_any_repository
        .as_ref()
        .filter(|flag| *flag.get_ref())
    {
        d.warn(
            &flag.span(),
            format!(
                "`allow_any_repository` has no effect on issuer \"{}\": only the public \
                GitHub issuer needs it; remove it",
                issuer.name
            ),
        );
    }
    if issuer.kind != IssuerKind::Github {
        return;
    }
    for (index, rule) in allow.iter().enumerate() {
        let rule_ref = RuleRef {
            kind: RuleKind::Allow,
            index,
        };
        warn_name_only(route, rule_ref, rule, d);
        warn_sub_only(route, rule_ref, rule, d);
    }
    let all = allow
        .iter()
        .enumerate()
        .map(|(index, rule)| (RuleKind::Allow, index, rule));
    let all = all.chain(
        deny.iter()
            .enumerate()
            .map(|(index, rule)| (RuleKind::Deny, index, rule)),
    );
    for (kind, index, rule) in all {
        warn_unknown_claims(route, RuleRef { kind, index }, rule, d);
    }
}

/// SPEC §2 safety rule: on the public GitHub issuer every allow rule must pin the owner, or
/// the route must opt out with `allow_any_repository = true` (then each unpinned rule is a
/// warning instead of an error).
fn check_owner_pinning(section: &RouteSection, allow: &[SpannedRule], d: &mut Diagnostics) {
    let route = section.name.get_ref();
    let opted_out = section
        .allow_any_repository
        .as_ref()
        .filter(|flag| *flag.get_ref());
    let mut unpinned = 0;
    for (index, rule) in allow.iter().enumerate() {
        if rule.compiled.pins_owner() {
            continue;
        }
        unpinned += 1;
        let name = RuleRef {
            kind: RuleKind::Allow,
            index,
        }
        .label(route);
        if opted_out.is_some() {
            d.warn(
                &rule.span,
                format!(
                    "rule {name} does not pin the repository owner: any repository on \
                     github.com can get a token for this audience and match it; accepted \
                     because the route sets allow_any_repository = true"
                ),
            );
        } else {
            d.error(
                &rule.span,
                format!(
                    "rule {name} does not pin the repository owner, and the public GitHub \
                     issuer signs tokens for every repository on github.com; add e.g. \
                     repository_owner_id = \"123456\" with repository_owner = \"acme\", or \
                     repository = \"acme/*\" (or set allow_any_repository = true on the route \
                     if any repository may really be admitted)"
                ),
            );
        }
    }
    if let Some(flag) = opted_out.filter(|_| unpinned == 0 && !allow.is_empty()) {
        d.warn(
            &flag.span(),
            format!(
                "`allow_any_repository` is not needed: every allow rule of route \
                \"{route}\" pins the owner; remove it"
            ),
        );
    }
}

/// Warns when a rule identifies the owner or repository by name without the id that cannot
/// be renamed or re-registered:
/// - `repository_owner` with neither `repository_owner_id` nor `repository_id`;
/// - `repository` with exact names and no `repository_id`;
/// - `repository` with globs (`acme/*`, which no single id can replace) and neither
///   `repository_owner_id` nor `repository_id`.
fn warn_name_only(route: &str, rule_ref: RuleRef, rule: &SpannedRule, d: &mut Diagnostics) {
    let label = rule_ref.label(route);
    if let Some((span, _)) = rule.condition("repository_owner")
        && !rule.has("repository_owner_id")
        && !rule.has("repository_id")
    {
        d.warn(
            span,
            format!(
                "rule {label} pins the owner by name only: `repository_owner` without \
                     `repository_owner_id`; names can be renamed or re-registered, ids cannot: \
                     add repository_owner_id = \"…\""
            ),
        );
    }
    if let Some((span, condition)) = rule.condition("repository") {
        let missing = if condition.matcher.is_literal() {
            (!rule.has("repository_id")).then_some("repository_id")
        } else {
            (!rule.has("repository_id") && !rule.has("repository_owner_id"))
                .then_some("repository_owner_id")
        };
        if let Some(missing) = missing {
            d.warn(
                span,
                format!(
                    "rule {label} pins the repository by name only: `repository` without \
                     `{missing}`; \
                     names can be renamed or re-registered, ids cannot: add {missing} = \"…\""
                ),
            );
        }
    }
}

/// Warns when `sub` is the rule's only identifying condition: it has a `sub` condition and
/// none on the repository, its owner, the enterprise or `job_workflow_ref`. GitHub is moving
/// to a new immutable `sub` format and organisations can customise `sub`, so a rule written
/// against today's `sub` may stop matching, or match more, tomorrow.
fn warn_sub_only(route: &str, rule_ref: RuleRef, rule: &SpannedRule, d: &mut Diagnostics) {
    let Some((span, _)) = rule.condition("sub") else {
        return;
    };
    if IDENTIFYING_CLAIMS.iter().any(|claim| rule.has(claim)) {
        return;
    }
    d.warn(
        span,
        format!(
            "rule {} relies on `sub` alone; GitHub is moving to a new immutable `sub` format \
             and organisations \
             can customise it: also pin repository_owner_id / repository_id (or repository)",
            rule_ref.label(route)
        ),
    );
}

fn warn_unknown_claims(route: &str, rule_ref: RuleRef, rule: &SpannedRule, d: &mut Diagnostics) {
    let effect = match rule_ref.kind {
        RuleKind::Allow => "this allow rule never matches",
        RuleKind::Deny => "this deny rule never denies",
    };
    for (span, condition) in rule.keys.iter().zip(&rule.compiled.conditions) {
        let claim = condition.claim.as_str();
        if GITHUB_CLAIMS.contains(&claim) {
            continue;
        }
        let hint = if claim == JOB_URL {
            " (job_url is derived for headers and the audit log; match check_run_id or run_id \
             instead)"
                .to_owned()
        } else {
            did_you_mean(claim)
        };
        d.warn(
            span,
            format!(
                "rule {} names claim `{claim}`, which GitHub does not issue{hint}, so {effect}",
                rule_ref.label(route)
            ),
        );
    }
}

/// A " (did you mean `x`?)" hint when a GitHub claim is within two edits of `name`.
fn did_you_mean(name: &str) -> String {
    GITHUB_CLAIMS
        .iter()
        .map(|claim| (edit_distance(name, claim), claim))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map_or_else(String::new, |(_, claim)| {
            format!(" (did you mean `{claim}`?)")
        })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines 1-3: the public GitHub issuer. Lines 5-12: a pinned, authenticated route.
    const BASE: &str = r#"[[issuer]]
name = "github"
url = "https://token.actions.githubusercontent.com"

[[route]]
name = "deploy"
upstream = "http://10.0.0.12:8080"
audience = "https://deploy.example"

[[route.allow]]
repository_owner = "acme"
repository_owner_id = "42"
"#;

    fn config(text: &str) -> Config {
        match compile(text, Path::new("/etc/jobgate/jobgate.toml")) {
            Ok(config) => config,
            Err(error) => panic!("config should be valid:\n{error}"),
        }
    }

    fn errors(text: &str) -> Vec<Diagnostic> {
        match compile(text, Path::new("jobgate.toml")) {
            Ok(_) => panic!("config should be refused:\n{text}"),
            Err(error) => error.errors,
        }
    }

    /// Asserts one error sits on `line` and says `needle`.
    fn assert_error(text: &str, line: usize, needle: &str) {
        let errors = errors(text);
        assert!(
            errors
                .iter()
                .any(|e| e.line == line && e.message.contains(needle)),
            "expected an error on line {line} containing {needle:?}, got {errors:#?}"
        );
    }

    fn assert_warning(text: &str, line: usize, needle: &str) {
        let warnings = config(text).warnings;
        assert!(
            warnings
                .iter()
                .any(|w| w.line == line && w.message.contains(needle)),
            "expected a warning on line {line} containing {needle:?}, got {warnings:#?}"
        );
    }

    fn assert_no_warning(text: &str, needle: &str) {
        let warnings = config(text).warnings;
        assert!(
            !warnings.iter().any(|w| w.message.contains(needle)),
            "expected no warning containing {needle:?}, got {warnings:#?}"
        );
    }

    #[test]
    fn base_config_is_valid_without_warnings() {
        assert_eq!(config(BASE).warnings, vec![]);
    }

    // --- one test per validation rule of SPEC §2 -----------------------------------------

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let text = format!("{BASE}\n[server]\nlisten = \"0.0.0.0:8080\"\nlisn = \"x\"\n");
        let errors = errors(&text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!((errors[0].line, errors[0].column), (16, 1));
        assert!(
            errors[0].message.contains("unknown field `lisn`"),
            "{errors:#?}"
        );
        assert!(errors[0].message.contains("unknown"), "{errors:#?}");
        let in_route = BASE.replace("audience =", "audiance = \"x\"\naudience =");
        assert_error(&in_route, 8, "unknown field `audiance`");
    }

    #[test]
    fn duplicate_route_name_is_refused() {
        let text = format!(
            "{BASE}\n[[route]]\nname = \"deploy\"\nupstream = \"http://x\"\nauth = false\n"
        );
        assert_error(
            &text,
            15,
            "duplicate route name \"deploy\" (first used on line 6)",
        );
    }

    #[test]
    fn duplicate_issuer_name_is_refused() {
        let text = BASE.replace(
            "[[route]]",
            "[[issuer]]\nname = \"github\"\nurl = \"https://issuer.example\"\n\n[[route]]",
        );
        assert_error(
            &text,
            6,
            "duplicate issuer name \"github\" (first used on line 2)",
        );
    }

    #[test]
    fn unknown_issuer_is_refused() {
        let text = BASE.replace("audience =", "issuer = \"gitlab\"\naudience =");
        assert_error(
            &text,
            8,
            "names unknown issuer \"gitlab\"; configured issuers: github",
        );
    }

    #[test]
    fn authenticated_route_without_audience_is_refused() {
        let text = BASE.replace("audience = \"https://deploy.example\"\n", "");
        assert_error(&text, 6, "authenticated route \"deploy\" has no `audience`");
        let public = "[[route]]\nname = \"open\"\nupstream = \"http://x\"\nauth = false\n";
        assert!(config(public).routes[0].auth.is_none());
    }

    #[test]
    fn missing_issuer_with_several_issuers_is_refused() {
        let text = BASE.replace(
            "[[route]]",
            "[[issuer]]\nname = \"corp\"\nurl = \"https://idp.corp.example\"\n\n[[route]]",
        );
        assert_error(
            &text,
            10,
            "has no `issuer` while several are configured (github, corp)",
        );
        let named = text.replace("audience =", "issuer = \"github\"\naudience =");
        assert_eq!(
            config(&named).routes[0].auth.as_ref().map(|a| a.issuer),
            Some(0)
        );
    }

    #[test]
    fn non_http_upstream_is_refused() {
        let ftp = BASE.replace("http://10.0.0.12:8080", "ftp://10.0.0.12");
        assert_error(&ftp, 7, "has scheme \"ftp\"; only http:// and https://");
        let bare = BASE.replace("http://10.0.0.12:8080", "10.0.0.12:8080");
        assert_error(&bare, 7, "is not an http(s) URL");
        let list = BASE.replace(
            "\"http://10.0.0.12:8080\"",
            "[\"http://a\",\n  \"mailto:x@y\"]",
        );
        assert_error(&list, 8, "`upstream` \"mailto:x@y\"");
        let path = BASE.replace("http://10.0.0.12:8080", "http://10.0.0.12:8080/api?x=1");
        assert_error(&path, 7, "has a path, query or fragment");
        let port = BASE.replace("http://10.0.0.12:8080", "http://10.0.0.12:99999");
        assert_error(&port, 7, "invalid port");
        let missing = BASE.replace("upstream = \"http://10.0.0.12:8080\"\n", "");
        assert_error(&missing, 6, "has no `upstream`");
    }

    #[test]
    fn invalid_regex_is_refused() {
        let text = format!("{BASE}ref = {{ regex = \"refs/(heads\" }}\n");
        assert_error(&text, 13, "invalid regex \"refs/(heads\"");
    }

    #[test]
    fn bad_duration_is_refused() {
        let text = BASE.replace(
            "url = \"https://token.actions.githubusercontent.com\"",
            "url = \"https://token.actions.githubusercontent.com\"\nleeway = \"1m30s\"",
        );
        assert_error(&text, 4, "`leeway`: duration \"1m30s\" is compound");
        let timeout = BASE.replace("audience =", "timeout = \"30\"\naudience =");
        assert_error(&timeout, 8, "has no unit; use one integer and one unit");
        let grace = format!("{BASE}\n[server]\ngrace_period = \"ten seconds\"\n");
        assert_error(&grace, 15, "`grace_period`");
    }

    #[test]
    fn none_and_hs256_algorithms_are_refused() {
        let text = BASE.replace(
            "url = \"https://token.actions.githubusercontent.com\"",
            "url = \"https://token.actions.githubusercontent.com\"\nalgorithms = [\"RS256\",\n  \
             \"none\",\n  \"HS256\"]",
        );
        let errors = errors(&text);
        assert_eq!(errors.len(), 2, "both are reported: {errors:#?}");
        assert_eq!(errors[0].line, 5);
        assert!(
            errors[0]
                .message
                .contains("\"none\" would accept unsigned tokens"),
            "{errors:#?}"
        );
        assert_eq!(errors[1].line, 6);
        assert!(
            errors[1]
                .message
                .contains("\"HS256\" is a shared-secret (HMAC)"),
            "{errors:#?}"
        );
        let unknown = text.replace("\"none\"", "\"RS1\"");
        assert_error(&unknown, 5, "algorithm \"RS1\" is unknown");
    }

    #[test]
    fn http_issuer_url_off_loopback_is_refused() {
        let text = BASE.replace(
            "https://token.actions.githubusercontent.com",
            "http://issuer.example",
        );
        assert_error(&text, 3, "uses http:// off loopback (issuer.example)");
        let jwks = BASE.replace(
            "url = \"https://token.actions.githubusercontent.com\"",
            "url = \"https://token.actions.githubusercontent.com\"\njwks_url = \
             \"http://10.1.1.1/jwks\"",
        );
        assert_error(
            &jwks,
            4,
            "issuer `jwks_url` \"http://10.1.1.1/jwks\" uses http:// off loopback",
        );
        for loopback in [
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://[::1]:80",
            "http://localhost:1",
        ] {
            let text = format!(
                "[[issuer]]\nname = \"t\"\nurl = \"{loopback}\"\n[[route]]\nname = \
                 \"r\"\nupstream = \"http://x\"\naudience = \"a\"\n[[route.allow]]\n"
            );
            assert_eq!(config(&text).issuers[0].url, loopback);
        }
    }

    #[test]
    fn tls_cert_without_key_is_refused() {
        let text = format!("{BASE}\n[server]\ntls_cert = \"tls.crt\"\n");
        assert_error(
            &text,
            15,
            "`tls_cert` is set but `tls_key` is not; set both",
        );
        let key_only = format!("{BASE}\n[server]\ntls_key = \"tls.key\"\n");
        assert_error(&key_only, 15, "`tls_key` is set but `tls_cert` is not");
    }

    #[test]
    fn unpinned_rule_on_public_github_issuer_is_refused() {
        let text =
            format!("{BASE}\n[[route.allow]]\nrepository = \"acme*\"\nref = \"refs/heads/main\"\n");
        let errors = errors(&text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].line, 14);
        assert!(
            errors[0]
                .message
                .contains("rule deploy.allow[1] does not pin the repository owner"),
            "{errors:#?}"
        );
        assert!(
            errors[0].message.contains("allow_any_repository = true"),
            "{errors:#?}"
        );
        let empty = format!("{BASE}\n[[route.allow]]\n");
        assert_error(&empty, 14, "deploy.allow[1] does not pin");
        let regex = BASE
            .replace("\"acme\"", "{ regex = \"acme\" }")
            .replace("repository_owner_id = \"42\"\n", "");
        assert_error(&regex, 10, "deploy.allow[0] does not pin");
    }

    #[test]
    fn unpinned_rule_is_accepted_with_allow_any_repository_and_warned() {
        let text = format!("{BASE}\n[[route.allow]]\nref = \"refs/heads/main\"\n")
            .replace("audience =", "allow_any_repository = true\naudience =");
        let config = config(&text);
        assert!(
            config.routes[0]
                .auth
                .as_ref()
                .is_some_and(|a| a.allow_any_repository)
        );
        assert_warning(
            &text,
            15,
            "rule deploy.allow[1] does not pin the repository owner",
        );
        assert_warning(
            &text,
            15,
            "accepted because the route sets allow_any_repository = true",
        );
    }

    #[test]
    fn unpinned_rule_is_accepted_on_an_enterprise_issuer() {
        let text = format!("{BASE}\n[[route.allow]]\nref = \"refs/heads/main\"\n").replace(
            "https://token.actions.githubusercontent.com",
            "https://token.actions.githubusercontent.com/acme-corp",
        );
        let config = config(&text);
        assert_eq!(config.issuers[0].kind, IssuerKind::Github);
        assert!(
            !config
                .warnings
                .iter()
                .any(|w| w.message.contains("does not pin")),
            "{:#?}",
            config.warnings
        );
    }

    #[test]
    fn name_only_pinning_is_warned() {
        let text = BASE.replace("repository_owner_id = \"42\"\n", "");
        assert_warning(
            &text,
            11,
            "rule deploy.allow[0] pins the owner by name only: `repository_owner` without \
             `repository_owner_id`",
        );
        let repository = BASE.replace(
            "repository_owner = \"acme\"\nrepository_owner_id = \"42\"",
            "repository = \"acme/app\"",
        );
        assert_warning(
            &repository,
            11,
            "pins the repository by name only: `repository` without `repository_id`",
        );
        let glob = BASE.replace(
            "repository_owner = \"acme\"\nrepository_owner_id = \"42\"",
            "repository = \"acme/*\"",
        );
        assert_warning(&glob, 11, "`repository` without `repository_owner_id`");
        let glob_with_owner_id =
            BASE.replace("repository_owner = \"acme\"", "repository = \"acme/*\"");
        assert_no_warning(&glob_with_owner_id, "by name only");
        let with_repo_id = BASE.replace("repository_owner_id = \"42\"", "repository_id = \"7\"");
        assert_no_warning(&with_repo_id, "by name only");
    }

    #[test]
    fn sub_only_rule_is_warned() {
        let text = BASE.replace(
            "repository_owner = \"acme\"\nrepository_owner_id = \"42\"",
            "sub = \"repo:acme/app:ref:refs/heads/main\"\nref = \"refs/heads/main\"",
        );
        assert_warning(&text, 11, "rule deploy.allow[0] relies on `sub` alone");
        let pinned_too = BASE.replace(
            "repository_owner = \"acme\"",
            "sub = \"repo:acme/*\"\nrepository_owner = \"acme\"",
        );
        assert_no_warning(&pinned_too, "relies on `sub` alone");
    }

    #[test]
    fn unknown_claim_is_warned() {
        let text = format!(
            "{BASE}enviroment = \"production\"\n\n[[route.deny]]\nrunner_env = \
             \"self-hosted\"\njob_url = \"x\"\n"
        );
        assert_warning(
            &text,
            13,
            "names claim `enviroment`, which GitHub does not issue (did you mean \
             `environment`?), so this allow rule never matches",
        );
        assert_warning(
            &text,
            16,
            "deploy.deny[0] names claim `runner_env`, which GitHub does not issue",
        );
        assert_warning(&text, 16, "this deny rule never denies");
        assert_warning(
            &text,
            17,
            "job_url is derived for headers and the audit log",
        );
        let generic = text.replace(
            "https://token.actions.githubusercontent.com",
            "https://idp.example",
        );
        assert_no_warning(&generic, "GitHub does not issue");
    }

    // --- everything else an operator expects ----------------------------------------------

    #[test]
    fn defaults_are_applied() {
        let config = config(BASE);
        assert_eq!(config.server.listen, vec!["0.0.0.0:8080".to_owned()]);
        assert_eq!(config.server.admin_listen, "127.0.0.1:9090");
        assert!(config.server.threads >= 1);
        assert_eq!(config.server.max_token_bytes, 16_384);
        assert_eq!(config.server.grace_period, Duration::from_secs(10));
        assert_eq!(config.server.token_cache_entries, 100_000);
        assert_eq!(config.server.tls, None);
        assert_eq!(config.audit, AuditOutput::Stdout);
        assert_eq!(config.revocation_file, None);
        let issuer = &config.issuers[0];
        assert_eq!(issuer.kind, IssuerKind::Github);
        assert!(issuer.is_public_github());
        assert_eq!(issuer.server_url, "https://github.com");
        assert_eq!(issuer.algorithms, vec![Algorithm::RS256]);
        assert_eq!(issuer.leeway, Duration::from_secs(60));
        assert_eq!(issuer.refresh, Duration::from_secs(600));
        assert_eq!(issuer.min_refetch_interval, Duration::from_secs(30));
        assert_eq!(issuer.max_stale, Duration::from_secs(86_400));
        assert_eq!(issuer.max_token_age, None);
        assert_eq!(issuer.jwks_url, None);
        let route = &config.routes[0];
        assert_eq!(route.host, HostMatch::Any);
        assert_eq!(route.path_prefix, "/");
        assert_eq!(route.methods, None);
        assert_eq!(
            route.upstreams,
            vec![UpstreamUrl {
                tls: false,
                host: "10.0.0.12".into(),
                port: 8080
            }]
        );
        assert_eq!(route.timeout, Duration::from_secs(30));
        let auth = route.auth.as_ref().expect("authenticated by default");
        assert_eq!(auth.issuer, 0);
        assert_eq!(auth.audience, "https://deploy.example");
        assert!(auth.strip_authorization);
        assert_eq!(auth.mode, Mode::Enforce);
        assert!(!auth.allow_any_repository);
        assert_eq!((auth.allow.len(), auth.deny.len()), (1, 0));
        assert_eq!(config.source, Path::new("/etc/jobgate/jobgate.toml"));
    }

    #[test]
    fn every_setting_is_read() {
        let text = r#"
[server]
listen = ["0.0.0.0:8443", "[::]:8443"]
tls_cert = "tls/cert.pem"
tls_key = "/abs/key.pem"
admin_listen = "127.0.0.1:9191"
threads = 3
max_token_bytes = 8192
grace_period = "500ms"
token_cache_entries = 10

[audit]
output = "audit/audit.log"

[[issuer]]
name = "corp"
url = "https://idp.corp.example"
jwks_url = "https://idp.corp.example/keys"
algorithms = ["ES256", "EdDSA", "ES256"]
leeway = "5s"
refresh = "1h"
min_refetch_interval = "1m"
max_stale = "7d"
max_token_age = "15m"

[[route]]
name = "api"
host = "*.Internal.Example"
path_prefix = "/v1/"
methods = ["get", "POST"]
upstream = ["https://api.internal.example", "http://10.0.0.1:81"]
upstream_ca = "ca.pem"
timeout = "5s"
audience = "api"
strip_authorization = false
mode = "shadow"

[[route.deny]]
ref_type = "tag"

[revocation]
file = "revoked.toml"
"#;
        let config = config(text);
        let server = &config.server;
        assert_eq!(
            server.listen,
            vec!["0.0.0.0:8443".to_owned(), "[::]:8443".to_owned()]
        );
        assert_eq!(
            server.tls,
            Some(TlsFiles {
                cert: "/etc/jobgate/tls/cert.pem".into(),
                key: "/abs/key.pem".into()
            })
        );
        assert_eq!(server.admin_listen, "127.0.0.1:9191");
        assert_eq!(server.threads, 3);
        assert_eq!(server.max_token_bytes, 8192);
        assert_eq!(server.grace_period, Duration::from_millis(500));
        assert_eq!(server.token_cache_entries, 10);
        assert_eq!(
            config.audit,
            AuditOutput::File("/etc/jobgate/audit/audit.log".into())
        );
        assert_eq!(
            config.revocation_file,
            Some("/etc/jobgate/revoked.toml".into())
        );
        let issuer = &config.issuers[0];
        assert_eq!(issuer.kind, IssuerKind::Generic);
        assert!(issuer.headers.is_empty());
        assert_eq!(
            issuer.jwks_url.as_deref(),
            Some("https://idp.corp.example/keys")
        );
        assert_eq!(issuer.algorithms, vec![Algorithm::ES256, Algorithm::EdDSA]);
        assert_eq!(issuer.max_stale, Duration::from_secs(7 * 86_400));
        assert_eq!(issuer.max_token_age, Some(Duration::from_secs(900)));
        let route = &config.routes[0];
        assert_eq!(route.host, HostMatch::Suffix(".internal.example".into()));
        assert_eq!(route.path_prefix, "/v1/");
        assert_eq!(route.methods, Some(vec![Method::GET, Method::POST]));
        assert_eq!(
            route.upstreams[0],
            UpstreamUrl {
                tls: true,
                host: "api.internal.example".into(),
                port: 443
            }
        );
        assert_eq!(route.upstreams[1].port, 81);
        assert_eq!(route.upstream_ca, Some("/etc/jobgate/ca.pem".into()));
        assert_eq!(route.timeout, Duration::from_secs(5));
        let auth = route.auth.as_ref().expect("authenticated");
        assert!(!auth.strip_authorization);
        assert_eq!(auth.mode, Mode::Shadow);
        assert_eq!(config.sha256.len(), 64);
        assert_eq!(config.sha256, sha256_hex(text));
        // TLS files and the CA do not exist: warned, not refused; and no allow rule.
        let lines: Vec<usize> = config.warnings.iter().map(|w| w.line).collect();
        assert_eq!(lines, vec![4, 5, 27, 32], "{:#?}", config.warnings);
    }

    #[test]
    fn sha256_is_hex_of_the_text() {
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn all_errors_are_collected_in_file_order() {
        let text = BASE
            .replace(
                "audience = \"https://deploy.example\"",
                "audience = \"a\"\nmode = \"strict\"\nmethods = [\"GET\", \"BAD METHOD\"]",
            )
            .replace("name = \"github\"", "name = \"github\"\nkind = \"gitlab\"");
        let errors = errors(&text);
        let lines: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![3, 10, 11], "{errors:#?}");
        let rendered = ConfigError {
            file: "x.toml".into(),
            errors,
        }
        .to_string();
        assert!(
            rendered.starts_with("x.toml:3:8: error: issuer `kind` \"gitlab\" is unknown"),
            "{rendered}"
        );
    }

    #[test]
    fn toml_syntax_errors_have_a_position() {
        let errors = errors("[server\nlisten = 1\n");
        assert_eq!((errors[0].line, errors[0].column), (1, 8));
        let errors = errors_of_type("[server]\nthreads = \"four\"\n");
        assert_eq!(errors[0].line, 2);
        assert!(errors[0].message.contains("invalid type"), "{errors:#?}");
    }

    fn errors_of_type(text: &str) -> Vec<Diagnostic> {
        errors(text)
    }

    #[test]
    fn server_values_are_checked() {
        let cases = [
            (
                "listen = \"localhost:8080\"",
                "is not an IP address and port",
            ),
            ("listen = []", "`listen` is an empty list"),
            (
                "listen = [\"0.0.0.0:1\", \"0.0.0.0:1\"]",
                "names 0.0.0.0:1 twice",
            ),
            (
                "admin_listen = \"0.0.0.0:8080\"",
                "is also a `listen` address",
            ),
            ("threads = -1", "`threads` cannot be negative"),
            (
                "max_token_bytes = 0",
                "`max_token_bytes` must be a positive number",
            ),
            (
                "token_cache_entries = -5",
                "`token_cache_entries` must be a positive number",
            ),
        ];
        for (line, needle) in cases {
            assert_error(&format!("{BASE}\n[server]\n{line}\n"), 15, needle);
        }
        assert_eq!(
            config(&format!("{BASE}\n[server]\nthreads = 0\n"))
                .server
                .threads,
            std::thread::available_parallelism().map_or(1, |n| n.get())
        );
    }

    #[test]
    fn audit_output_is_checked() {
        assert_eq!(
            config(&format!("{BASE}\n[audit]\noutput = \"off\"\n")).audit,
            AuditOutput::Off
        );
        assert_error(
            &format!("{BASE}\n[audit]\noutput = \"stderr\"\n"),
            15,
            "use \"stdout\", \"off\" or a file path",
        );
        assert_error(&format!("{BASE}\n[audit]\noutput = \"\"\n"), 15, "is empty");
    }

    #[test]
    fn issuer_values_are_checked() {
        let add =
            |line: &str| BASE.replace("name = \"github\"", &format!("name = \"github\"\n{line}"));
        assert_error(&add("kind = \"oidc\""), 3, "use \"github\" or \"generic\"");
        assert_error(
            &add("refresh = \"0s\""),
            3,
            "`refresh` must be longer than zero",
        );
        assert_error(&add("algorithms = []"), 3, "`algorithms` is empty");
        assert_error(&add("server_url = \"github.example\""), 3, "`server_url`");
        assert_warning(
            &add("max_stale = \"1m\""),
            3,
            "`max_stale` is shorter than `refresh`",
        );
        let ghes = add("server_url = \"https://ghes.example/\"");
        assert_eq!(config(&ghes).issuers[0].server_url, "https://ghes.example");
        let generic = add("kind = \"generic\"");
        let config_generic = config(&generic);
        assert_eq!(config_generic.issuers[0].kind, IssuerKind::Generic);
        assert!(
            config_generic.issuers[0].is_public_github(),
            "the safety rule follows the url"
        );
        assert_error(&format!("{generic}\n[[route.allow]]\n"), 15, "does not pin");
        assert_error(
            &BASE.replace("https://token", "ftp://token"),
            3,
            "has scheme \"ftp\"; use https://",
        );
        assert_error(
            &BASE.replace(
                "https://token.actions.githubusercontent.com",
                "https://a.example/#x",
            ),
            3,
            "has a query or fragment",
        );
    }

    #[test]
    fn github_issuers_get_the_default_header_table() {
        let config = config(BASE);
        let headers: Vec<(&str, &str)> = config.issuers[0]
            .headers
            .iter()
            .map(|(name, claim)| (name.as_str(), claim.as_str()))
            .collect();
        assert_eq!(headers, DEFAULT_GITHUB_HEADERS.to_vec());
        assert_eq!(headers[0], ("x-github-repository", "repository"));
        assert_eq!(headers[13], ("x-github-job-url", "job_url"));
    }

    #[test]
    fn a_custom_header_table_replaces_the_default_in_file_order() {
        let table = "\n[issuer.headers]\n\"X-Z-Repo\" = \"repository\"\n\"X-A-Job\" = \
            \"job_url\"\n\"X-Custom\" = \"repo_name\"\n\n";
        let text = BASE.replace("\n[[route]]", &format!("{table}[[route]]"));
        let config = config(&text);
        let headers: Vec<&str> = config.issuers[0]
            .headers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(headers, vec!["x-z-repo", "x-a-job", "x-custom"]);
        assert_warning(&text, 8, "claim `repo_name` is not issued by GitHub");
        let bad = BASE.replace(
            "\n[[route]]",
            "\n[issuer.headers]\n\"X Bad\" = \
            \"sub\"\n\"X-Jobgate-Route\" = \"sub\"\n\"Authorization\" = \"sub\"\n\n[[route]]",
        );
        assert_error(&bad, 6, "\"X Bad\" is not a valid HTTP header name");
        assert_error(&bad, 7, "X-Jobgate-* headers are set by jobgate itself");
        assert_error(&bad, 8, "identity header authorization cannot be set");
        let dup = BASE.replace(
            "\n[[route]]",
            "\n[issuer.headers]\n\"X-A\" = \"sub\"\n\"x-a\" = \"sub\"\n\n[[route]]",
        );
        assert_error(&dup, 7, "is listed twice");
    }

    #[test]
    fn route_values_are_checked() {
        let add = |line: &str| BASE.replace("audience =", &format!("{line}\naudience ="));
        assert_error(
            &add("path_prefix = \"v1\""),
            8,
            "must start with '/', e.g. \"/v1\"",
        );
        assert_error(&add("path_prefix = \"/a/../b\""), 8, "'..' segment");
        assert_error(&add("path_prefix = \"/a%2Fb\""), 8, "encoded");
        assert_error(
            &add("methods = [\"GET\", \"G E T\"]"),
            8,
            "\"G E T\" is not an HTTP method",
        );
        assert_error(&add("methods = []"), 8, "`methods` is empty");
        assert_error(&add("host = \"*\""), 8, "matches every host");
        assert_error(&add("host = \"api.*.example\""), 8, "only a leading \"*.\"");
        assert_error(&add("host = \"api.example:8080\""), 8, "has a port");
        assert_error(&add("host = \"*.\""), 8, "is not a host name");
        assert_error(&add("mode = \"audit\""), 8, "use \"enforce\" or \"shadow\"");
        assert_error(
            &add("timeout = \"0ms\""),
            8,
            "`timeout` must be longer than zero",
        );
        assert_error(
            &BASE.replace("\"https://deploy.example\"", "\"\""),
            8,
            "empty `audience`",
        );
        assert_error(
            &BASE.replace("name = \"deploy\"", "name = \"\""),
            6,
            "route `name` is empty",
        );
        let exact = config(&add(
            "host = \"Deploy.Example\"\nmethods = [\"get\", \"GET\", \"purge\"]",
        ));
        assert_eq!(
            exact.routes[0].host,
            HostMatch::Exact("deploy.example".into())
        );
        assert_eq!(
            exact.routes[0].methods,
            Some(vec![
                Method::GET,
                Method::from_bytes(b"PURGE").expect("valid method")
            ])
        );
        let ipv6 = config(&add("host = \"[::1]\""));
        assert_eq!(ipv6.routes[0].host, HostMatch::Exact("[::1]".into()));
    }

    #[test]
    fn at_least_one_route_is_required() {
        assert_error("[server]\nthreads = 1\n", 1, "the config has no [[route]]");
    }

    #[test]
    fn authenticated_route_needs_an_issuer() {
        let text = "[[route]]\nname = \"r\"\nupstream = \"http://x\"\naudience = \"a\"\n";
        assert_error(
            text,
            2,
            "route \"r\" needs a token but no [[issuer]] is configured",
        );
    }

    #[test]
    fn public_route_with_rules_is_refused_and_auth_keys_warned() {
        let text = BASE.replace("audience =", "auth = false\naudience =");
        assert_error(
            &text,
            11,
            "route \"deploy\" is public (auth = false), so this rule would never be evaluated",
        );
        let keys =
            "[[route]]\nname = \"r\"\nupstream = \"http://x\"\nauth = false\naudience = \"a\"\n";
        assert_warning(keys, 5, "`audience` is ignored on public route \"r\"");
    }

    #[test]
    fn a_route_without_allow_rules_is_warned() {
        let text = BASE.replace(
            "\n[[route.allow]]\nrepository_owner = \"acme\"\nrepository_owner_id = \"42\"\n",
            "",
        );
        assert_warning(
            &text,
            6,
            "route \"deploy\" has no [[route.allow]] rule, so it admits nobody",
        );
    }

    #[test]
    fn an_empty_allow_rule_is_valid_off_the_public_issuer() {
        let text = "[[issuer]]\nname = \"corp\"\nurl = \"https://idp.example\"\n[[route]]\nname \
            = \"r\"\nupstream = \"http://x\"\naudience = \"a\"\n[[route.allow]]\n";
        let config = config(text);
        assert_eq!(config.warnings, vec![]);
        let auth = config.routes[0].auth.as_ref().expect("auth");
        assert!(auth.allow[0].conditions.is_empty());
    }

    #[test]
    fn shadowed_routes_are_warned() {
        let text =
            format!("{BASE}\n[[route]]\nname = \"later\"\nupstream = \"http://y\"\nauth = false\n");
        assert_warning(&text, 15, "route \"later\" is never used: route \"deploy\"");
        let narrower = BASE.replace("audience =", "methods = [\"GET\"]\naudience =");
        let not_shadowed = format!(
            "{narrower}\n[[route]]\nname = \"later\"\nupstream = \"http://y\"\nauth = false\n"
        );
        assert_no_warning(&not_shadowed, "is never used");
    }

    #[test]
    fn bad_condition_values_are_refused_at_the_value() {
        let text = format!("{BASE}run_attempt = 1.5\nref = []\n");
        assert_error(
            &text,
            13,
            "condition on `run_attempt`: a float cannot be compared exactly",
        );
        assert_error(
            &text,
            14,
            "condition on `ref`: an empty list matches nothing",
        );
    }

    #[test]
    fn conditions_keep_file_order() {
        let text = format!("{BASE}environment = \"prod\"\nactor = \"octocat\"\n");
        let config = config(&text);
        let auth = config.routes[0].auth.as_ref().expect("auth");
        let claims: Vec<&str> = auth.allow[0]
            .conditions
            .iter()
            .map(|c| c.claim.as_str())
            .collect();
        assert_eq!(
            claims,
            vec![
                "repository_owner",
                "repository_owner_id",
                "environment",
                "actor"
            ]
        );
    }

    #[test]
    fn allow_any_repository_is_reported_when_unneeded_or_ineffective() {
        let unneeded = BASE.replace("audience =", "allow_any_repository = true\naudience =");
        assert_warning(&unneeded, 8, "`allow_any_repository` is not needed");
        let enterprise = unneeded.replace(
            "https://token.actions.githubusercontent.com",
            "https://token.actions.githubusercontent.com/acme",
        );
        assert_warning(&enterprise, 8, "`allow_any_repository` has no effect");
    }

    #[test]
    fn never_panics_on_odd_input() {
        for text in [
            "",
            "\u{0}",
            "[[route]]",
            "route = 5",
            "[[route]]\nname = \"é\"\nupstream = \"http://é\"\nauth = false\n",
            "a.b.c = [1, [2]]",
        ] {
            let _ = compile(text, Path::new(""));
        }
    }

    /// Every shipped config (`config/*.toml`, recursively) must validate. Revocation lists
    /// (top-level `[[revoke]]` only) share the directory but are another format: skipped.
    #[test]
    fn shipped_configs_are_valid() {
        let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config"));
        let mut pending = vec![root.to_path_buf()];
        let mut checked = 0;
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                if path.extension().is_none_or(|ext| ext != "toml") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("shipped config is readable");
                let is_revocation_list = toml::from_str::<toml::Table>(&text)
                    .is_ok_and(|table| table.keys().all(|key| key == "revoke"));
                if is_revocation_list {
                    continue;
                }
                if let Err(error) = crate::config::load(&path) {
                    panic!("{error}");
                }
                checked += 1;
            }
        }
        eprintln!("validated {checked} shipped config(s)");
    }
}
