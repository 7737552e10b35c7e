//! The optional reverse path: undo an upstream's coding for a client that
//! accepts none, with output bounded per call and a cap on the whole body
//! against decompression bombs.

use std::io;

use super::Algorithm;
use super::brotli::BrotliDecoder;
use super::gzip::{GzipDecoder, invalid};
use super::zstd::ZstdDecoder;

/// Most output one [`Decoder::write`] call appends.
pub const DECODE_CHUNK: usize = 16 * 1024;

/// What one [`Decoder::write`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// Input bytes taken; the rest must be passed again.
    pub consumed: usize,
    /// The call stopped because it appended [`DECODE_CHUNK`] bytes: call
    /// again (with the rest of the input, possibly empty) after sending them.
    pub out_full: bool,
}

/// A streaming decoder for one upstream body at a time.
///
/// Contract: each `write` appends at most [`DECODE_CHUNK`] bytes to `out`
/// and says how much input it consumed. Call it again while input remains
/// or `out_full` is set; when it returns with all input consumed and
/// `out_full` clear, it needs more input. At the end of the body, `finish`
/// says whether the stream was complete. Once the decoded size passes
/// `max_out`, `write` fails with `InvalidData`.
pub struct Decoder {
    alg: Algorithm,
    inner: Inner,
    max_out: u64,
    total_out: u64,
}

enum Inner {
    Gzip(GzipDecoder),
    Brotli(BrotliDecoder),
    Zstd(ZstdDecoder),
}

