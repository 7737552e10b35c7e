//! The abuse-resistance keys of the connection layer: a listener's
//! connection caps (`max_conns`, `max_conns_per_ip`, `over_limit`), the
//! least rates a request head and body must arrive at (`[timeouts]
//! min_head_rate`, `min_body_rate` and their grace periods), and
//! `[overload]`, which shortens keep-alive when a listener fills up.

use std::time::{Duration, Instant};

use super::units::parse_size;
use super::walk::{Problems, TableReader};

/// What happens to a connection over a listener's caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverLimitAction {
    /// Closed at once, nothing read or written.
    #[default]
    Close,
    /// Answered `503` with `Connection: close`, then closed.
    Answer503,
}

/// A listener's connection caps (0: none).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnCaps {
    pub max_conns: usize,
    pub max_conns_per_ip: u32,
    pub over_limit: OverLimitAction,
}

impl ConnCaps {
    /// Reads the caps from a `[[listeners]]` entry.
    pub(super) fn read(t: &mut TableReader<'_>, p: &mut Problems) -> ConnCaps {
        let over_limit = match t.str(p, "over_limit") {
            None | Some("close") => OverLimitAction::Close,
            Some("503") => OverLimitAction::Answer503,
            Some(other) => {
                p.add(
                    t.key_path("over_limit"),
                    super::suggest::not_one_of(other, &["close", "503"]),
                );
                OverLimitAction::Close
            }
        };
        ConnCaps {
            max_conns: t.int(p, "max_conns", 0, 10_000_000).unwrap_or(0) as usize,
            max_conns_per_ip: t.int(p, "max_conns_per_ip", 0, 10_000_000).unwrap_or(0) as u32,
            over_limit,
        }
    }
}

/// The least rate data must arrive at once its grace period is over:
/// by `start + grace + n / bytes_per_sec`, `n` bytes must have come (as
/// Apache's mod_reqtimeout `MinRate`: every `bytes_per_sec` bytes buy one
/// more second).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    pub bytes_per_sec: u64,
    pub grace: Duration,
}

impl MinRate {
    /// When the next byte is due after `received` bytes since `start`.
    pub fn deadline(&self, start: Instant, received: u64) -> Instant {
        start + self.allowance(received)
    }

    /// The time `received` bytes may take: the grace and what they earned.
    pub fn allowance(&self, received: u64) -> Duration {
        let earned = Duration::from_millis(received.saturating_mul(1000) / self.bytes_per_sec);
        // Clamped so that adding it to an instant cannot overflow.
        self.grace + earned.min(super::units::MAX_DURATION)
    }
}

/// Reads `key` (a rate like "500B/s", "1KiB/s"; 0 or "0" turns it off)
/// and `grace_key`; `default` is the rate when the key is absent.
pub(super) fn min_rate(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    key: &str,
    grace_key: &str,
    default: (u64, Duration),
) -> Option<MinRate> {
    let bytes_per_sec = match t.raw(key) {
        None => default.0,
        Some(toml::Value::Integer(n)) if *n >= 0 => *n as u64,
        Some(toml::Value::String(s)) => match parse_rate(s) {
            Ok(n) => n,
            Err(m) => {
                p.add(t.key_path(key), m);
                default.0
            }
        },
        Some(other) => {
            p.add(
                t.key_path(key),
                format!(
                    "expected a rate like \"500B/s\", found {}",
                    other.type_str()
                ),
            );
            default.0
        }
    };
    let grace = t.duration(p, grace_key).unwrap_or(default.1);
    (bytes_per_sec > 0).then_some(MinRate {
        bytes_per_sec,
        grace,
    })
}

/// "500B/s", "1KiB/s", "2k/s", "0" → bytes per second.
fn parse_rate(s: &str) -> Result<u64, String> {
    let size = s.trim().strip_suffix("/s").unwrap_or(s);
    if size.trim() != "0" && !s.trim().ends_with("/s") {
        return Err(format!(
            "`{s}` is not a rate (examples: \"500B/s\", \"1KiB/s\", 0 to turn it off)"
        ));
    }
    parse_size(size)
}

/// When a listener counts as under pressure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// A share of the listener's `max_conns` (listeners without one never
    /// are).
    Share(f64),
    /// Open connections on the listener.
    Conns(usize),
}

impl Threshold {
    /// Whether `open` connections on a listener capped at `max_conns`
    /// (0: none) pass the threshold.
    pub fn passed(&self, open: usize, max_conns: usize) -> bool {
        match *self {
            Threshold::Share(_) if max_conns == 0 => false,
            Threshold::Share(share) => open as f64 >= share * max_conns as f64,
            Threshold::Conns(n) => open >= n,
        }
    }
}

/// `[overload]`: under pressure, idle keep-alive connections (and
/// connections that never sent a request) get `keepalive_timeout`
/// instead of `timeouts.keepalive`, and those idle longer are closed.
#[derive(Debug, Clone, Copy)]
pub struct Overload {
    pub keepalive_threshold: Threshold,
    pub keepalive_timeout: Duration,
}

impl Default for Overload {
    fn default() -> Self {
        Overload {
            keepalive_threshold: Threshold::Share(0.8),
            keepalive_timeout: Duration::from_secs(2),
        }
    }
}

pub(super) fn overload(t: &mut TableReader<'_>, p: &mut Problems) -> Overload {
    let d = Overload::default();
    let key = "keepalive_threshold";
    let keepalive_threshold = match t.raw(key) {
        None => d.keepalive_threshold,
        Some(toml::Value::Float(f)) if *f > 0.0 && *f <= 1.0 => Threshold::Share(*f),
        Some(toml::Value::Integer(n)) if *n > 0 => Threshold::Conns(*n as usize),
        Some(other) => {
            p.add(
                t.key_path(key),
                format!(
                    "expected a share of max_conns (0.0 < x <= 1.0, e.g. 0.8) or a \
                     connection count (e.g. 5000), found {other}"
                ),
            );
            d.keepalive_threshold
        }
    };
    let keepalive_timeout = t
        .duration(p, "keepalive_timeout")
        .unwrap_or(d.keepalive_timeout);
    if keepalive_timeout.is_zero() {
        p.add(t.key_path("keepalive_timeout"), "must be greater than zero");
    }
    Overload {
        keepalive_threshold,
        keepalive_timeout,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("500B/s"), Ok(500));
        assert_eq!(parse_rate("1KiB/s"), Ok(1024));
        assert_eq!(parse_rate("2k/s"), Ok(2048));
        assert_eq!(parse_rate("0"), Ok(0));
        assert!(parse_rate("500").is_err());
        assert!(parse_rate("fast/s").is_err());
    }

    #[test]
    fn a_rate_earns_time_per_byte_after_its_grace() {
        let r = MinRate {
            bytes_per_sec: 100,
            grace: Duration::from_secs(5),
        };
        let t0 = Instant::now();
        assert_eq!(r.deadline(t0, 0), t0 + Duration::from_secs(5));
        assert_eq!(r.deadline(t0, 250), t0 + Duration::from_millis(7500));
        // Huge counts do not overflow.
        let _ = r.deadline(t0, u64::MAX);
    }

    #[test]
    fn thresholds() {
        assert!(Threshold::Share(0.5).passed(5, 10));
        assert!(!Threshold::Share(0.5).passed(4, 10));
        assert!(!Threshold::Share(0.5).passed(1000, 0));
        assert!(Threshold::Conns(3).passed(3, 0));
        assert!(!Threshold::Conns(3).passed(2, 100));
    }
}
