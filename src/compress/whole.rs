//! gzip of a body known whole and small, in one call to libdeflate: on a
//! 20 KB page it is several times faster than a streaming deflate at the
//! same size (bench-scripts/gzip-vs.sh), because it sees the whole input
//! at once and keeps no stream state between calls. Only for bodies whose
//! length is known and at most `WHOLE_MAX`: memory stays bounded, and
//! larger or unknown-length bodies stream through `Encoder`.

use std::io;

use libdeflater::{CompressionLvl, Compressor};

/// Largest body compressed in one call (the relay holds it until it is
/// complete, then sends it compressed).
pub const WHOLE_MAX: u64 = 64 * 1024;

/// A libdeflate gzip compressor at one level (1-12; gzip's 1-9 map to
/// the same numbers).
pub struct WholeGzip {
    compressor: Compressor,
    level: u32,
}

impl WholeGzip {
    pub fn new(level: u32) -> WholeGzip {
        let level_number = level;
        let level = CompressionLvl::new(level.clamp(1, 12) as i32)
            .unwrap_or_else(|_| CompressionLvl::fastest());
        WholeGzip {
            compressor: Compressor::new(level),
            level: level_number,
        }
    }

    /// The level it was made for.
    pub fn level(&self) -> u32 {
        self.level
    }

    /// Appends `input` as one gzip member to `out`.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let start = out.len();
        let bound = self.compressor.gzip_compress_bound(input.len());
        out.resize(start + bound, 0);
        match self.compressor.gzip_compress(input, &mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                Ok(())
            }
            Err(_) => {
                out.truncate(start);
                Err(io::Error::other("libdeflate: output bound too small"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn round_trips_and_appends() {
        let page: Vec<u8> = (0..20_000u32)
            .flat_map(|i| format!("<p class=\"x{}\">{}</p>", i % 17, i % 101).into_bytes())
            .take(20_000)
            .collect();
        let mut w = WholeGzip::new(1);
        let mut out = b"head".to_vec();
        w.compress(&page, &mut out).unwrap();
        assert_eq!(&out[..4], b"head");
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&out[4..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, page);
        assert!(out.len() < page.len() / 3);
        // Reused: the same bytes again.
        let mut again = Vec::new();
        w.compress(&page, &mut again).unwrap();
        assert_eq!(again, out[4..]);
    }

    #[test]
    fn empty_input_is_a_valid_member() {
        let mut out = Vec::new();
        WholeGzip::new(6).compress(b"", &mut out).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty());
    }
}
