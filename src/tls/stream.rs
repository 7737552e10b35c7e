//! rustls over a monoio socket: TLS records read and written with owned
//! buffers, plaintext handed to the proxy through the same
//! `AsyncReadRent`/`AsyncWriteRent` traits a plain socket has.
//!
//! Our own adapter rather than monoio-rustls 0.4: that crate hides the
//! rustls session once the handshake is done (the client certificate
//! and SNI are needed after it), its `into_parts` drops ciphertext it has
//! buffered, and a read dropped by a timeout makes the next read panic.
//! Here the session stays reachable, every buffer is owned by the struct
//! between operations, and an operation dropped midway only loses its
//! buffer (the connection is closed after any timeout anyway).

use std::cell::RefCell;
use std::io::{self, BufRead, Write};
use std::rc::Rc;
use std::sync::Arc;

use monoio::BufResult;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::net::tcp::{TcpOwnedReadHalf, TcpOwnedWriteHalf};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use crate::sys;

/// Room for one full TLS record (16 KiB payload plus its framing).
const CIPHER_BUF: usize = 16 * 1024 + 512;

/// A TLS connection on a whole socket.
pub type TlsStream = TlsIo<TcpStream, Connection>;
/// The reading half of a split TLS connection (for tunnels).
pub type TlsReadHalf = TlsIo<TcpOwnedReadHalf, Rc<RefCell<Connection>>>;
/// The writing half of a split TLS connection.
pub type TlsWriteHalf = TlsIo<TcpOwnedWriteHalf, Rc<RefCell<Connection>>>;

/// Access to the rustls session, owned or shared between split halves.
/// A borrow never spans an await.
pub trait Session {
    fn with<R>(&mut self, f: impl FnOnce(&mut Connection) -> R) -> R;
}

impl Session for Connection {
    fn with<R>(&mut self, f: impl FnOnce(&mut Connection) -> R) -> R {
        f(self)
    }
}

impl Session for Rc<RefCell<Connection>> {
    fn with<R>(&mut self, f: impl FnOnce(&mut Connection) -> R) -> R {
        f(&mut self.borrow_mut())
    }
}

pub struct TlsIo<IO, S> {
    io: IO,
    session: S,
    incoming: Incoming,
    /// Ciphertext rustls produced, lent to the socket while written.
    outgoing: Vec<u8>,
}

/// Ciphertext read from the socket and not yet given to rustls.
#[derive(Default)]
struct Incoming {
    buf: Vec<u8>,
    pos: usize,
    /// The socket reached end of stream.
    eof: bool,
    /// rustls has been told about it.
    eof_given: bool,
}

