//! Validation of whole config texts: every error and warning SPEC §2 names, at its line.

use std::path::Path;
use std::time::Duration;

use http::Method;
use jsonwebtoken::Algorithm;

use super::*;
use crate::config::{AuditOutput, Diagnostic, HostMatch, IssuerKind, Mode, TlsFiles, UpstreamUrl};

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
    let text =
        format!("{BASE}\n[[route]]\nname = \"deploy\"\nupstream = \"http://x\"\nauth = false\n");
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
fn trusted_proxies_must_be_addresses_or_cidrs() {
    let good = format!(
        "{BASE}\n[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\"]\n"
    );
    let proxies = config(&good).server.trusted_proxies;
    assert!(proxies.contains("10.200.1.1".parse().expect("address")));
    assert!(proxies.contains("192.0.2.7".parse().expect("address")));
    assert!(!proxies.contains("192.0.2.8".parse().expect("address")));
    assert!(config(BASE).server.trusted_proxies.is_empty());
    let bad = format!(
        "{BASE}\n[server]\ntrusted_proxies = [\n  \"10.0.0.0/8\",\n  \"lb.internal\",\n]\n"
    );
    assert_error(
        &bad,
        17,
        "`trusted_proxies`: `lb.internal` is not an IP address or a CIDR",
    );
    let prefix = format!("{BASE}\n[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n");
    assert_error(&prefix, 15, "`10.0.0.0/33`");
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
    let glob_with_owner_id = BASE.replace("repository_owner = \"acme\"", "repository = \"acme/*\"");
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
    assert_eq!(config.server.max_connections, 10_000);
    assert_eq!(config.server.header_timeout, Duration::from_secs(10));
    assert_eq!(config.server.idle_timeout, Duration::from_secs(60));
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
max_connections = 64
header_timeout = "2s"
idle_timeout = "5m"
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
    assert_eq!(server.max_connections, 64);
    assert_eq!(server.header_timeout, Duration::from_secs(2));
    assert_eq!(server.idle_timeout, Duration::from_secs(300));
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
    assert_eq!(lines, vec![4, 5, 30, 35], "{:#?}", config.warnings);
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
fn connection_limits_are_checked() {
    let cases = [
        (
            "max_connections = 0",
            "`max_connections` must be a positive number",
        ),
        (
            "header_timeout = \"0s\"",
            "`header_timeout` must be longer than zero",
        ),
        ("header_timeout = \"10\"", "`header_timeout`: duration"),
        ("idle_timeout = \"1m30s\"", "`idle_timeout`: duration"),
        (
            "idle_timeout = \"0ms\"",
            "`idle_timeout` must be longer than zero",
        ),
    ];
    for (line, needle) in cases {
        assert_error(&format!("{BASE}\n[server]\n{line}\n"), 15, needle);
    }
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
    let add = |line: &str| BASE.replace("name = \"github\"", &format!("name = \"github\"\n{line}"));
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
    let keys = "[[route]]\nname = \"r\"\nupstream = \"http://x\"\nauth = false\naudience = \"a\"\n";
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
    let not_shadowed =
        format!("{narrower}\n[[route]]\nname = \"later\"\nupstream = \"http://y\"\nauth = false\n");
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

#[test]
fn route_limits_compile_and_bad_ones_are_refused_at_their_line() {
    let limits = format!(
        "{BASE}\n[[route.limit]]\nkey = \"check_run_id\"\nrequests = 10\nper = \"1m\"\n\n\
         [[route.limit]]\nkey = \"client_ip\"\nrequests = 50\nper = \"1s\"\n"
    );
    let route = &config(&limits).routes[0];
    assert_eq!(
        route.limits,
        vec![
            crate::config::RouteLimit {
                key: crate::config::LimitKey::Claim("check_run_id".into()),
                requests: 10,
                per: Duration::from_secs(60),
            },
            crate::config::RouteLimit {
                key: crate::config::LimitKey::ClientIp,
                requests: 50,
                per: Duration::from_secs(1),
            },
        ]
    );
    let zero = format!("{BASE}\n[[route.limit]]\nkey = \"run_id\"\nrequests = 0\nper = \"1m\"\n");
    assert_error(&zero, 16, "`requests` must be a whole number from 1");
    let short =
        format!("{BASE}\n[[route.limit]]\nkey = \"run_id\"\nrequests = 5\nper = \"500ms\"\n");
    assert_error(&short, 17, "`per` must be at least 1s");
    let typo = format!("{BASE}\n[[route.limit]]\nkey = \"run_id\"\nrequest = 5\nper = \"1m\"\n");
    assert!(!errors(&typo).is_empty());
    let public = "[[route]]\nname = \"open\"\nupstream = \"http://10.0.0.1\"\nauth = false\n\n\
                  [[route.limit]]\nkey = \"repository\"\nrequests = 5\nper = \"1m\"\n";
    assert_error(
        public,
        7,
        "is public (auth = false), so it has no claims to count by",
    );
    let public_ip = public.replace("\"repository\"", "\"client_ip\"");
    assert_eq!(config(&public_ip).routes[0].limits.len(), 1);
}

#[test]
fn single_use_is_for_authenticated_routes_only() {
    let single = BASE.replace("audience =", "single_use = true\naudience =");
    assert!(config(&single).routes[0].single_use);
    assert!(!config(BASE).routes[0].single_use);
    let public = "[[route]]\nname = \"open\"\nupstream = \"http://10.0.0.1\"\nauth = false\nsingle_use = true\n";
    assert_error(
        public,
        5,
        "is public (auth = false): it has no token to admit once",
    );
}

/// `compile` relative to `dir`, which holds the token files.
fn compile_in(dir: &Path, text: &str) -> Result<Config, Vec<Diagnostic>> {
    compile(text, &dir.join("jobgate.toml")).map_err(|error| error.errors)
}

#[test]
fn admin_token_file_is_read_trimmed_and_never_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("admin.token"), "  s3cret-token \n").expect("write");
    let text = format!("[server]\nadmin_token_file = \"admin.token\"\n{BASE}");
    let config = compile_in(dir.path(), &text).expect("valid");
    let token = config.server.admin_token.as_ref().expect("token read");
    assert_eq!(token.path, dir.path().join("admin.token"));
    assert!(token.accepts(b"s3cret-token"));
    assert!(!token.accepts(b"s3cret-token "));
    assert!(!token.accepts(b"s3cret-toke"));
    assert!(!token.accepts(b""));
    assert!(!format!("{config:?}").contains("s3cret"));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert_eq!(self::config(BASE).server.admin_token, None);
}

