//! Wall-clock time for log lines, formatted without allocation: the date
//! part is worked out once per second and reused, only the milliseconds
//! change between lines of one second.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::http::date::{MONTHS, civil_from_days};

/// The formatted second most recently asked for.
#[derive(Debug, Clone)]
pub struct LogClock {
    second: i64,
    /// `2026-12-06T23:38:28` (RFC 3339, UTC, without fraction and zone).
    rfc3339: [u8; 19],
    /// `06/Dec/2026:23:38:28 +0000` (nginx's `$time_local`, in UTC).
    clf: [u8; 26],
}

impl Default for LogClock {
    fn default() -> Self {
        let mut c = LogClock {
            second: i64::MIN,
            rfc3339: [b'0'; 19],
            clf: [b'0'; 26],
        };
        c.set(0);
        c
    }
}

fn two(out: &mut [u8], n: u32) {
    out[0] = b'0' + (n / 10 % 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
}

fn four(out: &mut [u8], n: i64) {
    let n = n.clamp(0, 9999) as u32;
    two(&mut out[..2], n / 100);
    two(&mut out[2..4], n % 100);
}

impl LogClock {
    fn set(&mut self, second: i64) {
        self.second = second;
        let (y, mo, d) = civil_from_days(second.div_euclid(86_400));
        let s = second.rem_euclid(86_400) as u32;
        let (h, mi, se) = (s / 3600, s / 60 % 60, s % 60);
        let r = &mut self.rfc3339;
        four(&mut r[0..4], y);
        r[4] = b'-';
        two(&mut r[5..7], mo);
        r[7] = b'-';
        two(&mut r[8..10], d);
        r[10] = b'T';
        two(&mut r[11..13], h);
        r[13] = b':';
        two(&mut r[14..16], mi);
        r[16] = b':';
        two(&mut r[17..19], se);
        let c = &mut self.clf;
        two(&mut c[0..2], d);
        c[2] = b'/';
        c[3..6].copy_from_slice(MONTHS[(mo - 1) as usize]);
        c[6] = b'/';
        four(&mut c[7..11], y);
        c[11] = b':';
        c[12..20].copy_from_slice(&r[11..19]);
        c[20..26].copy_from_slice(b" +0000");
    }

    /// Brings the formatted second up to `now`; the milliseconds.
    fn at(&mut self, now: SystemTime) -> u32 {
        let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let second = since.as_secs() as i64;
        if second != self.second {
            self.set(second);
        }
        since.subsec_millis()
    }

    /// Writes `2026-12-06T23:38:28.123Z`.
    pub fn write_rfc3339(&mut self, now: SystemTime, out: &mut Vec<u8>) {
        let ms = self.at(now);
        out.extend_from_slice(&self.rfc3339);
        let mut frac = [b'.', 0, 0, 0, b'Z'];
        frac[1] = b'0' + (ms / 100) as u8;
        two(&mut frac[2..4], ms % 100);
        out.extend_from_slice(&frac);
    }

    /// Writes `06/Dec/2026:23:38:28 +0000`.
    pub fn write_clf(&mut self, now: SystemTime, out: &mut Vec<u8>) {
        self.at(now);
        out.extend_from_slice(&self.clf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms)
    }

    #[test]
    fn formats_known_instants() {
        let mut c = LogClock::default();
        let cases = [
            (
                0,
                0,
                "1970-01-01T00:00:00.000Z",
                "01/Jan/1970:00:00:00 +0000",
            ),
            // 2000-02-29 (a leap day of a 400-year leap year).
            (
                951_782_400,
                7,
                "2000-02-29T00:00:00.007Z",
                "29/Feb/2000:00:00:00 +0000",
            ),
            (
                1_796_600_308,
                123,
                "2026-12-06T23:38:28.123Z",
                "06/Dec/2026:23:38:28 +0000",
            ),
            (
                4_107_542_399,
                999,
                "2100-02-28T23:59:59.999Z",
                "28/Feb/2100:23:59:59 +0000",
            ),
        ];
        for (secs, ms, rfc, clf) in cases {
            let mut out = Vec::new();
            c.write_rfc3339(at(secs, ms), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), rfc);
            let mut out = Vec::new();
            c.write_clf(at(secs, ms), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), clf);
        }
    }

    #[test]
    fn every_day_of_four_centuries_round_trips() {
        // Days counted forward match the civil calendar's rules.
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        for days in 0..146_097 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = [
                31,
                if leap { 29 } else { 28 },
                31,
                30,
                31,
                30,
                31,
                31,
                30,
                31,
                30,
                31,
            ];
            d += 1;
            if d > len[(m - 1) as usize] {
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
