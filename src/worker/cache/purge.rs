//! Removing objects: the `PURGE` method on a caching route, from the
//! zone's `purge_from` addresses, and the admin listener's
//! `POST /cache/purge` (by key or prefix). Objects live in the zone's
//! shards, shared by every worker, and workers' references see them dead
//! on their next use, so one purge is effective on every worker at once.

use std::net::IpAddr;

use crate::cache::policy;
use crate::config::Config;
use crate::http::request::split_absolute;

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
    let url = split_absolute(url).ok_or("not a URL: give http://host/path")?;
    let (tls, host, path) = (url.https, url.authority, url.path);
    let query = url.query.strip_prefix(b"?").unwrap_or(url.query);
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
