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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::load;

    /// Every shipped config (`config/*.toml`, recursively) must validate. Revocation lists
    /// (top-level `[[revoke]]` only) share the directory but are another format: skipped.
    #[test]
    fn shipped_configs_are_valid() {
        let root = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config"));
        let mut pending = vec![root.to_path_buf()];
        let mut checked = 0;
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                    continue;
                }
                if path.extension().is_none_or(|ext| ext != "toml") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).expect("shipped config is readable");
                let is_revocation_list = toml::from_str::<toml::Table>(&text)
                    .is_ok_and(|table| table.keys().all(|key| key == "revoke"));
                if is_revocation_list {
                    continue;
                }
                if let Err(error) = load(&path) {
                    panic!("{error}");
                }
                checked += 1;
            }
        }
        eprintln!("validated {checked} shipped config(s)");
    }
}
