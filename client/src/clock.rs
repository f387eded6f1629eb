//! Time on the command line: now, RFC 3339 and date parsing, `13mo`-style durations, printing.
//! Times inside entries are integer milliseconds since the Unix epoch.

use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

use crate::error::{Error, Result};

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn to_ms(t: OffsetDateTime) -> Result<u64> {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| {
        let shown = t.format(&Rfc3339).unwrap_or_else(|_| t.to_string());
        Error::Usage(format!(
            "{shown} is before 1970-01-01T00:00:00Z, the earliest time an entry can carry"
        ))
    })
}

fn from_ms(ms: u64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

/// Parses an RFC 3339 time (`2027-06-01T00:00:00Z`) or a date (`2027-06-01`, midnight UTC).
///
/// # Errors
/// [`Error::Usage`].
pub fn parse_time(s: &str) -> Result<u64> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return to_ms(t);
    }
    if let Some(d) = parse_date(s) {
        return to_ms(PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_utc());
    }
    Err(Error::Usage(format!(
        "{s:?} is neither an RFC 3339 time (2027-06-01T00:00:00Z) nor a date (2027-06-01)"
    )))
}

fn parse_date(s: &str) -> Option<Date> {
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = Month::try_from(m.parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()
}

/// Adds a duration such as `30d`, `2w`, `13mo`, `1y` or `12h` to `from` (ms). Months and years
/// are calendar months and years (the day is clamped to the month's length).
///
/// # Errors
/// [`Error::Usage`] for another syntax or a result out of range.
pub fn add_duration(from: u64, s: &str) -> Result<u64> {
    let bad = || {
        Error::Usage(format!(
            "{s:?} is not a duration: use a number and a unit h, d, w, mo or y (e.g. 13mo)"
        ))
    };
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (n, unit) = s.split_at(digits);
    let n: u32 = n.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(bad());
    }
    let start = from_ms(from).ok_or_else(bad)?;
    let end = match unit {
        "h" => start + time::Duration::hours(i64::from(n)),
        "d" => start + time::Duration::days(i64::from(n)),
        "w" => start + time::Duration::weeks(i64::from(n)),
        "mo" => add_months(start, n).ok_or_else(bad)?,
        "y" => add_months(start, n.checked_mul(12).ok_or_else(bad)?).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    to_ms(end)
}

fn add_months(t: OffsetDateTime, n: u32) -> Option<OffsetDateTime> {
    let months = i64::from(t.year()) * 12 + i64::from(u8::from(t.month())) - 1 + i64::from(n);
    let year = i32::try_from(months.div_euclid(12)).ok()?;
    let month = Month::try_from(u8::try_from(months.rem_euclid(12) + 1).ok()?).ok()?;
    let day = t.day().min(month.length(year));
    let date = Date::from_calendar_date(year, month, day).ok()?;
    Some(t.replace_date(date))
}

/// RFC 3339 in UTC with millisecond precision when needed, e.g. `2026-05-01T12:00:00.250Z`.
pub fn format_ms(ms: u64) -> String {
    match from_ms(ms).and_then(|t| t.format(&Rfc3339).ok()) {
        Some(s) => s,
        None => format!("{ms} ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_times_and_durations() {
        let d = parse_time("2027-06-01").expect("date");
        assert_eq!(d, parse_time("2027-06-01T00:00:00Z").expect("rfc3339"));
        assert_eq!(format_ms(d), "2027-06-01T00:00:00Z");
        assert!(parse_time("tomorrow").is_err());
        let jan31 = parse_time("2026-01-31T10:00:00Z").expect("t");
        assert_eq!(
            format_ms(add_duration(jan31, "1mo").expect("1mo")),
            "2026-02-28T10:00:00Z"
        );
        assert_eq!(
            format_ms(add_duration(jan31, "13mo").expect("13mo")),
            "2027-02-28T10:00:00Z"
        );
        assert_eq!(
            format_ms(add_duration(jan31, "1y").expect("1y")),
            "2027-01-31T10:00:00Z"
        );
        assert_eq!(
            add_duration(jan31, "2d").expect("2d"),
            jan31 + 2 * 86_400_000
        );
        for bad in ["", "mo", "0d", "5", "3 days", "-1d"] {
            assert!(add_duration(jan31, bad).is_err(), "{bad}");
        }
    }
}
