//! `POST /cache/purge`: removes stored objects by key or by prefix, in
//! one zone or all, given as URLs in the query string
//! (`?key=http://host/path?q=1`, `?prefix=http://host/static/`,
//! optionally `&zone=NAME`). The answer says how many keys went.

use crate::config::Config;
use crate::worker::cache;

/// The status and body of a purge.
pub(super) fn purge(config: &Config, query: &[u8]) -> (u16, String) {
    let mut zone = None;
    let mut target = None;
    let query = query.strip_prefix(b"?").unwrap_or(query);
    for pair in query.split(|&b| b == b'&') {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let value = percent_decode(value);
        match name {
            b"zone" => zone = Some(value),
            b"key" => target = Some((value, false)),
            b"prefix" => target = Some((value, true)),
            _ => {}
        }
    }
    let Some((url, prefix)) = target else {
        return (400, "give key=URL or prefix=URL\n".into());
    };
    let zone = match zone.as_deref().map(std::str::from_utf8) {
        Some(Ok(z)) if !config.caches.iter().any(|c| c.name == z) => {
            return (404, format!("no cache zone named `{z}`\n"));
        }
        Some(Ok(z)) => Some(z),
        Some(Err(_)) => return (400, "the zone name is not UTF-8\n".into()),
        None => None,
    };
    match cache::purge(config, zone, &url, prefix) {
        Ok(n) => (200, format!("{{\"purged\": {n}}}\n")),
        Err(why) => (400, format!("{why}\n")),
    }
}

/// `%XX` and `+` decoded; malformed escapes are kept as written.
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        match s[i] {
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes() {
        assert_eq!(
            percent_decode(b"http%3A%2F%2Fh%2Fa%3Fq%3D1"),
            b"http://h/a?q=1"
        );
        assert_eq!(percent_decode(b"a%2"), b"a%2");
        assert_eq!(percent_decode(b"a%zz"), b"a%zz");
    }
}
