//! A minimal Redis client (RESP2) for the store thread: commands as
//! arrays of bulk strings, replies read into `Reply`. Blocking, with
//! timeouts; never used on a worker. Three commands are all the store
//! needs, which a few dozen lines do without pulling a client crate and
//! its dependencies into the build.

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

pub struct Connection {
    reader: BufReader<TcpStream>,
    out: Vec<u8>,
}

/// Replies nested deeper than this, or bulk strings longer, are refused.
const MAX_DEPTH: usize = 4;
const MAX_BULK: usize = 1 << 20;

impl Connection {
    pub fn connect(addr: &str, timeout: Duration) -> io::Result<Connection> {
        let target = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
        let stream = TcpStream::connect_timeout(&target, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            reader: BufReader::new(stream),
            out: Vec::new(),
        })
    }

    /// Queues a command (sent by `flush`).
    pub fn queue(&mut self, args: &[&[u8]]) {
        self.out
            .extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            self.out
                .extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            self.out.extend_from_slice(a);
            self.out.extend_from_slice(b"\r\n");
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        let r = self.reader.get_mut().write_all(&self.out);
        self.out.clear();
        r
    }

    pub fn read(&mut self) -> io::Result<Reply> {
        read_reply(&mut self.reader, 0)
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("bad reply: {what}"))
}

fn read_reply(r: &mut impl BufRead, depth: usize) -> io::Result<Reply> {
    if depth > MAX_DEPTH {
        return Err(bad("nested too deep"));
    }
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.len() < 3 || !line.ends_with(b"\r\n") {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "store closed"));
    }
    let text = std::str::from_utf8(&line[1..line.len() - 2]).map_err(|_| bad("not UTF-8"))?;
    let int = || text.parse::<i64>().map_err(|_| bad("not a number"));
    Ok(match line[0] {
        b'+' => Reply::Simple(text.to_string()),
        b'-' => Reply::Error(text.to_string()),
        b':' => Reply::Int(int()?),
        b'$' => {
            let n = int()?;
            if n < 0 {
                return Ok(Reply::Bulk(None));
            }
            let n = usize::try_from(n).map_err(|_| bad("length"))?;
            if n > MAX_BULK {
                return Err(bad("too long"));
            }
            let mut buf = vec![0; n + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(n);
            Reply::Bulk(Some(buf))
        }
        b'*' => {
            let n = int()?;
            if n < 0 {
                return Ok(Reply::Array(Vec::new()));
            }
            let n = usize::try_from(n).map_err(|_| bad("length"))?.min(1024);
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(read_reply(r, depth + 1)?);
            }
            Reply::Array(items)
        }
        _ => return Err(bad("unknown type")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> io::Result<Reply> {
        read_reply(&mut &bytes[..], 0)
    }

    #[test]
    fn replies() {
        assert_eq!(parse(b"+OK\r\n").unwrap(), Reply::Simple("OK".into()));
        assert_eq!(parse(b":-3\r\n").unwrap(), Reply::Int(-3));
        assert_eq!(parse(b"$-1\r\n").unwrap(), Reply::Bulk(None));
        assert_eq!(
            parse(b"*2\r\n:1\r\n$2\r\nab\r\n").unwrap(),
            Reply::Array(vec![Reply::Int(1), Reply::Bulk(Some(b"ab".to_vec()))])
        );
        assert_eq!(
            parse(b"-NOSCRIPT x\r\n").unwrap(),
            Reply::Error("NOSCRIPT x".into())
        );
        for bad in [&b""[..], b"?x\r\n", b":x\r\n", b"$5\r\nab", b"*1\r\n"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
