//! Address ranges like `10.0.0.0/8` and `2001:db8::/32`, and sets of them.
//! IPv4-mapped IPv6 addresses (`::ffff:10.1.2.3`) match IPv4 ranges.

use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network, as a 128-bit number (IPv4 in its mapped form).
    bits: u128,
    /// Prefix length over the 128 bits.
    len: u8,
    v4: bool,
}

impl Cidr {
    /// Parses `addr/len` or a bare address (a single host).
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an address or address/prefix"))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len: u8 = match len {
            None => max,
            Some(l) => match l.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("`{s}`: prefix length must be 0..={max}")),
            },
        };
        let (bits, full_len) = match ip {
            IpAddr::V4(v4) => (u128::from(v4.to_ipv6_mapped()), len + 96),
            IpAddr::V6(v6) => (u128::from(v6), len),
        };
        Ok(Cidr {
            bits: bits & mask(full_len),
            len: full_len,
            v4: ip.is_ipv4(),
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        (as_bits(ip) & mask(self.len)) == self.bits
    }

    /// The first and last address of the range (as 128-bit numbers,
    /// IPv4 in its mapped form).
    pub fn bounds(&self) -> (u128, u128) {
        (self.bits, self.bits | !mask(self.len))
    }

    /// An address as the 128-bit number ranges are compared with.
    pub fn bits_of(ip: IpAddr) -> u128 {
        as_bits(ip)
    }

    /// Prefix length as written (IPv4 ranges count 32 bits).
    pub fn prefix(&self) -> u8 {
        if self.v4 { self.len - 96 } else { self.len }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = std::net::Ipv6Addr::from(self.bits);
        match ip.to_ipv4_mapped() {
            Some(v4) if self.v4 => write!(f, "{v4}/{}", self.prefix()),
            _ => write!(f, "{ip}/{}", self.prefix()),
        }
    }
}

fn as_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

/// A list of ranges; `contains` is a scan (these lists are short).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet(pub Vec<Cidr>);

impl CidrSet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The longest range that contains `ip`, with its position.
    pub fn longest_match(&self, ip: IpAddr) -> Option<usize> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, c)| c.contains(ip))
            .max_by_key(|(_, c)| c.len)
            .map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v4_and_v6_ranges() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.255.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")));
        assert_eq!(net.to_string(), "10.1.0.0/16");
        let host = Cidr::parse("192.0.2.7").unwrap();
        assert!(host.contains(ip("192.0.2.7")) && !host.contains(ip("192.0.2.8")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.1.0.1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope/8").is_err());
        // Host bits are cleared.
        assert_eq!(Cidr::parse("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn longest_match_wins() {
        let set = CidrSet(vec![
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("10.1.0.0/16").unwrap(),
        ]);
        assert_eq!(set.longest_match(ip("10.1.2.3")), Some(1));
        assert_eq!(set.longest_match(ip("10.9.2.3")), Some(0));
        assert_eq!(set.longest_match(ip("11.0.0.1")), None);
    }
}
