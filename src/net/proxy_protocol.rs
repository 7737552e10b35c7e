//! The PROXY protocol (HAProxy's spec, versions 1 and 2): a header a load
//! balancer puts before the client's bytes to say who the client is.
//! Parsed strictly (bounded, every field checked) and written for
//! upstreams that want it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What the header says; `None` addresses for `UNKNOWN` / `LOCAL`
/// (health checks from the balancer itself: use the socket's addresses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    pub source: Option<SocketAddr>,
    pub destination: Option<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// v1 headers are at most 107 bytes, CRLF included.
const V1_MAX: usize = 107;
/// v2 address blocks we accept (addresses plus TLVs), generously.
const V2_MAX_BODY: usize = 2048;

/// Parses a header at the start of `buf`. Ok(None): need more bytes.
/// Ok(Some((header, length))): the client's own bytes start at `length`.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, Invalid> {
    let probe = buf.len().min(V2_SIGNATURE.len());
    if buf[..probe] == V2_SIGNATURE[..probe] {
        if buf.len() < V2_SIGNATURE.len() {
            return Ok(None);
        }
        return parse_v2(buf);
    }
    let probe = buf.len().min(6);
    if buf[..probe] == b"PROXY "[..probe] {
        return parse_v1(buf);
    }
    Err(Invalid)
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, Invalid> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err(Invalid)
        } else {
            Ok(None)
        };
    };
    let line = std::str::from_utf8(&buf[6..end]).map_err(|_| Invalid)?;
    let mut parts = line.split(' ');
    let family = parts.next().ok_or(Invalid)?;
    let header = match family {
        "UNKNOWN" => ProxyHeader {
            source: None,
            destination: None,
        },
        "TCP4" | "TCP6" => {
            let src: IpAddr = parts.next().ok_or(Invalid)?.parse().map_err(|_| Invalid)?;
            let dst: IpAddr = parts.next().ok_or(Invalid)?.parse().map_err(|_| Invalid)?;
            let sport = port(parts.next())?;
            let dport = port(parts.next())?;
            if parts.next().is_some()
                || src.is_ipv4() != (family == "TCP4")
                || dst.is_ipv4() != src.is_ipv4()
            {
                return Err(Invalid);
            }
            ProxyHeader {
                source: Some(SocketAddr::new(src, sport)),
                destination: Some(SocketAddr::new(dst, dport)),
            }
        }
        _ => return Err(Invalid),
    };
    Ok(Some((header, end + 2)))
}

/// A decimal port without sign or leading zeros.
fn port(s: Option<&str>) -> Result<u16, Invalid> {
    let s = s.ok_or(Invalid)?;
    if s.is_empty() || (s.len() > 1 && s.starts_with('0')) || !s.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(Invalid);
    }
    s.parse().map_err(|_| Invalid)
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, Invalid> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let version_command = buf[12];
    let family = buf[13];
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if version_command >> 4 != 2 || len > V2_MAX_BODY {
        return Err(Invalid);
    }
    if buf.len() < 16 + len {
        return Ok(None);
    }
    let body = &buf[16..16 + len];
    let local = ProxyHeader {
        source: None,
        destination: None,
    };
    let header = match version_command & 0x0f {
        // LOCAL: the balancer speaking for itself.
        0x0 => local,
        0x1 => match family {
            // TCP over IPv4 / IPv6 (UDP makes no sense for HTTP).
            0x11 if body.len() >= 12 => {
                let src = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
                let dst = Ipv4Addr::new(body[4], body[5], body[6], body[7]);
                ProxyHeader {
                    source: Some(SocketAddr::new(src.into(), be16(&body[8..10]))),
                    destination: Some(SocketAddr::new(dst.into(), be16(&body[10..12]))),
                }
            }
            0x21 if body.len() >= 36 => {
                let src = Ipv6Addr::from(<[u8; 16]>::try_from(&body[0..16]).map_err(|_| Invalid)?);
                let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&body[16..32]).map_err(|_| Invalid)?);
                ProxyHeader {
                    source: Some(SocketAddr::new(src.into(), be16(&body[32..34]))),
                    destination: Some(SocketAddr::new(dst.into(), be16(&body[34..36]))),
                }
            }
            // AF_UNSPEC or a family we do not route: keep the socket's.
            0x00 => local,
            _ => return Err(Invalid),
        },
        _ => return Err(Invalid),
    };
    Ok(Some((header, 16 + len)))
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

