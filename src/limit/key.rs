//! What a limit counts by, and the hash a request's key becomes.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::OnceLock;

/// `key = ...` of a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKey {
    /// `client_ip`
    ClientIp,
    /// `client_ip+path`
    ClientIpPath,
    /// `header:NAME`: a request without the header is not counted.
    Header(Box<str>),
    /// `route`: one bucket for every request on the route.
    Route,
}

impl LimitKey {
    pub fn parse(s: &str) -> Result<LimitKey, String> {
        match s {
            "client_ip" => Ok(LimitKey::ClientIp),
            "client_ip+path" => Ok(LimitKey::ClientIpPath),
            "route" => Ok(LimitKey::Route),
            _ => match s.strip_prefix("header:") {
                Some(name) if is_token(name) => Ok(LimitKey::Header(name.into())),
                Some(_) => Err(format!("{s:?}: expected a header name after `header:`")),
                None => Err(format!(
                    "{s:?} is not one of \"client_ip\", \"client_ip+path\", \"route\", \"header:NAME\""
                )),
            },
        }
    }

    /// Keyed on the client's address (then steered to one worker when
    /// that is the TCP peer).
    pub fn on_client(&self) -> bool {
        matches!(self, LimitKey::ClientIp | LimitKey::ClientIpPath)
    }
}

/// The request's values a key is made of.
#[derive(Debug, Clone, Copy)]
pub struct KeyInput<'a> {
    pub client_ip: IpAddr,
    /// The client's address is the TCP peer of a listener that steers
    /// each source address to one worker.
    pub steered: bool,
    /// The route's name (the same across reloads that move it).
    pub route: &'a str,
    pub path: &'a [u8],
    pub headers: &'a [httparse::Header<'a>],
}

/// One process-wide random key, so nobody can pick keys that all fall
/// into one set of a table.
fn seeded() -> &'static std::collections::hash_map::RandomState {
    static STATE: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    STATE.get_or_init(Default::default)
}

/// The request's key as a hash, or None when it has none (no such
/// header). `stable`: the same in every process (for a store shared by
/// several), else keyed per process.
pub fn hash(key: &LimitKey, input: &KeyInput<'_>, stable: bool) -> Option<u64> {
    if stable {
        // Fixed keys: every ringress must name a key alike in Redis.
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new();
        feed(&mut h, key, input)?;
        Some(h.finish())
    } else {
        let mut h = seeded().build_hasher();
        feed(&mut h, key, input)?;
        Some(h.finish())
    }
}

fn feed(h: &mut impl Hasher, key: &LimitKey, input: &KeyInput<'_>) -> Option<()> {
    match key {
        LimitKey::ClientIp | LimitKey::ClientIpPath => {
            match input.client_ip {
                IpAddr::V4(ip) => h.write(&ip.octets()),
                IpAddr::V6(ip) => h.write(&ip.octets()),
            }
            if matches!(key, LimitKey::ClientIpPath) {
                h.write_u8(0xff);
                h.write(input.path);
            }
        }
        LimitKey::Header(name) => {
            let value = input
                .headers
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case(name))?
                .value;
            h.write(crate::http::fields::trim_ows(value));
        }
        LimitKey::Route => h.write(input.route.as_bytes()),
    }
    Some(())
}

/// A header name: one or more token characters (RFC 9110 5.6.2).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(LimitKey::parse("client_ip"), Ok(LimitKey::ClientIp));
        assert_eq!(
            LimitKey::parse("header:X-Api-Key"),
            Ok(LimitKey::Header("X-Api-Key".into()))
        );
        assert!(LimitKey::parse("header:").is_err());
        assert!(LimitKey::parse("header:a b").is_err());
        assert!(LimitKey::parse("cookie").is_err());
    }

    #[test]
    fn hashes() {
        let headers = [httparse::Header {
            name: "x-api-key",
            value: b" k1 ",
        }];
        let input = KeyInput {
            client_ip: "10.0.0.1".parse().unwrap(),
            steered: true,
            route: "r",
            path: b"/a",
            headers: &headers,
        };
        let header = LimitKey::Header("X-Api-Key".into());
        assert!(hash(&header, &input, false).is_some());
        assert_eq!(hash(&header, &input, true), hash(&header, &input, true));
        let none = KeyInput {
            headers: &[],
            ..input
        };
        assert_eq!(hash(&header, &none, false), None);
        let other_path = KeyInput {
            path: b"/b",
            ..input
        };
        assert_ne!(
            hash(&LimitKey::ClientIpPath, &input, false),
            hash(&LimitKey::ClientIpPath, &other_path, false)
        );
        assert_eq!(
            hash(&LimitKey::ClientIp, &input, false),
            hash(&LimitKey::ClientIp, &other_path, false)
        );
    }
}
