//! Removing objects: the `PURGE` method on a caching route, from the
//! zone's `purge_from` addresses, and the admin listener's
//! `POST /cache/purge` (by key or prefix). Objects live in the zone's
//! shards, shared by every worker, and workers' references see them dead
//! on their next use, so one purge is effective on every worker at once.

use std::net::IpAddr;

use crate::cache::policy;
use crate::config::Config;

/// `PURGE` of the prepared key: the status to answer with.
pub(crate) fn purge_request(
    config: &Config,
    zone: usize,
    client: IpAddr,
    hash: u64,
    key: &[u8],
) -> u16 {
    let Some(z) = config.caches.get(zone) else {
        return 404;
    };
    if !z.purge_from.contains(client) {
        return 403;
    }
    match z.store.get() {
        Some(store) if store.purge(hash, key) => 200,
        _ => 404,
    }
}

/// The admin purge: `key` or `prefix` given as a URL
/// (`http://host/path?query`), in one zone or all. How many keys went.
pub(crate) fn purge(
    config: &Config,
    zone: Option<&str>,
    url: &[u8],
    prefix: bool,
) -> Result<usize, &'static str> {
    let (tls, host, path, query) = split_url(url).ok_or("not a URL: give http://host/path")?;
    let mut key = Vec::new();
    let norm = match crate::http::path::normalize(path, &mut Vec::new()) {
        Ok(p) => p.to_vec(),
        Err(_) => return Err("the URL's path is malformed"),
    };
    policy::write_key(&mut key, tls, host, &norm, query);
    if prefix && query.is_empty() {
        // A prefix of paths: without the separator that ends a bare key.
        while key.last() == Some(&b'\n') {
            key.pop();
        }
    }
    let mut purged = 0;
    for z in config
        .caches
        .iter()
        .filter(|z| zone.is_none_or(|n| n == z.name))
    {
        let Some(store) = z.store.get() else {
            continue;
        };
        purged += if prefix {
            store.purge_prefix(&key)
        } else {
            usize::from(store.purge(policy::key_hash(&key), &key))
        };
    }
    Ok(purged)
}

/// A URL's parts: whether it is https, host, path, query.
type UrlParts<'a> = (bool, &'a [u8], &'a [u8], &'a [u8]);

/// `scheme://host/path?query` → its parts.
fn split_url(url: &[u8]) -> Option<UrlParts<'_>> {
    let (tls, rest) = if let Some(r) = url.strip_prefix(b"http://") {
        (false, r)
    } else {
        (true, url.strip_prefix(b"https://")?)
    };
    let slash = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
    let (host, target) = rest.split_at(slash);
    let target: &[u8] = if target.is_empty() { b"/" } else { target };
    let (path, query) = match target.iter().position(|&b| b == b'?') {
        Some(q) => (&target[..q], &target[q + 1..]),
        None => (target, &b""[..]),
    };
    (!host.is_empty()).then_some((tls, host, path, query))
}
