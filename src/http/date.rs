//! HTTP dates (RFC 9110 5.6.7): parses the three accepted forms into unix
//! seconds and writes IMF-fixdate. Works on borrowed bytes, never allocates.

use std::time::{SystemTime, UNIX_EPOCH};

const SECS_PER_DAY: u64 = 86_400;
pub const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];
/// Index 0 is Thursday because 1970-01-01 was one.
const WEEKDAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
const LONG_WEEKDAYS: [&[u8]; 7] = [
    b"Monday",
    b"Tuesday",
    b"Wednesday",
    b"Thursday",
    b"Friday",
    b"Saturday",
    b"Sunday",
];
/// IMF-fixdate has four digits for the year; later instants are written
/// as the last second of 9999 rather than as an invalid date.
const LAST_WRITABLE: u64 = 253_402_300_799;

/// Parses an HTTP-date into unix seconds. Dates before 1970 become 0: they
/// are valid, and every caller only asks whether they lie in the past.
pub fn parse_http_date(v: &[u8]) -> Option<u64> {
    parse_http_date_at(v, current_year)
}

/// Like [`parse_http_date`], with the year used to place RFC 850's
/// two-digit years given by the caller (tests pin it).
pub fn parse_http_date_at(v: &[u8], this_year: impl FnOnce() -> u64) -> Option<u64> {
    let v = crate::http::fields::trim_ows(v);
    let civil = match v.get(3)? {
        b',' => imf_fixdate(v)?,
        b' ' => asctime(v)?,
        _ => rfc850(v, this_year())?,
    };
    civil.to_unix()
}

/// Appends `secs` as an IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn write_http_date(secs: u64, out: &mut Vec<u8>) {
    let secs = secs.min(LAST_WRITABLE);
    let days = secs / SECS_PER_DAY;
    // `secs` is at most LAST_WRITABLE, so the days fit an i64 and the
    // year is between 1970 and 9999.
    let (year, month, day) = civil_from_days(days as i64);
    let (year, month, day) = (year as u64, month as usize, u64::from(day));
    let in_day = secs % SECS_PER_DAY;
    out.extend_from_slice(WEEKDAYS[(days % 7) as usize]);
    out.extend_from_slice(b", ");
    push_2(out, day);
    out.push(b' ');
    out.extend_from_slice(MONTHS[month - 1]);
    out.push(b' ');
    push_2(out, year / 100);
    push_2(out, year % 100);
    out.push(b' ');
    push_2(out, in_day / 3600);
    out.push(b':');
    push_2(out, in_day / 60 % 60);
    out.push(b':');
    push_2(out, in_day % 60);
    out.extend_from_slice(b" GMT");
}

fn push_2(out: &mut Vec<u8>, n: u64) {
    out.push(b'0' + (n / 10 % 10) as u8);
    out.push(b'0' + (n % 10) as u8);
}

