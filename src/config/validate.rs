//! Validation and compilation of a parsed config file.

use std::path::Path;

use super::{Config, ConfigError};

pub fn compile(_text: &str, _path: &Path) -> Result<Config, ConfigError> {
    todo!("config validation")
}
