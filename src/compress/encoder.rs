//! The per-response streaming encoder the relay drives: one type over the
//! three codings, reusable across responses through `reset`.

use std::io;

use super::Algorithm;
use super::brotli::BrotliEncoder;
use super::gzip::GzipEncoder;
use super::level_range;
use super::zstd::ZstdEncoder;

/// Like nginx's default `gzip_comp_level 1`.
const GZIP_LEVEL: u32 = 1;

/// The gzip level a route's `level` means (default 1, clamped to 1-9),
/// for the streaming encoder and a whole-body compressor alike.
pub fn gzip_level(level: Option<u32>) -> u32 {
    clamped(Algorithm::Gzip, level, GZIP_LEVEL)
}

/// `level`, or `default` when unset, within `alg`'s range.
fn clamped(alg: Algorithm, level: Option<u32>, default: u32) -> u32 {
    let range = level_range(alg);
    level.unwrap_or(default).clamp(*range.start(), *range.end())
}
const BROTLI_QUALITY: u32 = 4;
/// 2^18 = 256 KiB window instead of brotli's default 4 MiB (lgwin 22).
const BROTLI_LGWIN: u32 = 18;
const ZSTD_LEVEL: u32 = 3;
/// 2^18 = 256 KiB window; level 3 would use 2 MiB for a body of unknown size.
const ZSTD_WINDOW_LOG: u32 = 18;

/// A streaming encoder for one response at a time.
pub struct Encoder {
    alg: Algorithm,
    inner: Inner,
}

enum Inner {
    Gzip(GzipEncoder),
    Brotli(BrotliEncoder),
    Zstd(ZstdEncoder),
}

impl Encoder {
    /// `level` out of [`level_range`] is clamped into it; `None` takes the
    /// default: gzip 1, brotli 4 (window 2^18), zstd 3 (window 2^18).
    ///
    /// Resident memory per live stream at the defaults (benches/compress.rs,
    /// zlib-rs build, after a 20 KB / 1 MiB body): gzip 291 / 312 KiB,
    /// brotli 159 KiB / 3.0 MiB (its block buffers grow with the body despite
    /// the 256 KiB window), zstd 743 KiB / 1.2 MiB.
    pub fn new(alg: Algorithm, level: Option<u32>) -> Encoder {
        let level = |default: u32| clamped(alg, level, default);
        let inner = match alg {
            Algorithm::Gzip => Inner::Gzip(GzipEncoder::new(level(GZIP_LEVEL))),
            Algorithm::Brotli => {
                Inner::Brotli(BrotliEncoder::new(level(BROTLI_QUALITY), BROTLI_LGWIN))
            }
            Algorithm::Zstd => Inner::Zstd(ZstdEncoder::new(level(ZSTD_LEVEL), ZSTD_WINDOW_LOG)),
        };
        Encoder { alg, inner }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Compress `input`, appending whatever output is ready to `out` (often
    /// nothing: the coders hold back until a block is worth emitting).
    pub fn write(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        if input.is_empty() {
            return Ok(());
        }
        match &mut self.inner {
            Inner::Gzip(e) => e.write(input, out),
            Inner::Brotli(e) => e.write(input, out),
            Inner::Zstd(e) => e.write(input, out),
        }
    }

    /// Make everything written so far decodable by the client (sync flush),
    /// for streamed bodies whose pieces must not wait (server-sent events,
    /// slow chunked upstreams). Costs a few bytes and some ratio per call.
    pub fn flush(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        match &mut self.inner {
            Inner::Gzip(e) => e.flush(out),
            Inner::Brotli(e) => e.flush(out),
            Inner::Zstd(e) => e.flush(out),
        }
    }

    /// End the stream (trailer), appending to `out`. After `finish`, `reset`
    /// makes the encoder ready for the next response.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        match &mut self.inner {
            Inner::Gzip(e) => e.finish(out),
            Inner::Brotli(e) => e.finish(out),
            Inner::Zstd(e) => e.finish(out),
        }
    }

