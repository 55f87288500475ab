//! Configuration: the TOML file (`file`), its validation (`validate`) and the compiled form
//! the gateway runs on (`compiled`). Parse → validate → compile happens once per load.

pub mod compiled;
pub mod duration;
pub mod file;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use compiled::*;

/// The public GitHub Actions issuer: it signs tokens for every repository on github.com.
pub const PUBLIC_GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";

/// Why a config was refused: every problem found, each with its place in the file.
#[derive(Debug)]
pub struct ConfigError {
    pub file: PathBuf,
    pub errors: Vec<Diagnostic>,
}

impl fmt::Display for ConfigError {
    /// One line per error: `FILE:LINE:COLUMN: error: MESSAGE` (line 0 when the file could
    /// not be read at all).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: error: {}",
                self.file.display(),
                error.line,
                error.column,
                error.message
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

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
