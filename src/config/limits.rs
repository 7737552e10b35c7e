//! Reading `[rate_limits.NAME]` and a route's `rate_limit`.

use std::sync::Arc;

use super::suggest::not_one_of;
use super::walk::{Problems, TableReader};
use crate::limit::{
    Gcra, LimitKey, LimitState, Mode, OnStoreError, RateLimit, StoreConfig, parse_rate,
};

/// Keys a limit holds per worker when `max_keys` is not set.
const DEFAULT_MAX_KEYS: usize = 10_000;

/// The limits, and the names of all declared (a limit with a problem of
/// its own is not reported again by every route naming it).
pub(super) fn rate_limits(
    root: &mut TableReader<'_>,
    p: &mut Problems,
) -> (Vec<RateLimit>, Vec<String>) {
    let mut out = Vec::new();
    let Some(mut t) = root.table(p, "rate_limits") else {
        return (out, Vec::new());
    };
    let names = t.keys();
    for name in t.keys() {
        if let Some(mut l) = t.table(p, &name) {
            if let Some(limit) = rate_limit(&mut l, p, name) {
                out.push(limit);
            }
            l.finish(p);
        }
    }
    t.finish(p);
    (out, names)
}

fn rate_limit(t: &mut TableReader<'_>, p: &mut Problems, name: String) -> Option<RateLimit> {
    let rate = match t.str(p, "rate") {
        Some(s) => parse_rate(s).map_err(|m| p.add(t.key_path("rate"), m)).ok(),
        None => {
            if !t.has("rate") {
                p.add(t.key_path("rate"), "is required: a rate like \"100/s\"");
            }
            None
        }
    };
    let burst = t.int(p, "burst", 1, 1_000_000_000).unwrap_or(1) as u64;
    let key = match t.str(p, "key") {
        Some(s) => LimitKey::parse(s)
            .map_err(|m| p.add(t.key_path("key"), m))
            .ok(),
        None => {
            if !t.has("key") {
                p.add(
                    t.key_path("key"),
                    "is required: \"client_ip\", \"client_ip+path\", \"route\" or \"header:NAME\"",
                );
            }
            None
        }
    };
    let mode = match t.str(p, "mode") {
        None | Some("enforce") => Mode::Enforce,
        Some("log") => Mode::Log,
        Some(other) => {
            p.add(t.key_path("mode"), not_one_of(other, &["enforce", "log"]));
            Mode::Enforce
        }
    };
    let max_keys = t
        .int(p, "max_keys", 8, 100_000_000)
        .unwrap_or(DEFAULT_MAX_KEYS as i64) as usize;
    let store = store(t, p);
    let (count, period_s) = rate?;
    let gcra = Gcra::new(count, period_s * 1_000_000_000, burst);
    Some(RateLimit {
        name,
        count,
        period_s,
        gcra,
        key: key?,
        mode,
        max_keys,
        state: Arc::new(LimitState::new(&gcra, max_keys, store.as_ref())),
        store,
    })
}

/// `store = "redis://HOST:PORT"` and `on_store_error`.
fn store(t: &mut TableReader<'_>, p: &mut Problems) -> Option<StoreConfig> {
    let on_error = match t.str(p, "on_store_error") {
        None | Some("allow") => OnStoreError::Allow,
        Some("deny") => OnStoreError::Deny,
        Some(other) => {
            p.add(
                t.key_path("on_store_error"),
                not_one_of(other, &["allow", "deny"]),
            );
            OnStoreError::Allow
        }
    };
    let url = t.str(p, "store")?;
    let addr = url.strip_prefix("redis://").filter(|a| {
        a.rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
    });
    match addr {
        Some(addr) => Some(StoreConfig {
            addr: addr.trim_end_matches('/').to_string(),
            on_error,
        }),
        None => {
            p.add(
                t.key_path("store"),
                format!("expected \"redis://HOST:PORT\", found {url:?}"),
            );
            None
        }
    }
}

/// A route's `rate_limit = "NAME"` or `["a", "b"]`: positions in
/// `limits`, checked against every declared name in `declared`.
pub(super) fn route_limits(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    (limits, declared): (&[RateLimit], &[String]),
) -> Vec<usize> {
    let mut out = Vec::new();
    let path = t.key_path("rate_limit");
    for name in t.strings(p, "rate_limit").unwrap_or_default() {
        match limits.iter().position(|l| l.name == name) {
            Some(i) if !out.contains(&i) => out.push(i),
            Some(_) => {}
            None if declared.iter().any(|d| d == name) => {}
            None => p.add(
                path.clone(),
                match super::suggest::did_you_mean(name, declared.iter().map(String::as_str)) {
                    Some(near) => format!("no [rate_limits.{name}] (did you mean `{near}`?)"),
                    None => format!("no [rate_limits.{name}]"),
                },
            ),
        }
    }
    out
}

/// A limit no route uses is most likely a route that names the wrong one,
/// or one left over.
pub(super) fn warn_unused(
    p: &mut Problems,
    limits: &[RateLimit],
    chains: &[crate::pipeline::Chain],
) {
    for (i, limit) in limits.iter().enumerate() {
        if !chains.iter().any(|c| c.uses_limit(i)) {
            p.warn(
                format!("rate_limits.{}", limit.name),
                "no route uses this rate limit",
            );
        }
    }
}