/// Which version to send upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// Writes a header for a connection from `source` to `destination`.
pub fn write(out: &mut Vec<u8>, version: Version, source: SocketAddr, destination: SocketAddr) {
    // Mixed families (an IPv4 client on an IPv6 socket): map to IPv6.
    let (src, dst) = match (source.ip(), destination.ip()) {
        (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
            (source.ip(), destination.ip())
        }
        _ => (
            IpAddr::V6(v6(source.ip())),
            IpAddr::V6(v6(destination.ip())),
        ),
    };
    match version {
        Version::V1 => {
            let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            out.extend_from_slice(
                format!(
                    "PROXY {family} {src} {dst} {} {}\r\n",
                    source.port(),
                    destination.port()
                )
                .as_bytes(),
            );
        }
        Version::V2 => {
            out.extend_from_slice(V2_SIGNATURE);
            out.push(0x21);
            match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    out.push(0x11);
                    out.extend_from_slice(&12u16.to_be_bytes());
                    out.extend_from_slice(&s.octets());
                    out.extend_from_slice(&d.octets());
                }
                (s, d) => {
                    out.push(0x21);
                    out.extend_from_slice(&36u16.to_be_bytes());
                    out.extend_from_slice(&v6(s).octets());
                    out.extend_from_slice(&v6(d).octets());
                }
            }
            out.extend_from_slice(&source.port().to_be_bytes());
            out.extend_from_slice(&destination.port().to_be_bytes());
        }
    }
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_round_trip_and_partial() {
        let mut out = Vec::new();
        write(
            &mut out,
            Version::V1,
            addr("192.0.2.1:5000"),
            addr("10.0.0.1:443"),
        );
        assert_eq!(out, b"PROXY TCP4 192.0.2.1 10.0.0.1 5000 443\r\n");
        out.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let (h, n) = parse(&out).unwrap().unwrap();
        assert_eq!(h.source, Some(addr("192.0.2.1:5000")));
        assert_eq!(h.destination, Some(addr("10.0.0.1:443")));
        assert_eq!(&out[n..n + 3], b"GET");
        for cut in 0..n {
            assert_eq!(parse(&out[..cut]), Ok(None), "cut at {cut}");
        }
        let v6 = b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n";
        assert_eq!(
            parse(v6).unwrap().unwrap().0.source,
            Some(addr("[2001:db8::1]:1"))
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap().0.source, None);
    }

    #[test]
    fn v1_rejects_malformed() {
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n",
            b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
        ] {
            assert_eq!(
                parse(bad),
                Err(Invalid),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // No CRLF within the limit.
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert_eq!(parse(&long), Err(Invalid));
    }

    #[test]
    fn v2_round_trip() {
        for (src, dst) in [
            ("192.0.2.1:5000", "10.0.0.1:443"),
            ("[2001:db8::1]:5000", "[2001:db8::2]:443"),
        ] {
            let mut out = Vec::new();
            write(&mut out, Version::V2, addr(src), addr(dst));
            out.extend_from_slice(b"\x16\x03\x01");
            let (h, n) = parse(&out).unwrap().unwrap();
            assert_eq!(h.source, Some(addr(src)));
            assert_eq!(h.destination, Some(addr(dst)));
            assert_eq!(&out[n..], b"\x16\x03\x01");
            for cut in 0..n {
                assert_eq!(parse(&out[..cut]), Ok(None), "cut at {cut}");
            }
        }
        // LOCAL command, with a TLV we skip.
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x03, 1, 2, 3]);
        let (h, n) = parse(&local).unwrap().unwrap();
        assert_eq!((h.source, n), (None, 19));
        // Version 3, or an oversized block, is refused.
        let mut bad = V2_SIGNATURE.to_vec();
        bad.extend_from_slice(&[0x31, 0x11, 0x00, 0x0c]);
        assert_eq!(parse(&bad), Err(Invalid));
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(parse(&huge), Err(Invalid));
    }
}
