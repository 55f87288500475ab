//! Where a config problem is: byte spans turned into line and column, errors and warnings
//! collected for one report, and the small checks every section shares (durations, file
//! paths, unique names).

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::config::Diagnostic;
use crate::config::duration::parse_duration;

/// Collects errors and warnings and turns byte spans into 1-based line and column (in
/// characters) numbers.
pub(super) struct Diagnostics<'a> {
    text: &'a str,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
}

impl<'a> Diagnostics<'a> {
    pub(super) fn new(text: &'a str) -> Diagnostics<'a> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        Diagnostics {
            text,
            line_starts,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        let line = self
            .line_starts
            .partition_point(|&start| start <= offset)
            .max(1);
        let start = self.line_starts[line - 1];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset.saturating_sub(start), |prefix| {
                prefix.chars().count()
            });
        (line, column + 1)
    }

    pub(super) fn line(&self, span: &Range<usize>) -> usize {
        self.position(span.start).0
    }

    pub(super) fn diagnostic(&self, span: &Range<usize>, message: String) -> Diagnostic {
        let (line, column) = self.position(span.start);
        Diagnostic {
            line,
            column,
            message,
        }
    }

    pub(super) fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let diagnostic = self.diagnostic(span, message.into());
        self.errors.push(diagnostic);
    }

    pub(super) fn warn(&mut self, span: &Range<usize>, message: impl Into<String>) {
        let diagnostic = self.diagnostic(span, message.into());
        self.warnings.push(diagnostic);
    }

    /// The warnings when there was no error, else the errors; either sorted by position.
    pub(super) fn finish(self) -> Result<Vec<Diagnostic>, Vec<Diagnostic>> {
        let by_position = |list: &mut Vec<Diagnostic>| list.sort_by_key(|d| (d.line, d.column));
        let (mut errors, mut warnings) = (self.errors, self.warnings);
        if errors.is_empty() {
            by_position(&mut warnings);
            Ok(warnings)
        } else {
            by_position(&mut errors);
            Err(errors)
        }
    }
}

/// A duration key, or its default when absent (or invalid: the error is recorded).
pub(super) fn duration(
    d: &mut Diagnostics,
    key: &str,
    value: Option<&Spanned<String>>,
    default: Duration,
) -> Duration {
    let Some(value) = value else {
        return default;
    };
    parse_duration(value.get_ref()).unwrap_or_else(|message| {
        d.error(&value.span(), format!("`{key}`: {message}"));
        default
    })
}

/// A duration that must not be zero (a zero interval would spin or refuse everything).
pub(super) fn positive_duration(
    d: &mut Diagnostics,
    key: &str,
    value: Option<&Spanned<String>>,
    default: Duration,
) -> Duration {
    let parsed = duration(d, key, value, default);
    if let Some(value) = value.filter(|_| parsed.is_zero()) {
        d.error(
            &value.span(),
            format!("`{key}` must be longer than zero, e.g. \"30s\""),
        );
        return default;
    }
    parsed
}

/// A path from the config, resolved against the config file's directory.
pub(super) fn config_path(
    d: &mut Diagnostics,
    key: &str,
    value: &Spanned<String>,
    base: &Path,
) -> PathBuf {
    if value.get_ref().trim().is_empty() {
        d.error(&value.span(), format!("`{key}` is empty; give a file path"));
    }
    base.join(value.get_ref())
}

/// Warns when a file `serve` will need at start-up is missing: `check` should not pass a
/// config that cannot start, but the file may legitimately be created later (by a secret
/// mount, say), so this is not an error.
pub(super) fn warn_if_missing(
    d: &mut Diagnostics,
    key: &str,
    value: &Spanned<String>,
    path: &Path,
) {
    if !value.get_ref().trim().is_empty() && !path.exists() {
        d.warn(
            &value.span(),
            format!(
                "`{key}` file {} does not exist; serve will fail to start until it does",
                path.display()
            ),
        );
    }
}

/// `[[issuer]]` and `[[route]]` names: present and unique, each duplicate pointing at the
/// line of the first use.
pub(super) fn check_unique_names<'a>(
    names: impl Iterator<Item = &'a Spanned<String>>,
    table: &str,
    example: &str,
    d: &mut Diagnostics,
) {
    let mut first_line: HashMap<&str, usize> = HashMap::new();
    for name in names {
        if name.get_ref().is_empty() {
            d.error(
                &name.span(),
                format!("{table} `name` is empty; give it a short unique name, e.g. \"{example}\""),
            );
        } else if let Some(line) = first_line.get(name.get_ref().as_str()) {
            d.error(
                &name.span(),
                format!(
                    "duplicate {table} name \"{}\" (first used on line {line}); give each \
                     [[{table}]] a unique name",
                    name.get_ref()
                ),
            );
        } else {
            first_line.insert(name.get_ref(), d.line(&name.span()));
        }
    }
}
