//! Calendar arithmetic for RFC 3339 timestamps (audit `ts`, revocation `until`), kept here
//! so that no date crate is needed for two conversions.
//!
//! A shared leaf at the bottom of the module order: `policy` (revocation), `proxy` (audit)
//! and `cli` read the clock, and it imports nothing of jobgate's.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day count since 1970-01-01 (`civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2026-11-26T01:54:21.123Z` for a time since the epoch.
pub fn format_rfc3339_millis(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let of_day = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        (of_day / 60) % 60,
        of_day % 60,
        since.subsec_millis()
    )
}

/// Unix seconds of a TOML datetime, which must be a full date-time with an offset (a time
/// without a zone would mean something different on every host).
pub fn toml_datetime_to_unix(value: &toml::value::Datetime) -> Result<i64, String> {
    let (Some(date), Some(time), Some(offset)) = (value.date, value.time, value.offset) else {
        return Err("needs a date, a time and a zone, e.g. 2026-12-31T00:00:00Z".to_owned());
    };
    let offset_minutes = match offset {
        toml::value::Offset::Z => 0,
        toml::value::Offset::Custom { minutes } => i64::from(minutes),
    };
    let days = days_from_civil(
        i64::from(date.year),
        u32::from(date.month),
        u32::from(date.day),
    );
    let seconds = i64::from(time.hour) * 3600
        + i64::from(time.minute) * 60
        + i64::from(time.second.unwrap_or(0));
    Ok(days * 86_400 + seconds - offset_minutes * 60)
}

/// Unix seconds of an RFC 3339 string such as `2026-12-31T00:00:00Z`.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let value: toml::value::Datetime = text
        .parse()
        .map_err(|_| format!("{text:?} is not an RFC 3339 date-time like 2026-12-31T00:00:00Z"))?;
    toml_datetime_to_unix(&value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_instants_round_trip() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2026-12-31T00:00:00Z"), Ok(1_798_675_200));
        assert_eq!(
            parse_rfc3339("2026-12-31T01:00:00+01:00"),
            Ok(1_798_675_200)
        );
        assert_eq!(parse_rfc3339("2000-02-29T12:00:00Z"), Ok(951_825_600));
        assert!(parse_rfc3339("2026-12-31").is_err());
        assert!(parse_rfc3339("2026-12-31T00:00:00").is_err());
        assert!(parse_rfc3339("yesterday").is_err());
        let t = UNIX_EPOCH + Duration::from_millis(1_798_675_200_123);
        assert_eq!(format_rfc3339_millis(t), "2026-12-31T00:00:00.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_825_600);
        assert_eq!(format_rfc3339_millis(leap), "2000-02-29T12:00:00.000Z");
    }
}
