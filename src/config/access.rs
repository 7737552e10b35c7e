//! Reading a listener's or a route's `allow` / `deny` lists: addresses,
//! `addr/len` ranges or `"all"`, decided first match first in the order
//! written — within a list, and between the two keys by which comes
//! first in the file (the table keeps the file's key order).

use std::sync::Arc;

use super::walk::{Problems, TableReader};
use crate::net::Cidr;
use crate::net::acl::{IpAccess, Rule, Verdict};

/// The compiled `allow` / `deny` of table `t`; empty when neither is set.
pub(super) fn ip_access(t: &mut TableReader<'_>, p: &mut Problems) -> Arc<IpAccess> {
    let mut rules = Vec::new();
    for key in t.keys() {
        let verdict = match key.as_str() {
            "allow" => Verdict::Allow,
            "deny" => Verdict::Deny,
            _ => continue,
        };
        let path = t.key_path(&key);
        for (i, s) in t
            .strings(p, &key)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            match ranges(s) {
                Ok(ranges) => rules.extend(ranges.map(|range| Rule { verdict, range })),
                Err(m) => p.add(format!("{path}[{i}]"), m),
            }
        }
    }
    if rules.is_empty() {
        return Arc::default();
    }
    Arc::new(IpAccess::new(&rules))
}

/// The ranges one entry stands for: `all` is every IPv4 and IPv6 address.
fn ranges(s: &str) -> Result<impl Iterator<Item = Cidr>, String> {
    let (first, second) = if s.trim().eq_ignore_ascii_case("all") {
        (Cidr::parse("0.0.0.0/0")?, Some(Cidr::parse("::/0")?))
    } else {
        (Cidr::parse(s)?, None)
    };
    Ok(std::iter::once(first).chain(second))
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use crate::net::Verdict;

    fn config(route_keys: &str) -> Result<Config, String> {
        Config::from_toml_str(&format!(
            "[[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\
             [[routes]]\nrespond = {{ status = 200 }}\n{route_keys}\n"
        ))
        .map_err(|e| e.to_string())
    }

    fn verdict(c: &Config, ip: &str) -> Verdict {
        c.chains[0]
            .ip_access()
            .expect("an access filter")
            .check(ip.parse().unwrap())
    }

    #[test]
    fn key_order_decides_between_the_lists() {
        let c = config("deny = [\"10.0.0.1\"]\nallow = [\"10.0.0.0/8\"]").unwrap();
        assert_eq!(verdict(&c, "10.0.0.1"), Verdict::Deny);
        assert_eq!(verdict(&c, "10.0.0.2"), Verdict::Allow);
        assert_eq!(verdict(&c, "11.0.0.2"), Verdict::Deny);
        let c = config("allow = [\"10.0.0.0/8\"]\ndeny = [\"10.0.0.1\"]").unwrap();
        assert_eq!(verdict(&c, "10.0.0.1"), Verdict::Allow);
        let c = config("deny = [\"all\"]").unwrap();
        assert_eq!(verdict(&c, "::1"), Verdict::Deny);
        assert_eq!(verdict(&c, "127.0.0.1"), Verdict::Deny);
    }

    #[test]
    fn bad_entries_are_listed_with_their_path() {
        let e = config("allow = [\"10.0.0.0/8\", \"nope\", \"10.0.0.0/40\"]").unwrap_err();
        assert!(
            e.contains("routes[0].allow[1]: `nope` is not an address"),
            "{e}"
        );
        assert!(
            e.contains("routes[0].allow[2]: `10.0.0.0/40`: prefix length"),
            "{e}"
        );
    }
}
