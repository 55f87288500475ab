//! `[[route]]`: host, path prefix, methods, upstreams, and the authentication a route asks
//! for (issuer, audience, mode), with the public-GitHub safety rule of SPEC §2.

use std::path::Path;
use std::time::Duration;

use http::Method;
use toml::Spanned;

use super::diagnostics::{
    Diagnostics, check_unique_names, config_path, positive_duration, warn_if_missing,
};
use super::limits::compile_limits;
use super::rules::{check_route_rules, compile_rules};
use crate::config::file::{IssuerSection, RouteSection};
use crate::config::{HostMatch, IssuerConfig, Mode, RouteAuth, RouteConfig, UpstreamUrl};

pub(super) fn compile_routes(
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
        limits: compile_limits(section, auth_enabled, d),
        single_use: auth_enabled
            && section
                .single_use
                .as_ref()
                .is_some_and(|single_use| *single_use.get_ref()),
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
    if let Some(single_use) = section.single_use.as_ref().filter(|value| *value.get_ref()) {
        d.error(
            &single_use.span(),
            format!(
                "route \"{name}\" is public (auth = false): it has no token to admit once; \
                 remove single_use or set auth = true"
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
