//! HTTP/1.1 message handling for the proxy: strict head parsing on httparse,
//! body framing, chunked coding, path normalisation, head rewriting and the
//! pre-rendered answers. Pure functions over byte slices: no I/O, no runtime.

use std::mem::MaybeUninit;

pub mod answer;
pub mod chunked;
pub mod date;
pub mod encode;
pub mod fields;
pub mod path;
pub mod request;
pub mod response;

pub use request::{RequestHead, parse_request};
pub use response::{ResponseHead, parse_response};

/// Upper bound on header fields parsed in one head; `limits.max_headers`
/// may only lower it. Sized so the httparse array stays on the stack.
pub const MAX_HEADERS: usize = 256;

/// HTTP minor version of a message (we only speak 1.x).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub(crate) fn from_minor(minor: u8) -> Version {
        if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "1.0",
            Version::Http11 => "1.1",
        }
    }
}

/// How a message body is delimited on the wire (RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the sender closes (responses only).
    Close,
}

/// Size limits applied while parsing a request head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_head_size: usize,
    pub max_uri_length: usize,
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_head_size: 16 * 1024,
            max_uri_length: 8 * 1024,
            max_headers: 100,
        }
    }
}

/// A fresh httparse header array for one parse.
/// Uninitialised, so it costs nothing: the parser writes the entries it
/// fills and hands back only those.
pub fn empty_headers<'b>() -> [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS] {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// Rejects a bare LF anywhere in a head: RFC 9112 lets a recipient accept
/// one, but we only accept CRLF so that every hop agrees on line ends.
pub(crate) fn has_bare_lf(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r')
}
