//! Reading `[cache.NAME]` zones and a route's `cache` and `compress`
//! tables.

use std::fmt;
use std::sync::{Arc, OnceLock};

use super::walk::{Problems, TableReader};
use crate::cache::zone::Zone;
use crate::compress::{Algorithm, TypePattern, level_range};
use crate::net::CidrSet;
use crate::pipeline::{CacheRule, CompressRule, DEFAULT_TYPES, KeyPart};

/// One `[cache.NAME]` zone.
#[derive(Debug, Clone)]
pub struct CacheZone {
    pub name: String,
    /// Bytes for the whole process.
    pub max_size: u64,
    pub max_object: u64,
    /// Freshness given to responses without any (seconds); None: they are
    /// not stored.
    pub default_ttl: Option<u32>,
    /// Addresses that may send `PURGE`.
    pub purge_from: CidrSet,
    pub store_set_cookie: bool,
    /// The zone's storage, shared by the workers and carried over reloads.
    pub store: ZoneSlot,
}

/// Set once the worker count is known (`Shared::publish`), or taken over
/// from the running config's zone of the same name.
#[derive(Clone, Default)]
pub struct ZoneSlot(pub Arc<OnceLock<Arc<Zone>>>);

impl ZoneSlot {
    pub fn get(&self) -> Option<&Arc<Zone>> {
        self.0.get()
    }
}

impl fmt::Debug for ZoneSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "ZoneSlot(ready)"
        } else {
            "ZoneSlot(empty)"
        })
    }
}

pub(super) fn zones(root: &mut TableReader<'_>, p: &mut Problems) -> Vec<CacheZone> {
    let mut out = Vec::new();
    let Some(mut t) = root.table(p, "cache") else {
        return out;
    };
    for name in t.keys() {
        if let Some(mut z) = t.table(p, &name) {
            out.push(zone(&mut z, p, name));
            z.finish(p);
        }
    }
    t.finish(p);
    out
}

fn zone(z: &mut TableReader<'_>, p: &mut Problems, name: String) -> CacheZone {
    let max_size = z.size(p, "max_size").unwrap_or(256 << 20);
    let max_object = z.size(p, "max_object").unwrap_or(8 << 20);
    if max_object > max_size {
        p.add(z.key_path("max_object"), "is larger than max_size");
    }
    let default_ttl = z.duration(p, "default_ttl").map(secs);
    CacheZone {
        name,
        max_size,
        max_object,
        default_ttl,
        purge_from: super::compile::cidrs(z, p, "purge_from"),
        store_set_cookie: z.bool(p, "store_set_cookie").unwrap_or(false),
        store: ZoneSlot::default(),
    }
}

fn secs(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// A route's `cache = { zone, key, ttl }`.
pub(super) fn cache_rule(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    zones: &[CacheZone],
) -> Option<CacheRule> {
    let mut c = t.table(p, "cache")?;
    let zone = match c.str(p, "zone") {
        Some(name) => match zones.iter().position(|z| z.name == name) {
            Some(i) => Some(i),
            None => {
                p.add(c.key_path("zone"), format!("no [cache.{name}] zone"));
                None
            }
        },
        None => {
            p.add(
                c.key_path("zone"),
                "is required: the [cache.NAME] zone to use",
            );
            None
        }
    };
    let mut key = Vec::new();
    for (i, part) in c
        .strings(p, "key")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        match key_part(part) {
            Ok(k) => key.push(k),
            Err(m) => p.add(format!("{}[{i}]", c.key_path("key")), m),
        }
    }
    let mut ttl = Vec::new();
    if let Some(mut table) = c.table(p, "ttl") {
        for status in table.keys() {
            let path = table.key_path(&status);
            let d = table.duration(p, &status);
            match status.parse::<u16>() {
                Ok(s) if (200..=599).contains(&s) => ttl.extend(d.map(|d| (s, secs(d)))),
                _ => p.add(path, "is not a final status code (200-599)"),
            }
        }
        table.finish(p);
    }
    c.finish(p);
    Some(CacheRule {
        zone: zone?,
        key,
        ttl,
    })
}

fn key_part(s: &str) -> Result<KeyPart, String> {
    let valid = |n: &str| !n.is_empty() && n.bytes().all(crate::http::fields::is_tchar);
    match s.split_once(':') {
        Some(("header", n)) if valid(n) => {
            Ok(KeyPart::Header(n.to_ascii_lowercase().into_bytes().into()))
        }
        Some(("cookie", n)) if valid(n) => Ok(KeyPart::Cookie(n.as_bytes().into())),
        _ => Err(format!(
            "`{s}` is not a key addition: use `header:NAME` or `cookie:NAME`"
        )),
    }
}

/// A route's `compress = { algorithms, min_size, types, level }`.
pub(super) fn compress_rule(t: &mut TableReader<'_>, p: &mut Problems) -> Option<CompressRule> {
    let mut c = t.table(p, "compress")?;
    let mut algorithms = Vec::new();
    let names = c
        .strings(p, "algorithms")
        .unwrap_or_else(|| vec!["zstd", "br", "gzip"]);
    for (i, name) in names.into_iter().enumerate() {
        match Algorithm::from_token(name) {
            Some(a) if !algorithms.contains(&a) => algorithms.push(a),
            Some(_) => {}
            None => p.add(
                format!("{}[{i}]", c.key_path("algorithms")),
                format!("`{name}` is not one of \"zstd\", \"br\", \"gzip\""),
            ),
        }
    }
    if algorithms.is_empty() {
        p.add(c.key_path("algorithms"), "names no algorithm");
    }
    let min_size = c.size(p, "min_size").unwrap_or(256);
    let mut types = Vec::new();
    let listed = c.strings(p, "types");
    let given = listed.unwrap_or_else(|| DEFAULT_TYPES.to_vec());
    for (i, s) in given.into_iter().enumerate() {
        match TypePattern::parse(s) {
            Ok(t) => types.push(t),
            Err(m) => p.add(format!("{}[{i}]", c.key_path("types")), m),
        }
    }
    let level = c.int(p, "level", 0, 22).map(|l| l as u32);
    if let Some(l) = level {
        for a in &algorithms {
            let range = level_range(*a);
            if !range.contains(&l) {
                p.add(
                    c.key_path("level"),
                    format!(
                        "{l} is outside {}'s levels {}-{}",
                        a.token(),
                        range.start(),
                        range.end()
                    ),
                );
            }
        }
    }
    c.finish(p);
    Some(CompressRule {
        algorithms,
        min_size,
        types,
        level,
    })
}
