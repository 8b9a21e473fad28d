//! RFC 3339 time stamps (UTC) for decision logs and audit reports, without a date library:
//! the filter only ever needs to print a few instants.

use std::time::{SystemTime, UNIX_EPOCH};

const SECS_PER_DAY: i64 = 86_400;

/// Nanoseconds since the Unix epoch (negative before it).
pub(crate) fn unix_nanos(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => -i128::try_from(before.duration().as_nanos()).unwrap_or(i128::MAX),
    }
}

/// Whole seconds since the Unix epoch (floored) and the nanoseconds past that second. Every
/// request compares the time with whole-second X.509 times: in these parts, without the 128-bit
/// multiplications and divisions of `unix_nanos`, which are library calls in wasm32.
fn unix_parts(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => (
            i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
            after.subsec_nanos(),
        ),
        Err(before) => {
            let before = before.duration();
            let secs = i64::try_from(before.as_secs()).map_or(i64::MIN, |s| -s);
            match before.subsec_nanos() {
                0 => (secs, 0),
                nanos => (secs.saturating_sub(1), 1_000_000_000 - nanos),
            }
        }
    }
}

/// Whole seconds since the Unix epoch (floored), for coarse bookkeeping such as cache expiry.
pub fn unix_seconds(t: SystemTime) -> i64 {
    unix_parts(t).0
}

/// `t` is later than the start of the whole second `second` (X.509 times are whole seconds,
/// `t` is not: 5 ms past notAfter is after it).
pub(crate) fn is_after_second(t: SystemTime, second: i64) -> bool {
    let (secs, nanos) = unix_parts(t);
    secs > second || (secs == second && nanos > 0)
}

/// `t` is earlier than the start of the whole second `second`.
pub(crate) fn is_before_second(t: SystemTime, second: i64) -> bool {
    unix_parts(t).0 < second
}

/// `2026-11-27T19:56:05.123Z`: an instant with millisecond precision, as decision logs write it.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let nanos = unix_nanos(t);
    let millis = i64::try_from(nanos.div_euclid(1_000_000)).unwrap_or(i64::MAX);
    let secs = millis.div_euclid(1000);
    let (date, time) = date_time(secs);
    format!("{date}T{time}.{:03}Z", millis.rem_euclid(1000))
}

/// `2026-11-27T19:56:05Z`: whole seconds since the Unix epoch, as certificates carry them.
pub fn rfc3339_seconds(secs: i64) -> String {
    let (date, time) = date_time(secs);
    format!("{date}T{time}Z")
}

fn date_time(secs: i64) -> (String, String) {
    let days = secs.div_euclid(SECS_PER_DAY);
    let of_day = secs.rem_euclid(SECS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    (
        format!("{year:04}-{month:02}-{day:02}"),
        format!(
            "{:02}:{:02}:{:02}",
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60
        ),
    )
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days.saturating_add(719_468);
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// The whole-second comparisons agree with exact nanosecond arithmetic, on both sides of
    /// the epoch and of each second's start.
    #[test]
    fn second_comparisons_match_nanosecond_arithmetic() {
        let nanos = [0, 1, 5_000_000, 999_999_999];
        let mut instants = Vec::new();
        for secs in [0u64, 1, 2, 1_795_809_365] {
            for n in nanos {
                let d = Duration::new(secs, n);
                instants.push(UNIX_EPOCH + d);
                instants.push(UNIX_EPOCH - d);
            }
        }
        for t in instants {
            let exact = unix_nanos(t);
            assert_eq!(
                i128::from(unix_seconds(t)),
                exact.div_euclid(1_000_000_000),
                "{t:?}"
            );
            for second in [
                -1_795_809_366,
                -3,
                -2,
                -1,
                0,
                1,
                2,
                1_795_809_365,
                1_795_809_366,
            ] {
                let start = i128::from(second) * 1_000_000_000;
                assert_eq!(is_after_second(t, second), exact > start, "{t:?} {second}");
                assert_eq!(is_before_second(t, second), exact < start, "{t:?} {second}");
            }
        }
    }

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339_seconds(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_seconds(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_seconds(253_402_300_799), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339_seconds(-1), "1969-12-31T23:59:59Z");
        assert_eq!(
            rfc3339_millis(UNIX_EPOCH + Duration::from_millis(1_795_809_365_123)),
            "2026-11-27T19:56:05.123Z"
        );
    }

    #[test]
    fn agrees_with_the_time_crate_over_four_centuries() {
        let format = time::format_description::well_known::Rfc3339;
        // Every 9 days and 7 hours from 1900 to 2300: leap years, centuries and month ends.
        let mut secs = -2_208_988_800_i64;
        while secs < 10_413_792_000 {
            let expected = time::OffsetDateTime::from_unix_timestamp(secs)
                .unwrap()
                .format(&format)
                .unwrap();
            assert_eq!(rfc3339_seconds(secs), expected, "{secs}");
            secs += 9 * SECS_PER_DAY + 7 * 3600 + 13;
        }
    }
}
