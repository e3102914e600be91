//! Calendar dates and durations in days, without a date library.

use std::fmt;

use serde::Serialize;

/// A proleptic Gregorian date, stored as days since 1970-01-01.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub i64);

impl Date {
    /// Parses `YYYY-MM-DD`, rejecting impossible dates such as `2026-02-30`.
    pub fn parse(text: &str) -> Option<Date> {
        let mut parts = text.split('-');
        let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return None;
        }
        let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        Some(Date(days_from_civil(y, m, d)))
    }

    pub fn from_days(days: i64) -> Date {
        Date(days)
    }

    pub fn civil(self) -> (i64, u32, u32) {
        civil_from_days(self.0)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.civil();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's algorithms for the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses a duration such as `180d` or `12w` into days.
/// A duration in seconds: `30s`, `15m`, `1h`, `1d`, `2w`; at least a
/// minute (a feed read more often than that is hammered, not refreshed) and
/// at most a year.
pub fn parse_interval_secs(text: &str) -> Result<u64, &'static str> {
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or("a duration needs a unit: `s`, `m`, `h`, `d` or `w`")?;
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().map_err(|_| "the number is too large")?;
    let per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err("the unit must be `s`, `m`, `h`, `d` or `w`"),
    };
    let secs = n.checked_mul(per).ok_or("the number is too large")?;
    if secs < 60 {
        return Err("a refresh must be at least one minute");
    }
    if secs > 366 * 86_400 {
        return Err("a refresh must be at most a year");
    }
    Ok(secs)
}

pub fn parse_duration_days(text: &str) -> Result<u32, &'static str> {
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or("a duration needs a unit, `d` or `w`")?;
    let (num, unit) = text.split_at(split);
    let n: u32 = num.parse().map_err(|_| "the number is too large")?;
    let days = match unit {
        "d" => Some(n),
        "w" => n.checked_mul(7),
        _ => return Err("the unit must be `d` (days) or `w` (weeks)"),
    }
    .ok_or("the number is too large")?;
    if days == 0 {
        return Err("a duration must be longer than zero");
    }
    if days > 36_500 {
        return Err("a duration must be at most 100 years");
    }
    Ok(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_reject_impossible_days() {
        for s in ["1970-01-01", "2026-10-01", "2024-02-29", "2000-12-31"] {
            assert_eq!(Date::parse(s).unwrap().to_string(), s);
        }
        assert_eq!(Date::parse("1970-01-02").unwrap().0, 1);
        for bad in ["2026-02-29", "2026-13-01", "2026-00-10", "2026-1-01", "26-01-01", "2026-04-31"] {
            assert!(Date::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(Date::parse("2026-10-01").unwrap().0 - Date::parse("2026-04-04").unwrap().0, 180);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_days("180d"), Ok(180));
        assert_eq!(parse_duration_days("12w"), Ok(84));
        assert!(parse_duration_days("0d").is_err());
        assert!(parse_duration_days("10m").is_err());
        assert!(parse_duration_days("99999999999d").is_err());
    }
}
