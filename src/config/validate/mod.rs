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

mod diagnostics;
mod issuer;
mod limits;
mod route;
mod rules;
mod server;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use crate::config::file::ConfigFile;
use crate::config::{Config, ConfigError, Diagnostic};
use diagnostics::Diagnostics;
use issuer::compile_issuers;
use route::compile_routes;
use server::{compile_audit, compile_revocation, compile_revocation_state_file, compile_server};

pub use issuer::DEFAULT_GITHUB_HEADERS;

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
    let revocation_state_file =
        compile_revocation_state_file(file.revocation.as_ref(), base, &mut diagnostics);
    let cluster = file
        .cluster
        .as_ref()
        .and_then(|section| server::compile_cluster(section, &mut diagnostics));
    let ignored_state_file = file
        .revocation
        .as_ref()
        .and_then(|section| section.state_file.as_ref())
        .filter(|_| file.cluster.is_some());
    if let Some(state_file) = ignored_state_file {
        diagnostics.warn(
            &state_file.span(),
            "`state_file` is not used with `[cluster]`: runtime revocations live in Redis; \
             remove it, or keep lasting entries in the revocation `file`",
        );
    }
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
        revocation_state_file,
        cluster,
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
