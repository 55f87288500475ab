//! `[[issuer]]`: the issuer URL and kind, allowed algorithms, key-fetch timings and the
//! identity-header table (SPEC §2, §4).

use std::net::IpAddr;
use std::time::Duration;

use http::HeaderName;
use jsonwebtoken::Algorithm;
use toml::Spanned;

use super::diagnostics::{Diagnostics, check_unique_names, duration, positive_duration};
use super::rules::did_you_mean;
use crate::config::file::IssuerSection;
use crate::config::rules::GITHUB_CLAIMS;
use crate::config::{IssuerConfig, IssuerKind, JOB_URL, PUBLIC_GITHUB_ISSUER};

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

pub(super) fn compile_issuers(
    sections: &[IssuerSection],
    d: &mut Diagnostics,
) -> Vec<IssuerConfig> {
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
pub(super) fn algorithm(name: &str) -> Result<Algorithm, String> {
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
