//! Loading a config: read the file, then parse → validate → compile, once per load.

use std::path::Path;

use super::compiled::Config;
use super::diagnostic::{ConfigError, Diagnostic};
use super::validate;

/// Reads, validates and compiles the config at `path`. Touches no network.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError {
        file: path.to_path_buf(),
        errors: vec![Diagnostic {
            line: 0,
            column: 0,
            message: format!("cannot read the config file: {error}"),
        }],
    })?;
    parse(&text, path)
}

/// Validates and compiles config text; `path` names the file in messages and anchors
/// relative paths.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    validate::compile(text, path)
}
