//! Finding another process that already listens on our addresses, before
//! binding: every listener is bound with SO_REUSEPORT, so a second
//! ringress would otherwise quietly share the ports with the first. Reads
//! `/proc` only; deciding whether to refuse is the binary's.

use std::fmt;
use std::io::{self, BufRead};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

/// A process holding a listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Its command line, when readable.
    pub command: Option<String>,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.command {
            Some(command) => write!(f, "pid {} ({command})", self.pid),
            None => write!(f, "pid {}", self.pid),
        }
    }
}

/// An address somebody else listens on.
#[derive(Debug, Clone)]
pub struct InUse {
    pub addr: SocketAddr,
    /// Empty when no process we may look into holds the socket (another
    /// user's, or one in another PID namespace).
    pub holders: Vec<Holder>,
}

impl fmt::Display for InUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is already in use by ", self.addr)?;
        if self.holders.is_empty() {
            return write!(f, "a process this user cannot see");
        }
        let names: Vec<String> = self.holders.iter().map(Holder::to_string).collect();
        write!(f, "{}", names.join(", "))
    }
}

/// The first of `addrs` some other socket listens on, with the processes
/// holding it. Port 0 addresses are skipped (each start gets its own).
pub fn find_in_use(addrs: &[SocketAddr]) -> Option<InUse> {
    addrs
        .iter()
        .filter(|a| a.port() != 0)
        .find(|a| taken(**a))
        .map(|&addr| InUse {
            addr,
            holders: holders(addr),
        })
}

/// Whether binding `addr` without SO_REUSEPORT fails because somebody
/// listens there.
fn taken(addr: SocketAddr) -> bool {
    matches!(probe_alone(addr), Err(e) if e.kind() == io::ErrorKind::AddrInUse)
}

/// Binds `addr` for a moment without SO_REUSEPORT: fails when any socket
/// listens there, sharing or not (with SO_REUSEADDR, closed connections
/// do not count).
pub(crate) fn probe_alone(addr: SocketAddr) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())
}

/// Whether a socket of ours with SO_REUSEPORT can join whoever listens on
/// `addr` (not when their socket lacks it, or belongs to another user).
pub fn can_join(addr: SocketAddr) -> io::Result<()> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())
}

/// How many sockets listen on exactly `addr` now (our SO_REUSEPORT group
/// for it, when they are ours and the same user's).
pub fn listening_count(addr: SocketAddr) -> usize {
    listening()
        .iter()
        .filter(|(local, _)| same_ip(local.ip(), addr.ip()) && local.port() == addr.port())
        .count()
}

/// The processes other than this one that hold a socket listening where
/// `addr` would.
fn holders(addr: SocketAddr) -> Vec<Holder> {
    let inodes: Vec<u64> = listening()
        .into_iter()
        .filter(|(local, _)| overlaps(*local, addr))
        .map(|(_, inode)| inode)
        .collect();
    if inodes.is_empty() {
        return Vec::new();
    }
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me || !holds_any(pid, &inodes) {
            continue;
        }
        found.push(Holder {
            pid,
            command: command_line(pid),
        });
    }
    found
}

/// Whether one of `pid`'s descriptors is a socket with one of `inodes`.
fn holds_any(pid: u32, inodes: &[u64]) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).ok().is_some_and(|target| {
            target
                .to_str()
                .and_then(socket_inode)
                .is_some_and(|inode| inodes.contains(&inode))
        })
    })
}

/// `socket:[12345]` → 12345.
fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

fn command_line(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// Every listening TCP socket in this network namespace: address, inode.
fn listening() -> Vec<(SocketAddr, u64)> {
    let mut all = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(file) = std::fs::File::open(file) {
            let lines = io::BufReader::new(file).lines().map_while(Result::ok);
            all.extend(parse_listening(lines));
        }
    }
    all
}

