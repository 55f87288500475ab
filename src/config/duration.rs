//! Durations as SPEC §2 writes them: one integer and one unit (`500ms`, `30s`, `10m`, `24h`,
//! `7d`).
//!
//! The format is deliberately narrow (no compound `1h30m`, no fractions, no spaces) so that a
//! value reads the same to every operator and a typo is refused instead of guessed at.

use std::time::Duration;

/// What every duration error ends with, so the operator sees the accepted form.
const HINT: &str = "use one integer and one unit, e.g. \"30s\"; units ms, s, m, h, d";

/// Parses `"500ms"`, `"30s"`, `"10m"`, `"24h"` or `"7d"`.
///
/// The error is a complete sentence for a config diagnostic: what is wrong and the form to use.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        let why = if text.is_empty() {
            "is empty".to_owned()
        } else if text.starts_with('-') {
            "is negative".to_owned()
        } else {
            "does not start with a number".to_owned()
        };
        return Err(format!("duration \"{text}\" {why}; {HINT}"));
    }
    let seconds_per_unit: Option<u64> = match unit {
        "ms" => None,
        "s" => Some(1),
        "m" => Some(60),
        "h" => Some(3600),
        "d" => Some(86_400),
        "" => return Err(format!("duration \"{text}\" has no unit; {HINT}")),
        _ => return Err(unit_error(text, unit)),
    };
    let too_large = || format!("duration \"{text}\" is too large; {HINT}");
    let value: u64 = number.parse().map_err(|_| too_large())?;
    match seconds_per_unit {
        None => Ok(Duration::from_millis(value)),
        Some(factor) => value
            .checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(too_large),
    }
}

/// Names the problem with the text after the number: a compound value, a fraction, a space
/// or an unknown unit each get their own explanation.
fn unit_error(text: &str, unit: &str) -> String {
    let why = if unit.starts_with('.') {
        "has a fraction (use a smaller unit instead, e.g. \"1500ms\")".to_owned()
    } else if unit.starts_with(char::is_whitespace) || unit.ends_with(char::is_whitespace) {
        "contains a space".to_owned()
    } else if unit.chars().any(|c| c.is_ascii_digit()) {
        "is compound (only one number and one unit are allowed)".to_owned()
    } else {
        format!("has an unknown unit \"{unit}\"")
    };
    format!("duration \"{text}\" {why}; {HINT}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_missing_unit() {
        let error = parse_duration("30").expect_err("no unit");
        assert!(error.contains("has no unit"), "{error}");
        assert!(error.contains("units ms, s, m, h, d"), "{error}");
    }

    #[test]
    fn refuses_compound_and_fractions() {
        let error = parse_duration("1h30m").expect_err("compound");
        assert!(error.contains("compound"), "{error}");
        let error = parse_duration("1.5s").expect_err("fraction");
        assert!(error.contains("fraction"), "{error}");
    }

    #[test]
    fn refuses_negative_empty_and_spaces() {
        assert!(
            parse_duration("-5s")
                .expect_err("negative")
                .contains("negative")
        );
        assert!(parse_duration("").expect_err("empty").contains("empty"));
        assert!(parse_duration("30 s").expect_err("space").contains("space"));
        assert!(parse_duration(" 30s").is_err());
        assert!(parse_duration("+30s").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn refuses_unknown_units() {
        let error = parse_duration("30sec").expect_err("unknown unit");
        assert!(error.contains("unknown unit \"sec\""), "{error}");
        assert!(error.contains("e.g. \"30s\""), "{error}");
        assert!(parse_duration("30S").is_err());
        assert!(parse_duration("1w").is_err());
    }

    #[test]
    fn refuses_overflow_without_panicking() {
        assert!(
            parse_duration("99999999999999999999s")
                .expect_err("too large")
                .contains("too large")
        );
        assert!(parse_duration("18446744073709551615d").is_err());
    }
}