impl Incoming {
    /// Gives rustls the buffered ciphertext (and the end of stream, once
    /// reached), stopping early once plaintext is ready so rustls's
    /// plaintext buffer never overflows.
    fn feed(&mut self, session: &mut Connection) -> io::Result<()> {
        // rustls refuses input while it holds undelivered plaintext.
        while self.pos < self.buf.len() && session.wants_read() {
            let mut rest = &self.buf[self.pos..];
            let n = session.read_tls(&mut rest)?;
            self.pos += n;
            let state = session.process_new_packets().map_err(invalid_data)?;
            if n == 0 || state.plaintext_bytes_to_read() > 0 {
                break;
            }
        }
        if self.pos == self.buf.len() && session.wants_read() {
            self.buf.clear();
            self.pos = 0;
            if self.eof && !self.eof_given {
                self.eof_given = true;
                session.read_tls(&mut &[][..])?;
                session.process_new_packets().map_err(invalid_data)?;
            }
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    /// Reads ciphertext from the socket; called only when all buffered
    /// bytes were taken. A dropped read leaves an empty buffer behind.
    async fn fill<R: AsyncReadRent>(&mut self, io: &mut R) -> io::Result<usize> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        self.pos = 0;
        if buf.capacity() < CIPHER_BUF {
            buf.reserve(CIPHER_BUF);
        }
        let (res, buf) = io.read(buf).await;
        self.buf = buf;
        if let Ok(0) = res {
            self.eof = true;
        }
        res
    }
}

fn invalid_data(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<IO, S> TlsIo<IO, S> {
    pub fn session(&self) -> &S {
        &self.session
    }
}

impl<IO, S: Session> TlsIo<IO, S> {
    /// After a read returned end of stream: whether the peer ended the
    /// session with `close_notify`. Without it the end may be an
    /// attacker's (or a crash's) cut, which only the HTTP framing can
    /// tell from a complete message; a body delimited by the close has
    /// no framing to tell it by (RFC 8446 section 6.1).
    pub fn closed_cleanly(&mut self) -> bool {
        self.session
            .with(|s| matches!(s.reader().fill_buf(), Ok(rest) if rest.is_empty()))
    }
}

impl TlsStream {
    /// Whether input arrived that nobody asked for: buffered ciphertext,
    /// plaintext rustls holds, or the peer's close. A pooled upstream
    /// connection with any of it must not carry another request (a peek
    /// at the socket cannot see bytes already read into here).
    pub fn has_unread_input(&mut self) -> bool {
        if !self.incoming.is_empty() || self.incoming.eof {
            return true;
        }
        !matches!(self.session.reader().fill_buf(), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Frees the I/O buffers while the connection idles (they are taken
    /// again, at full size, by the next operation).
    pub fn release_buffers(&mut self) {
        if self.incoming.is_empty() {
            self.incoming.buf = Vec::new();
            self.incoming.pos = 0;
        }
        self.outgoing = Vec::new();
    }
}

impl TlsStream {
    /// Runs a server handshake on an accepted socket; `initial` holds
    /// bytes already read from it (after a PROXY protocol header).
    pub async fn accept(
        io: TcpStream,
        config: Arc<ServerConfig>,
        initial: &[u8],
    ) -> io::Result<TlsStream> {
        let session = ServerConnection::new(config).map_err(io::Error::other)?;
        let mut stream = TlsIo::new(io, Connection::Server(session));
        stream.incoming.buf.extend_from_slice(initial);
        stream.handshake().await?;
        Ok(stream)
    }

    /// Runs a client handshake on a connected socket.
    pub async fn connect(
        io: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<TlsStream> {
        let session = ClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut stream = TlsIo::new(io, Connection::Client(session));
        stream.handshake().await?;
        Ok(stream)
    }

    fn new(io: TcpStream, session: Connection) -> TlsStream {
        TlsIo {
            io,
            session,
            incoming: Incoming::default(),
            outgoing: Vec::new(),
        }
    }

    async fn handshake(&mut self) -> io::Result<()> {
        loop {
            self.send_pending().await?;
            if !self.session.is_handshaking() {
                return Ok(());
            }
            if let Err(e) = self.incoming.feed(&mut self.session) {
                // Send the alert rustls queued, so the peer learns why.
                let _ = self.send_pending().await;
                return Err(e);
            }
            if !self.session.is_handshaking() || self.session.wants_write() {
                continue;
            }
            if !self.incoming.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "TLS handshake stalled",
                ));
            }
            if self.incoming.eof {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.incoming.fill(&mut self.io).await?;
        }
    }

    pub fn socket(&self) -> &TcpStream {
        &self.io
    }

    /// Splits into independently usable halves sharing the session.
    pub fn into_split(self) -> (TlsReadHalf, TlsWriteHalf) {
        use monoio::io::Splitable;
        let (r, w) = self.io.into_split();
        let session = Rc::new(RefCell::new(self.session));
        (
            TlsIo {
                io: r,
                session: session.clone(),
                incoming: self.incoming,
                outgoing: Vec::new(),
            },
            TlsIo {
                io: w,
                session,
                incoming: Incoming::default(),
                outgoing: self.outgoing,
            },
        )
    }
}

impl<IO: AsyncWriteRent, S: Session> TlsIo<IO, S> {
    /// Writes every record rustls has ready.
    async fn send_pending(&mut self) -> io::Result<()> {
        loop {
            let mut out = std::mem::take(&mut self.outgoing);
            out.clear();
            self.session.with(|s| -> io::Result<()> {
                while s.wants_write() {
                    s.write_tls(&mut out)?;
                }
                Ok(())
            })?;
            if out.is_empty() {
                self.outgoing = out;
                return Ok(());
            }
            let (res, out) = self.io.write_all(out).await;
            self.outgoing = out;
            res?;
        }
    }
}

/// Copies plaintext rustls holds into `buf`. None: none yet. A peer that
/// closed without `close_notify` reads as end of stream: HTTP framing
/// already tells a complete message from a cut one.
fn take_plaintext<T: IoBufMut>(session: &mut Connection, buf: &mut T) -> io::Result<Option<usize>> {
    let mut reader = session.reader();
    let chunk = match reader.fill_buf() {
        Ok(chunk) => chunk,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Some(0)),
        Err(e) => return Err(e),
    };
    let n = sys::copy_to_buf(buf, chunk);
    reader.consume(n);
    Ok(Some(n))
}

impl<IO: AsyncReadRent, S: Session> AsyncReadRent for TlsIo<IO, S> {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        loop {
            let incoming = &mut self.incoming;
            let step = self.session.with(|s| {
                incoming.feed(s)?;
                take_plaintext(s, &mut buf)
            });
            match step {
                Ok(Some(n)) => return (Ok(n), buf),
                Ok(None) => {}
                Err(e) => return (Err(e), buf),
            }
            if self.incoming.eof_given {
                return (Ok(0), buf);
            }
            if !self.incoming.is_empty() {
                // rustls took none of the buffered bytes and gave no
                // plaintext: looping would spin.
                let stuck = io::Error::new(io::ErrorKind::InvalidData, "TLS input not accepted");
                return (Err(stuck), buf);
            }
            if let Err(e) = self.incoming.fill(&mut self.io).await {
                return (Err(e), buf);
            }
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        // Nothing in ringress reads TLS into vectors.
        (Err(io::ErrorKind::Unsupported.into()), buf)
    }
}

impl<IO: AsyncWriteRent, S: Session> AsyncWriteRent for TlsIo<IO, S> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let data = sys::buf_bytes(&buf);
        let written = self.session.with(|s| s.writer().write(data));
        let n = match written {
            Ok(n) => n,
            Err(e) => return (Err(e), buf),
        };
        match self.send_pending().await {
            Ok(()) => (Ok(n), buf),
            Err(e) => (Err(e), buf),
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // Nothing in ringress writes TLS from vectors.
        (Err(io::ErrorKind::Unsupported.into()), buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.send_pending().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.session.with(|s| s.send_close_notify());
        self.send_pending().await?;
        self.io.shutdown().await
    }
}