/// The LISTEN (state `0A`) rows of `/proc/net/tcp` or `tcp6`. The kernel
/// lists listening sockets first and makes the text as it is read, so
/// reading stops at the first other row: a busy proxy has tens of
/// thousands of connections (and TIME_WAIT entries) after them, and
/// reading those all took seconds.
fn parse_listening(lines: impl Iterator<Item = impl AsRef<str>>) -> Vec<(SocketAddr, u64)> {
    let mut found = Vec::new();
    for line in lines.skip(1) {
        let fields: Vec<&str> = line.as_ref().split_whitespace().collect();
        if fields.get(3) != Some(&"0A") {
            break;
        }
        let parsed = fields
            .get(1)
            .and_then(|a| parse_addr(a))
            .zip(fields.get(9).and_then(|i| i.parse().ok()));
        found.extend(parsed);
    }
    found
}

/// `0100007F:1F90` → 127.0.0.1:8080. The kernel prints each 32-bit word
/// of the address as a number in the machine's byte order, and the port
/// as a number.
fn parse_addr(field: &str) -> Option<SocketAddr> {
    let (ip, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Equal addresses, an IPv4-mapped IPv6 one counting as its IPv4 one.
fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// Whether a socket listening on `local` takes connections meant for
/// `addr`: same port, and the same address or a wildcard (`::` also
/// takes IPv4 unless it was made IPv6-only, which we cannot see here).
fn overlaps(local: SocketAddr, addr: SocketAddr) -> bool {
    if local.port() != addr.port() {
        return false;
    }
    let (l, a) = (local.ip().to_canonical(), addr.ip().to_canonical());
    l == a
        || (l.is_unspecified() && (l.is_ipv6() || a.is_ipv4()))
        || (a.is_unspecified() && (a.is_ipv6() || l.is_ipv4()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
";

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn reads_listening_rows_only() {
        let rows = |text: &'static str| parse_listening(text.lines());
        assert_eq!(rows(TCP), vec![(addr("127.0.0.1:8080"), 4242)]);
        assert_eq!(rows(TCP6), vec![(addr("[::1]:80"), 777)]);
        assert_eq!(rows("header only\n"), vec![]);
        assert_eq!(rows("h\n 0: zz:1 0 0A a b c d e f\n"), vec![]);
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn wildcards_overlap() {
        assert!(overlaps(addr("127.0.0.1:80"), addr("127.0.0.1:80")));
        assert!(!overlaps(addr("127.0.0.1:80"), addr("127.0.0.1:81")));
        assert!(!overlaps(addr("127.0.0.1:80"), addr("127.0.0.2:80")));
        assert!(overlaps(addr("0.0.0.0:80"), addr("127.0.0.1:80")));
        assert!(overlaps(addr("127.0.0.1:80"), addr("0.0.0.0:80")));
        assert!(overlaps(addr("[::]:80"), addr("127.0.0.1:80")));
        assert!(!overlaps(addr("0.0.0.0:80"), addr("[::1]:80")));
        assert!(overlaps(
            addr("[::ffff:127.0.0.1]:80"),
            addr("127.0.0.1:80")
        ));
    }

    #[test]
    fn holder_names_the_process() {
        let h = Holder {
            pid: 12,
            command: Some("ringress -c a.toml".into()),
        };
        let e = InUse {
            addr: addr("127.0.0.1:80"),
            holders: vec![h],
        };
        assert_eq!(
            e.to_string(),
            "127.0.0.1:80 is already in use by pid 12 (ringress -c a.toml)"
        );
    }

    #[test]
    fn finds_this_test_process_listening() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let local = listener.local_addr().expect("addr");
        assert_eq!(listening_count(local), 1);
        let found = find_in_use(&[addr("127.0.0.1:0"), local]).expect("in use");
        assert_eq!(found.addr, local);
        // The holder is this very process, which never names itself.
        assert!(found.holders.is_empty());
        // A plain socket cannot be joined; ours (SO_REUSEPORT) could be.
        assert!(can_join(local).is_err());
        drop(listener);
        assert!(find_in_use(&[local]).is_none());
        assert!(can_join(local).is_ok());
    }
}