impl Decoder {
    pub fn new(alg: Algorithm, max_out: u64) -> Decoder {
        let inner = match alg {
            Algorithm::Gzip => Inner::Gzip(GzipDecoder::new()),
            Algorithm::Brotli => Inner::Brotli(BrotliDecoder::new()),
            Algorithm::Zstd => Inner::Zstd(ZstdDecoder::new()),
        };
        Decoder {
            alg,
            inner,
            max_out,
            total_out: 0,
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Decode from `input`, appending at most [`DECODE_CHUNK`] bytes to `out`.
    pub fn write(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<Decoded> {
        // One byte past the cap, so passing it is seen rather than truncated.
        let allowed = (self.max_out - self.total_out.min(self.max_out)).saturating_add(1);
        let room = usize::try_from(allowed).map_or(DECODE_CHUNK, |a| a.min(DECODE_CHUNK));
        let start = out.len();
        out.resize(start + room, 0);
        let result = self.fill(input, &mut out[start..]);
        let (consumed, made) = match result {
            Ok(progress) => progress,
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        };
        out.truncate(start + made);
        self.total_out += made as u64;
        if self.total_out > self.max_out {
            return Err(invalid("decoded body exceeds the configured maximum"));
        }
        Ok(Decoded {
            consumed,
            out_full: made == DECODE_CHUNK,
        })
    }

    /// Ok if the body ended where the coded stream ends; an error for a
    /// truncated stream.
    pub fn finish(&mut self) -> io::Result<()> {
        let done = match &self.inner {
            Inner::Gzip(d) => d.is_done(),
            Inner::Brotli(d) => d.is_done(),
            Inner::Zstd(d) => d.is_done(),
        };
        match done {
            true => Ok(()),
            false => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "coded body ends mid-stream",
            )),
        }
    }

    pub fn reset(&mut self) {
        self.total_out = 0;
        match &mut self.inner {
            Inner::Gzip(d) => d.reset(),
            Inner::Brotli(d) => d.reset(),
            Inner::Zstd(d) => d.reset(),
        }
    }

    /// Steps the backend until `buf` is full or it makes no more progress.
    fn fill(&mut self, input: &[u8], buf: &mut [u8]) -> io::Result<(usize, usize)> {
        let (mut used, mut made) = (0, 0);
        loop {
            let (rest, room) = (&input[used..], &mut buf[made..]);
            let (u, m) = match &mut self.inner {
                Inner::Gzip(d) => d.decode(rest, room)?,
                Inner::Brotli(d) => d.decode(rest, room)?,
                Inner::Zstd(d) => d.decode(rest, room)?,
            };
            used += u;
            made += m;
            if made == buf.len() || (u == 0 && m == 0) {
                return Ok((used, made));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::compress::Encoder;
    use crate::compress::encoder::tests::{ALL, page};

    fn encode(alg: Algorithm, body: &[u8]) -> Vec<u8> {
        let mut enc = Encoder::new(alg, None);
        let mut out = Vec::new();
        enc.write(body, &mut out).unwrap();
        enc.finish(&mut out).unwrap();
        out
    }

    /// Drives `dec` the way the contract says, checking the per-call bound.
    fn decode_in_pieces(dec: &mut Decoder, coded: &[u8], piece: usize) -> io::Result<Vec<u8>> {
        let mut plain = Vec::new();
        for mut rest in coded.chunks(piece) {
            loop {
                let mut out = Vec::new();
                let step = dec.write(rest, &mut out)?;
                assert!(out.len() <= DECODE_CHUNK);
                plain.extend_from_slice(&out);
                rest = &rest[step.consumed..];
                if rest.is_empty() && !step.out_full {
                    break;
                }
            }
        }
        dec.finish()?;
        Ok(plain)
    }

    #[test]
    fn round_trip_in_pieces_and_reuse() {
        let body = page(200_000);
        for alg in ALL {
            let coded = encode(alg, &body);
            let mut dec = Decoder::new(alg, 1 << 20);
            for piece in [7, 100, 64 * 1024] {
                assert_eq!(
                    decode_in_pieces(&mut dec, &coded, piece).unwrap(),
                    body,
                    "{alg:?} {piece}"
                );
                dec.reset();
            }
        }
    }

    #[test]
    fn gzip_header_with_name_and_extra_from_another_encoder() {
        let body = page(3_000);
        let mut enc = flate2::GzBuilder::new()
            .filename("index.html")
            .extra(vec![1, 2, 3])
            .comment("made elsewhere")
            .write(Vec::new(), flate2::Compression::best());
        enc.write_all(&body).unwrap();
        let coded = enc.finish().unwrap();
        let mut dec = Decoder::new(Algorithm::Gzip, 1 << 20);
        assert_eq!(decode_in_pieces(&mut dec, &coded, 3).unwrap(), body);
    }

    #[test]
    fn bomb_guard_stops_at_max_out() {
        let zeros = vec![0u8; 4 << 20];
        for alg in ALL {
            let coded = encode(alg, &zeros);
            assert!(coded.len() < 64 * 1024, "{alg:?}: {}", coded.len());
            let mut dec = Decoder::new(alg, 1 << 20);
            let err = decode_in_pieces(&mut dec, &coded, 4096).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{alg:?}");
            let mut exact = Decoder::new(alg, zeros.len() as u64);
            assert_eq!(
                decode_in_pieces(&mut exact, &coded, 4096).unwrap().len(),
                zeros.len()
            );
        }
    }

    #[test]
    fn truncated_and_corrupt_streams_fail() {
        let body = page(20_000);
        for alg in ALL {
            let coded = encode(alg, &body);
            let mut dec = Decoder::new(alg, 1 << 20);
            let err = decode_in_pieces(&mut dec, &coded[..coded.len() - 3], 500).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{alg:?}");
            let mut garbage = coded.clone();
            garbage.extend_from_slice(b"trailing");
            dec.reset();
            assert!(
                decode_in_pieces(&mut dec, &garbage, 500).is_err(),
                "{alg:?}"
            );
        }
        let mut flipped = encode(Algorithm::Gzip, &body);
        let n = flipped.len();
        flipped[n - 6] ^= 1;
        let err = decode_in_pieces(&mut Decoder::new(Algorithm::Gzip, 1 << 20), &flipped, 500)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
