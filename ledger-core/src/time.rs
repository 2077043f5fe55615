//! Wall-clock instants as people read them. Pure arithmetic: nothing here reads a clock.

/// Milliseconds since the Unix epoch as RFC 3339 in UTC with milliseconds (`1970-01-01T00:00:00.000Z`).
/// Years above 9999 are written with more digits, as the proleptic Gregorian calendar continues.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar: Howard Hinnant's
/// `civil_from_days`, for non-negative day counts (eras of 146,097 days, March-based years).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        // The localnet's genesis time.
        assert_eq!(rfc3339_ms(1_767_225_600_000), "2026-01-01T00:00:00.000Z");
        // The example, and a leap day and the end of a leap year.
        assert_eq!(rfc3339_ms(1_796_120_833_594), "2026-12-01T10:27:13.594Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(978_307_199_999), "2000-12-31T23:59:59.999Z");
        assert_eq!(rfc3339_ms(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        // The largest input does not overflow.
        assert!(rfc3339_ms(u64::MAX).ends_with(".615Z"));
    }

    /// Every day of 1970..2500 against a day-by-day count.
    #[test]
    fn civil_from_days_walks_the_calendar() {
        let (mut y, mut m, mut d) = (1970u64, 1u64, 1u64);
        for days in 0..(530 * 366) {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][(m - 1) as usize];
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }
}