#[test]
fn unusable_admin_token_files_are_refused_at_their_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("empty.token"), "").expect("write");
    std::fs::write(dir.path().join("blank.token"), " \n\t\n").expect("write");
    std::fs::write(dir.path().join("two.token"), "one\ntwo\n").expect("write");
    for (file, needle) in [
        ("missing.token", "cannot be read"),
        ("empty.token", "is empty"),
        ("blank.token", "is empty"),
        ("two.token", "more than one line"),
        (".", "cannot be read"),
    ] {
        let text = format!("[server]\nadmin_token_file = \"{file}\"\n{BASE}");
        let errors = compile_in(dir.path(), &text).expect_err(file);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, 2, "{errors:?}");
        assert!(errors[0].message.contains("admin_token_file"), "{errors:?}");
        assert!(errors[0].message.contains(needle), "{file}: {errors:?}");
        assert!(!errors[0].message.contains("one\ntwo"), "{errors:?}");
    }
}

#[test]
fn admin_token_on_a_non_loopback_admin_listener_is_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("admin.token"), "t\n").expect("write");
    let text = format!(
        "[server]\nadmin_listen = \"0.0.0.0:9090\"\nadmin_token_file = \"admin.token\"\n{BASE}"
    );
    let config = compile_in(dir.path(), &text).expect("valid");
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert_eq!(config.warnings[0].line, 3);
    assert!(config.warnings[0].message.contains("clear text"));
}

