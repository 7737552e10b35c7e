//! Response compression: `Accept-Encoding` negotiation, content-type
//! matching, and streaming encoders/decoders over well-kept crates.
//! Pure: no I/O, no runtime.
//!
//! Per-stream memory at the default levels (measured by `benches/compress.rs`
//! with a counting allocator; see `bench-scripts/results/gzip-backend.txt`):
//! the figures are in [`Encoder::new`]'s documentation.

mod brotli;
mod decoder;
mod encoder;
mod gzip;
mod negotiate;
mod types;
mod whole;
mod zstd;

use std::ops::RangeInclusive;

pub use decoder::{DECODE_CHUNK, Decoded, Decoder};
pub use encoder::{Encoder, gzip_level};
pub use negotiate::negotiate;
pub use types::{TypePattern, type_matches};
pub use whole::{WHOLE_GZIP_BACKEND, WHOLE_MAX, WholeGzip};

/// A content coding the proxy can produce or undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Zstd,
    Brotli,
    Gzip,
}

impl Algorithm {
    /// The token for `Content-Encoding` / `Accept-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Zstd => "zstd",
            Algorithm::Brotli => "br",
            Algorithm::Gzip => "gzip",
        }
    }

    /// Case-insensitive; `x-gzip` is gzip (RFC 9110 8.4.1.3).
    pub fn from_token(t: &str) -> Option<Algorithm> {
        Algorithm::from_token_bytes(t.as_bytes())
    }

    pub(crate) fn from_token_bytes(t: &[u8]) -> Option<Algorithm> {
        const TOKENS: [(&[u8], Algorithm); 4] = [
            (b"gzip", Algorithm::Gzip),
            (b"x-gzip", Algorithm::Gzip),
            (b"br", Algorithm::Brotli),
            (b"zstd", Algorithm::Zstd),
        ];
        TOKENS
            .iter()
            .find(|(tok, _)| tok.eq_ignore_ascii_case(t))
            .map(|&(_, alg)| alg)
    }
}

/// The levels a route may configure, for config validation.
///
/// gzip: 1-9 (zlib's scale; 0 would be "stored", never worth a
/// `Content-Encoding`). br: 0-11 (the brotli quality scale). zstd: 1-19, the
/// "regular" levels; 20-22 ("ultra") need windows of 32 MiB and more, past the
/// 8 MiB an HTTP zstd decoder must accept (RFC 9659), and negative levels are
/// left out because they barely compress text.
pub fn level_range(alg: Algorithm) -> RangeInclusive<u32> {
    match alg {
        Algorithm::Gzip => 1..=9,
        Algorithm::Brotli => 0..=11,
        Algorithm::Zstd => 1..=19,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_aliases() {
        for alg in [Algorithm::Zstd, Algorithm::Brotli, Algorithm::Gzip] {
            assert_eq!(Algorithm::from_token(alg.token()), Some(alg));
        }
        assert_eq!(Algorithm::from_token("X-GZIP"), Some(Algorithm::Gzip));
        assert_eq!(Algorithm::from_token("BR"), Some(Algorithm::Brotli));
        assert_eq!(Algorithm::from_token("deflate"), None);
        assert_eq!(Algorithm::from_token(""), None);
    }

    #[test]
    fn level_ranges_contain_the_defaults() {
        assert!(level_range(Algorithm::Gzip).contains(&1));
        assert!(level_range(Algorithm::Brotli).contains(&11));
        assert!(!level_range(Algorithm::Zstd).contains(&22));
    }
}