/// A calendar date and time of day, checked only when converted.
struct Civil {
    year: u64,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

impl Civil {
    fn to_unix(&self) -> Option<u64> {
        let valid = (1..=12).contains(&self.month)
            && self.day >= 1
            && self.day <= days_in_month(self.year, self.month)
            && self.hour < 24
            && self.minute < 60
            // 60 is a leap second (RFC 9110 5.6.7); it counts as the next :00.
            && self.second <= 60;
        if !valid {
            return None;
        }
        if self.year < 1970 {
            return Some(0);
        }
        let days = days_before_year(self.year) - days_before_year(1970)
            + days_before_month(self.year, self.month)
            + u64::from(self.day - 1);
        let in_day =
            u64::from(self.hour) * 3600 + u64::from(self.minute) * 60 + u64::from(self.second);
        Some(days * SECS_PER_DAY + in_day)
    }
}

fn is_leap(year: u64) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u64, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 0001-01-01 to January 1st of `year` (year >= 1).
fn days_before_year(year: u64) -> u64 {
    let y = year - 1;
    y * 365 + y / 4 - y / 100 + y / 400
}

fn days_before_month(year: u64, month: u8) -> u64 {
    (1..month).map(|m| u64::from(days_in_month(year, m))).sum()
}

/// Days since 1970-01-01 → (year, month 1-12, day 1-31), proleptic
/// Gregorian (the civil-from-days method: eras of 400 years).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`
fn imf_fixdate(v: &[u8]) -> Option<Civil> {
    let mut c = Cursor(v);
    c.short_weekday()?;
    c.literal(b", ")?;
    let day = c.digits(2)? as u8;
    c.literal(b" ")?;
    let month = c.month()?;
    c.literal(b" ")?;
    let year = c.digits(4)?;
    c.literal(b" ")?;
    let (hour, minute, second) = c.time_of_day()?;
    c.literal(b" GMT")?;
    c.end()?;
    Some(Civil {
        year,
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// `Sunday, 06-Nov-94 08:49:37 GMT`
fn rfc850(v: &[u8], this_year: u64) -> Option<Civil> {
    let mut c = Cursor(v);
    c.long_weekday()?;
    c.literal(b", ")?;
    let day = c.digits(2)? as u8;
    c.literal(b"-")?;
    let month = c.month()?;
    c.literal(b"-")?;
    let year = two_digit_year(c.digits(2)?, this_year);
    c.literal(b" ")?;
    let (hour, minute, second) = c.time_of_day()?;
    c.literal(b" GMT")?;
    c.end()?;
    Some(Civil {
        year,
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// `Sun Nov  6 08:49:37 1994` (a one-digit day is padded with a space)
fn asctime(v: &[u8]) -> Option<Civil> {
    let mut c = Cursor(v);
    c.short_weekday()?;
    c.literal(b" ")?;
    let month = c.month()?;
    c.literal(b" ")?;
    if c.0.first() == Some(&b' ') {
        c.literal(b" ")?;
    }
    let day = c.up_to_two_digits()? as u8;
    c.literal(b" ")?;
    let (hour, minute, second) = c.time_of_day()?;
    c.literal(b" ")?;
    let year = c.digits(4)?;
    c.end()?;
    Some(Civil {
        year,
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// RFC 9110 5.6.7: a two-digit year more than 50 years in the future is
/// the most recent past year with the same last two digits.
fn two_digit_year(yy: u64, this_year: u64) -> u64 {
    let candidate = this_year / 100 * 100 + yy;
    if candidate > this_year + 50 {
        candidate - 100
    } else if candidate + 50 < this_year {
        // e.g. "30" read in 2090 means 2130, not 2030.
        candidate + 100
    } else {
        candidate
    }
}

fn current_year() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Days since 1970 fit an i64, and the year is positive.
    civil_from_days((now / SECS_PER_DAY) as i64).0 as u64
}

/// The unread rest of a date; each step consumes a piece or fails.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn literal(&mut self, lit: &[u8]) -> Option<()> {
        (self.take(lit.len())? == lit).then_some(())
    }

    fn end(&self) -> Option<()> {
        self.0.is_empty().then_some(())
    }

    fn digits(&mut self, n: usize) -> Option<u64> {
        let d = self.take(n)?;
        d.iter().try_fold(0u64, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u64::from(b - b'0'))
        })
    }

    fn up_to_two_digits(&mut self) -> Option<u64> {
        let two = self.0.get(1).is_some_and(u8::is_ascii_digit);
        self.digits(if two { 2 } else { 1 })
    }

    fn month(&mut self) -> Option<u8> {
        let m = self.take(3)?;
        let i = MONTHS
            .iter()
            .position(|name| name.eq_ignore_ascii_case(m))?;
        Some(i as u8 + 1)
    }

    /// The weekday is checked for spelling only: senders get it wrong and
    /// the date alone is what the cache needs.
    fn short_weekday(&mut self) -> Option<()> {
        let d = self.take(3)?;
        WEEKDAYS
            .iter()
            .any(|w| w.eq_ignore_ascii_case(d))
            .then_some(())
    }

    fn long_weekday(&mut self) -> Option<()> {
        let comma = self.0.iter().position(|&b| b == b',')?;
        let d = self.take(comma)?;
        LONG_WEEKDAYS
            .iter()
            .any(|w| w.eq_ignore_ascii_case(d))
            .then_some(())
    }

    fn time_of_day(&mut self) -> Option<(u8, u8, u8)> {
        let h = self.digits(2)? as u8;
        self.literal(b":")?;
        let m = self.digits(2)? as u8;
        self.literal(b":")?;
        let s = self.digits(2)? as u8;
        Some((h, m, s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_2026(v: &[u8]) -> Option<u64> {
        parse_http_date_at(v, || 2026)
    }

    #[test]
    fn parses_the_three_forms() {
        let cases: &[(&str, Option<u64>)] = &[
            ("Sun, 06 Nov 1994 08:49:37 GMT", Some(784_111_777)),
            ("Sunday, 06-Nov-94 08:49:37 GMT", Some(784_111_777)),
            ("Sun Nov  6 08:49:37 1994", Some(784_111_777)),
            ("Sun Nov 06 08:49:37 1994", Some(784_111_777)),
            ("  Sun, 06 Nov 1994 08:49:37 GMT\t", Some(784_111_777)),
            ("Thu, 01 Jan 1970 00:00:00 GMT", Some(0)),
            ("Thu, 01 Jan 1970 00:00:01 GMT", Some(1)),
            // Case of names is forgiven; the weekday is not cross-checked.
            ("SUN, 06 nov 1994 08:49:37 GMT", Some(784_111_777)),
            ("Mon, 06 Nov 1994 08:49:37 GMT", Some(784_111_777)),
            ("Wed, 31 Dec 1969 23:59:59 GMT", Some(0)),
            ("Sat, 01 Jan 1000 00:00:00 GMT", Some(0)),
        ];
        for &(text, want) in cases {
            assert_eq!(at_2026(text.as_bytes()), want, "{text}");
        }
    }

    #[test]
    fn leap_years_and_far_dates() {
        let cases: &[(&str, Option<u64>)] = &[
            ("Tue, 29 Feb 2000 00:00:00 GMT", Some(951_782_400)),
            ("Thu, 29 Feb 2024 12:00:00 GMT", Some(1_709_208_000)),
            ("Wed, 01 Mar 2100 00:00:00 GMT", Some(4_107_542_400)),
            ("Tue, 19 Jan 2038 03:14:08 GMT", Some(2_147_483_648)),
            ("Sun, 07 Feb 2106 06:28:16 GMT", Some(4_294_967_296)),
            ("Fri, 31 Dec 9999 23:59:59 GMT", Some(LAST_WRITABLE)),
            ("Sat, 30 Jun 2012 23:59:60 GMT", Some(1_341_100_800)),
            ("Mon, 29 Feb 2100 00:00:00 GMT", None),
            ("Thu, 29 Feb 2023 00:00:00 GMT", None),
        ];
        for &(text, want) in cases {
            assert_eq!(at_2026(text.as_bytes()), want, "{text}");
        }
    }

    #[test]
    fn rejects_invalid_dates_and_garbage() {
        let bad = [
            "",
            "Sun",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 06 Noe 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Nov 1994 08:49:61 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37 GMT x",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT",
            "Sun, 06 Nov +994 08:49:37 GMT",
            "Sunday, 06-Nov-1994 08:49:37 GMT",
            "Sundae, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994 GMT",
            "Sun Nov   6 08:49:37 1994",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "0",
            "-1",
            "\u{e9}\u{e9}\u{e9}, 06 Nov 1994 08:49:37 GMT",
        ];
        for text in bad {
            assert_eq!(at_2026(text.as_bytes()), None, "{text:?}");
        }
        assert_eq!(at_2026(&[0xff, 0xfe, b',', 0, 1, 2]), None);
    }

    #[test]
    fn two_digit_years_follow_the_fifty_year_rule() {
        let cases = [
            (94, 2026, 1994),
            (76, 2026, 2076),
            (77, 2026, 1977),
            (0, 2026, 2000),
        ];
        for (yy, now, want) in cases {
            assert_eq!(two_digit_year(yy, now), want, "{yy} in {now}");
        }
        assert_eq!(two_digit_year(30, 2090), 2130);
        let t = parse_http_date_at(b"Thursday, 01-Jan-70 00:00:00 GMT", || 2026);
        assert_eq!(t, Some(3_155_760_000)); // 2070: not more than 50 years on
        assert!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT").is_some());
    }

    #[test]
    fn writes_imf_fixdate() {
        let cases: &[(u64, &str)] = &[
            (0, "Thu, 01 Jan 1970 00:00:00 GMT"),
            (784_111_777, "Sun, 06 Nov 1994 08:49:37 GMT"),
            (951_782_400, "Tue, 29 Feb 2000 00:00:00 GMT"),
            (1_709_251_199, "Thu, 29 Feb 2024 23:59:59 GMT"),
            (2_147_483_648, "Tue, 19 Jan 2038 03:14:08 GMT"),
            (4_107_542_400, "Mon, 01 Mar 2100 00:00:00 GMT"),
            (LAST_WRITABLE, "Fri, 31 Dec 9999 23:59:59 GMT"),
            (u64::MAX, "Fri, 31 Dec 9999 23:59:59 GMT"),
        ];
        let mut out = Vec::new();
        for &(secs, want) in cases {
            out.clear();
            write_http_date(secs, &mut out);
            assert_eq!(std::str::from_utf8(&out), Ok(want), "{secs}");
        }
    }

    #[test]
    fn written_dates_read_back() {
        let mut out = Vec::new();
        let mut secs = 0u64;
        while secs < 260_000_000_000 {
            out.clear();
            write_http_date(secs, &mut out);
            assert_eq!(at_2026(&out), Some(secs.min(LAST_WRITABLE)));
            secs = secs * 3 + 86_399 + 17;
        }
    }
}