    /// Ready for a new response (also after an error or an abandoned one).
    /// gzip and zstd keep their buffers; brotli builds a new state, as the
    /// crate has no reset.
    pub fn reset(&mut self) {
        match &mut self.inner {
            Inner::Gzip(e) => e.reset(),
            Inner::Brotli(e) => e.reset(),
            Inner::Zstd(e) => e.reset(),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::Read;

    use super::*;

    pub(in super::super) const ALL: [Algorithm; 3] =
        [Algorithm::Gzip, Algorithm::Brotli, Algorithm::Zstd];

    /// Deterministic HTML-like text: compressible, but not one repeated line.
    pub(in super::super) fn page(len: usize) -> Vec<u8> {
        let mut page = Vec::with_capacity(len + 64);
        let mut n = 0u32;
        while page.len() < len {
            n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let line = format!(
                "<div class=\"item c{}\"><a href=\"/p/{}\">entry {}</a></div>\n",
                n % 7,
                n % 1000,
                n
            );
            page.extend_from_slice(line.as_bytes());
        }
        page.truncate(len);
        page
    }

    /// Decodes with the crate's own reader, not with our `Decoder`.
    pub(in super::super) fn crate_decode(alg: Algorithm, coded: &[u8]) -> Vec<u8> {
        let mut plain = Vec::new();
        match alg {
            Algorithm::Gzip => flate2::read::GzDecoder::new(coded).read_to_end(&mut plain),
            Algorithm::Brotli => ::brotli::Decompressor::new(coded, 4096).read_to_end(&mut plain),
            Algorithm::Zstd => ::zstd::stream::read::Decoder::new(coded)
                .and_then(|mut d| d.read_to_end(&mut plain)),
        }
        .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        plain
    }

    /// Pieces of uneven sizes, with a flush after every third.
    fn encode_in_pieces(enc: &mut Encoder, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, piece) in body.chunks(1000 + 7).enumerate() {
            enc.write(piece, &mut out).unwrap();
            if i % 3 == 2 {
                enc.flush(&mut out).unwrap();
            }
        }
        enc.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn round_trip_in_pieces_with_flushes() {
        let body = page(100_000);
        for alg in ALL {
            let mut enc = Encoder::new(alg, None);
            assert_eq!(enc.algorithm(), alg);
            let coded = encode_in_pieces(&mut enc, &body);
            assert!(
                coded.len() < body.len() / 3,
                "{alg:?}: {} bytes",
                coded.len()
            );
            assert_eq!(crate_decode(alg, &coded), body, "{alg:?}");
        }
    }

    #[test]
    fn empty_body_is_a_valid_stream() {
        for alg in ALL {
            let mut out = Vec::new();
            Encoder::new(alg, None).finish(&mut out).unwrap();
            assert_eq!(crate_decode(alg, &out), b"", "{alg:?}");
        }
    }

    #[test]
    fn every_level_in_range_round_trips() {
        let body = page(5_000);
        for alg in ALL {
            for level in level_range(alg)
                .step_by(4)
                .chain([*level_range(alg).end(), 99])
            {
                let coded = encode_in_pieces(&mut Encoder::new(alg, Some(level)), &body);
                assert_eq!(crate_decode(alg, &coded), body, "{alg:?} level {level}");
            }
        }
    }

    /// What a client has after a flush must decode to everything written so
    /// far; the crate readers are fed the prefix only, so they stop at its end.
    #[test]
    fn flush_makes_the_prefix_decodable() {
        let first = b"data: {\"tick\": 1}\n\n";
        for alg in ALL {
            let mut enc = Encoder::new(alg, None);
            let mut out = Vec::new();
            enc.write(first, &mut out).unwrap();
            enc.flush(&mut out).unwrap();
            assert_eq!(prefix_decode(alg, &out), first, "{alg:?}");
        }
    }

    fn prefix_decode(alg: Algorithm, coded: &[u8]) -> Vec<u8> {
        let mut plain = vec![0; 4096];
        let n = match alg {
            Algorithm::Gzip => flate2::read::GzDecoder::new(coded).read(&mut plain),
            Algorithm::Brotli => ::brotli::Decompressor::new(coded, 4096).read(&mut plain),
            Algorithm::Zstd => {
                ::zstd::stream::read::Decoder::new(coded).and_then(|mut d| d.read(&mut plain))
            }
        }
        .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        plain.truncate(n);
        plain
    }

    #[test]
    fn reset_reuse_gives_identical_output() {
        let (a, b) = (page(30_000), page(7_000));
        for alg in ALL {
            let mut reused = Encoder::new(alg, None);
            let first = encode_in_pieces(&mut reused, &a);
            reused.reset();
            let second = encode_in_pieces(&mut reused, &b);
            reused.reset();
            let again = encode_in_pieces(&mut reused, &a);
            assert_eq!(
                second,
                encode_in_pieces(&mut Encoder::new(alg, None), &b),
                "{alg:?}"
            );
            assert_eq!(first, again, "{alg:?}");
        }
    }

    /// A response abandoned mid-body must not leak into the next one.
    #[test]
    fn reset_after_an_abandoned_response() {
        let body = page(10_000);
        for alg in ALL {
            let mut enc = Encoder::new(alg, None);
            enc.write(&page(50_000), &mut Vec::new()).unwrap();
            enc.reset();
            let coded = encode_in_pieces(&mut enc, &body);
            assert_eq!(crate_decode(alg, &coded), body, "{alg:?}");
        }
    }
}