#[test]
fn revocation_state_file_is_a_path_of_its_own() {
    let config = config(&format!(
        "{BASE}\n[revocation]\nfile = \"revoked.toml\"\nstate_file = \"state/runtime.toml\"\n"
    ));
    assert_eq!(
        config.revocation_state_file,
        Some("/etc/jobgate/state/runtime.toml".into())
    );
    assert_eq!(self::config(BASE).revocation_state_file, None);
    // Lines 1-12 are BASE, line 13 is blank.
    assert_error(
        &format!("{BASE}\n[revocation]\nfile = \"r.toml\"\nstate_file = \"r.toml\"\n"),
        16,
        "also the revocation `file`",
    );
    assert_error(
        &format!("{BASE}\n[revocation]\nstate_file = \" \"\n"),
        15,
        "`state_file` is empty",
    );
}

#[test]
fn cluster_section_defaults_and_refusals() {
    let base = "[[route]]\nname = \"p\"\nupstream = \"http://127.0.0.1:8081\"\nauth = false\n";
    let config = compile(
        &format!("{base}[cluster]\nredis_url = \"redis://127.0.0.1:6379/0\"\n"),
        Path::new("/etc/jobgate/jobgate.toml"),
    )
    .expect("valid [cluster]");
    let cluster = config.cluster.expect("cluster");
    assert_eq!(cluster.key_prefix, "jobgate:");
    assert_eq!(cluster.timeout, Duration::from_millis(50));
    assert!(
        !format!("{cluster:?}").contains("6379"),
        "the URL may hold a password"
    );
    let both = compile(
        &format!(
            "{base}[revocation]\nstate_file = \"runtime.toml\"\n\
             [cluster]\nredis_url = \"redis://127.0.0.1:6379/0\"\n"
        ),
        Path::new("/etc/jobgate/jobgate.toml"),
    )
    .expect("a warning, not an error");
    assert!(
        both.warnings
            .iter()
            .any(|warning| warning.message.contains("not used with `[cluster]`")),
        "{:?}",
        both.warnings
    );
    let tls = compile(
        &format!("{base}[cluster]\nredis_url = \"rediss://:s3cret@redis.internal:6380/0\"\n"),
        Path::new("/etc/jobgate/jobgate.toml"),
    )
    .expect("rediss:// is TLS to Redis")
    .cluster
    .expect("cluster");
    assert_eq!(tls.redis_url, "rediss://:s3cret@redis.internal:6380/0");
    let printed = format!("{tls:?}");
    assert!(
        !printed.contains("s3cret") && !printed.contains("redis.internal"),
        "{printed}"
    );
    for (section, wanted) in [
        (
            "redis_url = \"http://127.0.0.1:6379\"",
            "redis:// or rediss://",
        ),
        (
            "redis_url = \"unix:///run/redis.sock\"",
            "redis:// or rediss://",
        ),
        (
            "redis_url = \"valkeys://127.0.0.1:6379\"",
            "redis:// or rediss://",
        ),
        ("redis_url = \"rediss://\"", "redis:// or rediss://"),
        (
            "redis_url = \"rediss://127.0.0.1:6379/#other\"",
            "redis:// or rediss://",
        ),
        (
            "redis_url = \"rediss://127.0.0.1:6379/0#insecure\"",
            "#insecure",
        ),
        (
            "redis_url = \"redis://127.0.0.1\"\ntimeout = \"0s\"",
            "timeout",
        ),
        ("key_prefix = \"x\"", "redis_url"),
    ] {
        let error = compile(
            &format!("{base}[cluster]\n{section}\n"),
            Path::new("/etc/jobgate/jobgate.toml"),
        )
        .expect_err(section);
        assert!(error.to_string().contains(wanted), "{section}: {error}");
    }
}
