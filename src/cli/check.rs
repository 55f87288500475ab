//! `jobgate check`: the human summary of a config that validated — one aligned line per
//! route, then every warning as `FILE:LINE:COL: warning: MESSAGE` (the same shape as errors,
//! so editors and CI annotate both).

use std::fmt::Write as _;

use crate::config::{Config, HostMatch, Mode, RouteConfig, UpstreamUrl};

const HEADINGS: [&str; 11] = [
    "ROUTE", "HOST", "PREFIX", "METHODS", "UPSTREAM", "ISSUER", "AUDIENCE", "ALLOW", "DENY",
    "MODE", "ACCESS",
];

/// The text `jobgate check` prints on success.
pub fn summary(config: &Config) -> String {
    let rows: Vec<[String; 11]> = config
        .routes
        .iter()
        .map(|route| route_row(config, route))
        .collect();
    let mut widths = HEADINGS.map(|heading| heading.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} route(s), {} issuer(s), {} warning(s)",
        config.source.display(),
        config.routes.len(),
        config.issuers.len(),
        config.warnings.len()
    );
    push_row(&mut out, &HEADINGS.map(str::to_owned), &widths);
    for row in &rows {
        push_row(&mut out, row, &widths);
    }
    for route in &config.routes {
        let mut limits: Vec<String> = route
            .limits
            .iter()
            .map(|limit| format!("{} {} per {:?}", limit.key, limit.requests, limit.per))
            .collect();
        if route.single_use {
            limits.push("single_use".to_owned());
        }
        if !limits.is_empty() {
            let _ = writeln!(out, "limits of {}: {}", route.name, limits.join("; "));
        }
    }
    for warning in &config.warnings {
        let _ = writeln!(
            out,
            "{}:{}:{}: warning: {}",
            config.source.display(),
            warning.line,
            warning.column,
            warning.message
        );
    }
    out
}

fn push_row(out: &mut String, cells: &[String; 11], widths: &[usize; 11]) {
    let mut line = String::new();
    for (cell, width) in cells.iter().zip(widths) {
        let _ = write!(line, "{cell:<width$}  ");
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

fn route_row(config: &Config, route: &RouteConfig) -> [String; 11] {
    let host = match &route.host {
        HostMatch::Any => "*".to_owned(),
        HostMatch::Exact(host) => host.clone(),
        HostMatch::Suffix(suffix) => format!("*{suffix}"),
    };
    let methods = route.methods.as_ref().map_or_else(
        || "any".to_owned(),
        |methods| {
            let names: Vec<&str> = methods.iter().map(http::Method::as_str).collect();
            names.join(",")
        },
    );
    let upstreams: Vec<String> = route.upstreams.iter().map(upstream_text).collect();
    let common = [
        route.name.clone(),
        host,
        route.path_prefix.clone(),
        methods,
        upstreams.join(","),
    ];
    let [name, host, prefix, methods, upstream] = common;
    let Some(auth) = &route.auth else {
        let dash = || "-".to_owned();
        return [
            name,
            host,
            prefix,
            methods,
            upstream,
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
            "public".to_owned(),
        ];
    };
    let issuer = config
        .issuers
        .get(auth.issuer)
        .map_or_else(|| "?".to_owned(), |issuer| issuer.name.clone());
    let mode = match auth.mode {
        Mode::Enforce => "enforce",
        Mode::Shadow => "shadow",
    };
    [
        name,
        host,
        prefix,
        methods,
        upstream,
        issuer,
        auth.audience.clone(),
        auth.allow.len().to_string(),
        auth.deny.len().to_string(),
        mode.to_owned(),
        "auth".to_owned(),
    ]
}

fn upstream_text(upstream: &UpstreamUrl) -> String {
    let scheme = if upstream.tls { "https" } else { "http" };
    if upstream.host.contains(':') {
        format!("{scheme}://[{}]:{}", upstream.host, upstream.port)
    } else {
        format!("{scheme}://{}:{}", upstream.host, upstream.port)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const CONFIG: &str = r#"
[[issuer]]
name = "github"
url = "https://token.actions.githubusercontent.com"

[[route]]
name = "deploy"
host = "deploy.internal.example"
path_prefix = "/v1/deploy"
methods = ["post"]
upstream = ["http://10.0.0.12:8080", "https://[::1]"]
audience = "https://deploy.internal.example"
mode = "shadow"

[[route.allow]]
repository_owner = "acme"
repository_owner_id = "1"

[[route.deny]]
runner_environment = "self-hosted"

[[route]]
name = "health"
path_prefix = "/healthz"
upstream = "http://127.0.0.1:8081"
auth = false
"#;

    #[test]
    fn routes_with_limits_get_a_line_after_the_table() {
        let text = r#"
[[issuer]]
name = "ci"
url = "https://ci.example"

[[route]]
name = "deploy"
upstream = "http://10.0.0.1"
audience = "a"
single_use = true

[[route.allow]]

[[route.limit]]
key = "check_run_id"
requests = 10
per = "1m"
"#;
        let config = crate::config::parse(text, std::path::Path::new("t.toml")).expect("valid");
        let out = summary(&config);
        assert!(
            out.contains("limits of deploy: check_run_id 10 per 60s; single_use"),
            "{out}"
        );
    }

    #[test]
    fn one_aligned_line_per_route() {
        let config = crate::config::parse(CONFIG, Path::new("conf/jobgate.toml"))
            .expect("test config is valid");
        let text = summary(&config);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "conf/jobgate.toml: 2 route(s), 1 issuer(s), 0 warning(s)"
        );
        assert!(lines[1].starts_with("ROUTE "), "{text}");
        assert!(lines[2].starts_with("deploy "), "{text}");
        assert!(lines[2].contains("deploy.internal.example"), "{text}");
        assert!(lines[2].contains("POST"), "{text}");
        assert!(
            lines[2].contains("http://10.0.0.12:8080,https://[::1]:443"),
            "{text}"
        );
        assert!(
            lines[2].contains("https://deploy.internal.example"),
            "{text}"
        );
        assert!(lines[2].contains("shadow"), "{text}");
        assert!(lines[3].starts_with("health "), "{text}");
        assert!(lines[3].ends_with("public"), "{text}");
        let column = |line: &str| line.find("/v1/deploy").or_else(|| line.find("/healthz"));
        assert_eq!(column(lines[2]), column(lines[3]), "columns align:\n{text}");
        assert_eq!(lines[1].find("PREFIX"), column(lines[2]), "{text}");
    }

    #[test]
    fn warnings_follow_with_file_line_and_column() {
        let text = CONFIG.replace("repository_owner_id = \"1\"\n", "");
        let config = crate::config::parse(&text, Path::new("jobgate.toml")).expect("valid");
        let out = summary(&config);
        let warning = out
            .lines()
            .find(|line| line.contains("warning:"))
            .expect("a name-only warning");
        assert!(
            warning.starts_with(
                "jobgate.toml:16:1: warning: rule deploy.allow[0] pins the owner by name only"
            ),
            "{out}"
        );
    }
}
