//! A connection to a client or an upstream: a plain socket or TLS on one.
//! The proxy reads and writes both through the same monoio traits; the
//! match per operation costs nothing next to the system call behind it.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use monoio::BufResult;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, Splitable};
use monoio::net::TcpStream;
use monoio::net::tcp::{TcpOwnedReadHalf, TcpOwnedWriteHalf};

use crate::sys;
use crate::tls::{TlsReadHalf, TlsStream, TlsWriteHalf};

pub(crate) enum Conn {
    Plain(TcpStream),
    /// Boxed: a rustls session is large, and most connections are plain.
    Tls(Box<TlsStream>),
}

pub(crate) enum ConnRead {
    Plain(TcpOwnedReadHalf),
    Tls(Box<TlsReadHalf>),
}

pub(crate) enum ConnWrite {
    Plain(TcpOwnedWriteHalf),
    Tls(Box<TlsWriteHalf>),
}

impl Conn {
    pub fn socket(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Tls(s) => s.socket(),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }

    /// Input already read but not consumed (TLS only: a plain socket
    /// keeps unread bytes in the kernel, where a peek sees them).
    pub fn has_unread_input(&mut self) -> bool {
        match self {
            Conn::Plain(_) => false,
            Conn::Tls(s) => s.has_unread_input(),
        }
    }

    /// After a read returned end of stream: whether the peer closed in a
    /// way that proves nothing was cut off. Always for plain TCP (a FIN
    /// is all it has); for TLS only after the peer's `close_notify`.
    pub fn closed_cleanly(&mut self) -> bool {
        match self {
            Conn::Plain(_) => true,
            Conn::Tls(s) => s.closed_cleanly(),
        }
    }

    /// Gives back idle I/O buffers (TLS keeps its own).
    pub fn release_buffers(&mut self) {
        if let Conn::Tls(s) = self {
            s.release_buffers();
        }
    }

    pub fn into_split(self) -> (ConnRead, ConnWrite) {
        match self {
            Conn::Plain(s) => {
                let (r, w) = s.into_split();
                (ConnRead::Plain(r), ConnWrite::Plain(w))
            }
            Conn::Tls(s) => {
                let (r, w) = s.into_split();
                (ConnRead::Tls(Box::new(r)), ConnWrite::Tls(Box::new(w)))
            }
        }
    }
}

/// What a socket holds for reading, seen without taking it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Peek {
    /// The peer closed its side and everything before has been read.
    Closed,
    /// Bytes are waiting.
    Bytes,
    /// Nothing yet, and the connection is open.
    Nothing,
    /// An error is pending (a reset, for one).
    Failed,
}

/// One non-blocking `MSG_PEEK` of one byte: works on either driver and
/// whatever the socket's blocking mode.
pub(crate) fn peek(fd: RawFd) -> Peek {
    // The caller's socket keeps `fd` open for this call.
    match sys::peek_byte(fd) {
        Ok(0) => Peek::Closed,
        Ok(_) => Peek::Bytes,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Peek::Nothing,
        Err(_) => Peek::Failed,
    }
}

impl AsRawFd for Conn {
    fn as_raw_fd(&self) -> RawFd {
        self.socket().as_raw_fd()
    }
}

/// Forwards the monoio read methods to whichever variant is inside.
macro_rules! forward_read {
    ($ty:ident) => {
        impl AsyncReadRent for $ty {
            async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
                match self {
                    $ty::Plain(s) => s.read(buf).await,
                    $ty::Tls(s) => s.read(buf).await,
                }
            }

            async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
                match self {
                    $ty::Plain(s) => s.readv(buf).await,
                    $ty::Tls(s) => s.readv(buf).await,
                }
            }
        }
    };
}

/// Forwards the monoio write methods to whichever variant is inside.
macro_rules! forward_write {
    ($ty:ident) => {
        impl AsyncWriteRent for $ty {
            async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
                match self {
                    $ty::Plain(s) => s.write(buf).await,
                    $ty::Tls(s) => s.write(buf).await,
                }
            }

            async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
                match self {
                    $ty::Plain(s) => s.writev(buf).await,
                    $ty::Tls(s) => s.writev(buf).await,
                }
            }

            async fn flush(&mut self) -> io::Result<()> {
                match self {
                    $ty::Plain(s) => s.flush().await,
                    $ty::Tls(s) => s.flush().await,
                }
            }

            async fn shutdown(&mut self) -> io::Result<()> {
                match self {
                    $ty::Plain(s) => s.shutdown().await,
                    $ty::Tls(s) => s.shutdown().await,
                }
            }
        }
    };
}

forward_read!(Conn);
forward_write!(Conn);
forward_read!(ConnRead);
forward_write!(ConnWrite);
