//! `[server]`, `[audit]` and `[revocation]`: listeners, TLS files, worker threads, the
//! client-connection limits, the admin token, the audit output and the revocation files.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::diagnostics::{Diagnostics, config_path, duration, positive_duration, warn_if_missing};
use crate::config::file::{AuditSection, ClusterSection, RevocationSection, ServerSection};
use crate::config::{
    AdminToken, AuditOutput, ClusterConfig, ServerConfig, TlsFiles, TrustedProxies,
};

pub(super) fn compile_server(
    section: &ServerSection,
    base: &Path,
    d: &mut Diagnostics,
) -> ServerConfig {
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
        max_connections: positive_count(d, "max_connections", section.max_connections.as_ref())
            .unwrap_or(10_000),
        // Zero would close every connection before its first byte.
        header_timeout: positive_duration(
            d,
            "header_timeout",
            section.header_timeout.as_ref(),
            Duration::from_secs(10),
        ),
        idle_timeout: positive_duration(
            d,
            "idle_timeout",
            section.idle_timeout.as_ref(),
            Duration::from_secs(60),
        ),
        token_cache_entries: positive_count(
            d,
            "token_cache_entries",
            section.token_cache_entries.as_ref(),
        )
        .unwrap_or(100_000),
        trusted_proxies: compile_trusted_proxies(section, d),
        admin_token: compile_admin_token(section, base, d),
    }
}

/// `admin_token_file`: one line, trimmed, read at every load so that a reload picks up a new
/// token. The token never appears in a message.
fn compile_admin_token(
    section: &ServerSection,
    base: &Path,
    d: &mut Diagnostics,
) -> Option<AdminToken> {
    let value = section.admin_token_file.as_ref()?;
    let path = config_path(d, "admin_token_file", value, base);
    if value.get_ref().trim().is_empty() {
        return None;
    }
    let token = match AdminToken::read_file(&path) {
        Ok(token) => token,
        Err(problem) => {
            d.error(
                &value.span(),
                format!(
                    "`admin_token_file` {}: {problem}; it must hold the admin API's bearer \
                     token on one line, e.g. made with `openssl rand -hex 32 > admin.token`",
                    path.display()
                ),
            );
            return None;
        }
    };
    if !is_loopback(&compile_admin_listen_addr(section)) {
        d.warn(
            &value.span(),
            "the admin API is enabled on an `admin_listen` address that is not loopback: the \
             admin listener has no TLS, so its bearer token crosses the network in clear text",
        );
    }
    Some(AdminToken::new(path, &token))
}

fn compile_admin_listen_addr(section: &ServerSection) -> Option<SocketAddr> {
    match &section.admin_listen {
        None => Some(SocketAddr::from(([127, 0, 0, 1], 9090))),
        Some(value) => value.get_ref().parse().ok(),
    }
}

fn is_loopback(addr: &Option<SocketAddr>) -> bool {
    addr.is_none_or(|addr| addr.ip().is_loopback())
}

/// Each entry a CIDR or one address; every bad entry is reported at its own place.
fn compile_trusted_proxies(section: &ServerSection, d: &mut Diagnostics) -> TrustedProxies {
    let Some(entries) = &section.trusted_proxies else {
        return TrustedProxies::default();
    };
    let mut good = Vec::new();
    for entry in entries.get_ref() {
        match TrustedProxies::parse([entry.get_ref().as_str()]) {
            Ok(_) => good.push(entry.get_ref().as_str()),
            Err(message) => d.error(&entry.span(), format!("`trusted_proxies`: {message}")),
        }
    }
    TrustedProxies::parse(good).unwrap_or_default()
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

pub(super) fn compile_audit(
    section: &AuditSection,
    base: &Path,
    d: &mut Diagnostics,
) -> AuditOutput {
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

pub(super) fn compile_revocation(
    section: Option<&RevocationSection>,
    base: &Path,
    d: &mut Diagnostics,
) -> Option<PathBuf> {
    let file = section?.file.as_ref()?;
    Some(config_path(d, "revocation file", file, base))
}

/// `[revocation] state_file`; its contents are read when `serve` starts, not here.
pub(super) fn compile_revocation_state_file(
    section: Option<&RevocationSection>,
    base: &Path,
    d: &mut Diagnostics,
) -> Option<PathBuf> {
    let file = section?.state_file.as_ref()?;
    let path = config_path(d, "state_file", file, base);
    if let Some(file_path) = section
        .and_then(|section| section.file.as_ref())
        .map(|file| base.join(file.get_ref()))
        .filter(|file_path| *file_path == path)
    {
        d.error(
            &file.span(),
            format!(
                "`state_file` {} is also the revocation `file`; give runtime entries a file of \
                 their own (jobgate rewrites it)",
                file_path.display()
            ),
        );
    }
    Some(path)
}

/// `[cluster]`. `redis://`, or `rediss://` (TLS, verified against the system's roots or
/// `SSL_CERT_FILE`). `#insecure`, redis's switch for skipping the hostname check, is
/// refused here rather than failing at every connection attempt.
pub(super) fn compile_cluster(
    section: &ClusterSection,
    d: &mut Diagnostics,
) -> Option<ClusterConfig> {
    let url = section.redis_url.get_ref();
    let parsed = (url.starts_with("redis://") || url.starts_with("rediss://"))
        .then(|| redis::Client::open(url.as_str()).ok())
        .flatten();
    let ok = match parsed {
        None => {
            d.error(
                &section.redis_url.span(),
                "`redis_url` must be a redis:// or rediss:// (TLS) URL, e.g. \
                 \"redis://127.0.0.1:6379/0\"",
            );
            false
        }
        Some(client)
            if matches!(
                client.get_connection_info().addr(),
                redis::ConnectionAddr::TcpTls { insecure: true, .. }
            ) =>
        {
            d.error(
                &section.redis_url.span(),
                "`redis_url`: #insecure (no hostname check) is not allowed; to trust a \
                 private CA, point SSL_CERT_FILE at a bundle that holds it",
            );
            false
        }
        Some(_) => true,
    };
    let key_prefix = section
        .key_prefix
        .as_ref()
        .map_or_else(|| "jobgate:".to_owned(), |prefix| prefix.get_ref().clone());
    let timeout = positive_duration(
        d,
        "timeout",
        section.timeout.as_ref(),
        Duration::from_millis(50),
    );
    ok.then(|| ClusterConfig {
        redis_url: url.clone(),
        key_prefix,
        timeout,
    })
}
