//! A problem found in a config file, at its line and column: one [`Diagnostic`] per finding
//! (errors and warnings alike), and the [`ConfigError`] that refuses a config with all of its
//! errors at once.

use std::fmt;
use std::path::PathBuf;

/// A message tied to a place in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

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
