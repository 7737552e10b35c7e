//! gzip of a body known whole and small, in one call: on a 20 KB page it
//! is several times faster than a streaming deflate at the same size
//! (bench-scripts/gzip-vs.sh), because it sees the whole input at once and
//! keeps no stream state between calls. Only for bodies whose length is
//! known and at most `WHOLE_MAX`: memory stays bounded, and larger or
//! unknown-length bodies stream through `Encoder`.
//!
//! Two libraries: libdeflate, and Intel's ISA-L (igzip) where the build
//! found it (build.rs: the `isal` feature and libisal-dev). A configured
//! level maps to the library and level that gives about what zlib gives,
//! the sizes nginx sends (bench-scripts/results/gzip-backend.txt, on the
//! 20 KB page of gzip-vs.sh; zlib level 1 is 6,007 B):
//!
//! * gzip level 1: ISA-L level 1, 5,899 B at 626 MB/s; without ISA-L,
//!   libdeflate level 1, 5,699 B at 481 MB/s. ISA-L's level 0 (797 MB/s)
//!   is 8 % bigger than zlib there and 10.2 % on benches' html_page, out
//!   of the ±10 % gzip-vs.sh allows.
//! * gzip levels 2-9: libdeflate at the same number. ISA-L's only higher
//!   level, 3, is 2-3 % bigger than libdeflate's level 2.

use std::io;

use libdeflater::{CompressionLvl, Compressor};

/// Largest body compressed in one call (the relay holds it until it is
/// complete, then sends it compressed).
pub const WHOLE_MAX: u64 = 64 * 1024;

/// Which library this build uses at gzip level 1, with its version:
/// `isa-l 2.30.0` or `libdeflate` (printed by `--version` and logged at
/// start, so a benchmark can record it).
pub const WHOLE_GZIP_BACKEND: &str = env!("RINGRESS_WHOLE_GZIP");

/// A gzip compressor at one level, reused call after call.
pub struct WholeGzip {
    coder: Coder,
    level: u32,
}

enum Coder {
    Libdeflate(Compressor),
    #[cfg(ringress_isal)]
    Isal(isal_coder::IsalGzip),
}

impl WholeGzip {
    /// The compressor for a configured gzip level (1-9), as the module
    /// documentation maps it.
    pub fn new(level: u32) -> WholeGzip {
        let isal = match level {
            1 => WholeGzip::isal(1),
            _ => None,
        };
        let mut gzip = isal.unwrap_or_else(|| WholeGzip::libdeflate(level));
        gzip.level = level;
        gzip
    }

    /// libdeflate at its own level (1-12; gzip's 1-9 are the same numbers).
    pub fn libdeflate(level: u32) -> WholeGzip {
        let lvl = CompressionLvl::new(level.clamp(1, 12) as i32)
            .unwrap_or_else(|_| CompressionLvl::fastest());
        WholeGzip {
            coder: Coder::Libdeflate(Compressor::new(lvl)),
            level,
        }
    }

    /// ISA-L at its own level (0, 1 or 3: the ones isal-rs offers), or
    /// `None` in a build without it or for another level.
    pub fn isal(level: u32) -> Option<WholeGzip> {
        #[cfg(ringress_isal)]
        {
            isal_coder::IsalGzip::new(level).map(|coder| WholeGzip {
                coder: Coder::Isal(coder),
                level,
            })
        }
        #[cfg(not(ringress_isal))]
        {
            let _ = level;
            None
        }
    }

    /// The level it was made for (`new`'s gzip level, or the library's own
    /// for `libdeflate` and `isal`).
    pub fn level(&self) -> u32 {
        self.level
    }

    /// The library compressing: `"libdeflate"` or `"isa-l"`.
    pub fn library(&self) -> &'static str {
        match self.coder {
            Coder::Libdeflate(_) => "libdeflate",
            #[cfg(ringress_isal)]
            Coder::Isal(_) => "isa-l",
        }
    }

    /// Appends `input` as one gzip member to `out`; on an error `out` is as
    /// it was.
    pub fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        match &mut self.coder {
            Coder::Libdeflate(c) => libdeflate_compress(c, input, out),
            #[cfg(ringress_isal)]
            Coder::Isal(c) => c.compress(input, out),
        }
    }
}

fn libdeflate_compress(c: &mut Compressor, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let start = out.len();
    let bound = c.gzip_compress_bound(input.len());
    out.resize(start + bound, 0);
    match c.gzip_compress(input, &mut out[start..]) {
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

#[cfg(ringress_isal)]
mod isal_coder {
    use std::io::{self, Write};

    use isal::write::Encoder;
    use isal::{Codec, CompressionLevel};

    /// isal-rs's writing encoder, kept: each `flush` ends a gzip member and
    /// starts the next on the same state. Its one-shot `compress_into`
    /// allocates and zeroes the level's 276 KiB buffer and moves the 80 KiB
    /// stream state on every call, which cost 16 % of the speed on the
    /// 20 KB page (bench-scripts/results/gzip-backend.txt); the kept
    /// encoder is as fast as a stateless call on kept state.
    pub(super) struct IsalGzip {
        encoder: Box<Encoder<Vec<u8>>>,
        level: CompressionLevel,
    }

    impl IsalGzip {
        pub(super) fn new(level: u32) -> Option<IsalGzip> {
            let level = match level {
                0 => CompressionLevel::Zero,
                1 => CompressionLevel::One,
                3 => CompressionLevel::Three,
                _ => return None,
            };
            Some(IsalGzip {
                encoder: primed(level),
                level,
            })
        }

        pub(super) fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
            let start = out.len();
            // The encoder writes into the caller's buffer for this call.
            std::mem::swap(self.encoder.get_ref_mut(), out);
            let done = self
                .encoder
                .write_all(input)
                .and_then(|()| self.encoder.flush());
            std::mem::swap(self.encoder.get_ref_mut(), out);
            if done.is_err() {
                out.truncate(start);
                // A member left half written: start over on fresh state.
                self.encoder = primed(self.level);
            }
            done
        }
    }

    /// A new encoder that has already written one member. isal-rs sets
    /// the stream's input pointer and length only when it is given bytes,
    /// and `isal_deflate_init` leaves them unset: a first member with an
    /// empty body read whatever was in that memory (a crash in debug
    /// builds, valgrind's "uninitialised value" in release). After one
    /// member they hold the end of that input and 0.
    fn primed(level: CompressionLevel) -> Box<Encoder<Vec<u8>>> {
        let mut encoder = Box::new(Encoder::new(Vec::new(), level, Codec::Gzip));
        // Writing to a Vec cannot fail.
        let _ = encoder.write_all(b" ").and_then(|()| encoder.flush());
        encoder.get_ref_mut().clear();
        encoder
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn page() -> Vec<u8> {
        (0..20_000u32)
            .flat_map(|i| format!("<p class=\"x{}\">{}</p>", i % 17, i % 101).into_bytes())
            .take(20_000)
            .collect()
    }

    /// The bytes of exactly one gzip member (nothing may follow it).
    fn gunzip(member: &[u8]) -> Vec<u8> {
        let mut back = Vec::new();
        let mut decoder = flate2::bufread::GzDecoder::new(member);
        decoder.read_to_end(&mut back).unwrap();
        assert!(decoder.into_inner().is_empty(), "bytes after the member");
        back
    }

    /// Every compressor this build has, at the levels ringress uses and a
    /// few more, named for the failure message.
    fn every_compressor() -> Vec<WholeGzip> {
        let mut all: Vec<WholeGzip> = (1..=9).map(WholeGzip::new).collect();
        all.extend([1, 2, 12].map(WholeGzip::libdeflate));
        all.extend([0, 1, 3].into_iter().filter_map(WholeGzip::isal));
        all
    }

    #[test]
    fn round_trips_and_appends() {
        let page = page();
        for mut w in every_compressor() {
            let name = format!("{} level {}", w.library(), w.level());
            let mut out = b"head".to_vec();
            w.compress(&page, &mut out).unwrap();
            assert_eq!(&out[..4], b"head", "{name}");
            assert_eq!(gunzip(&out[4..]), page, "{name}");
            assert!(out.len() < page.len() / 3, "{name}: {} B", out.len());
            // Reused: the same bytes again, appended after the first.
            w.compress(&page, &mut out).unwrap();
            let first = (out.len() - 4) / 2;
            assert_eq!(out[4..4 + first], out[4 + first..], "{name}");
        }
    }

    #[test]
    fn reuse_after_other_inputs_gives_the_same_member() {
        let page = page();
        for mut w in every_compressor() {
            let name = format!("{} level {}", w.library(), w.level());
            let mut alone = Vec::new();
            w.compress(&page, &mut alone).unwrap();
            let mut other = Vec::new();
            w.compress(&page[..7_000], &mut other).unwrap();
            w.compress(b"", &mut other).unwrap();
            let mut again = Vec::new();
            w.compress(&page, &mut again).unwrap();
            assert_eq!(again, alone, "{name}");
        }
    }

    #[test]
    fn empty_input_is_a_valid_member() {
        for mut w in every_compressor() {
            let mut out = Vec::new();
            w.compress(b"", &mut out).unwrap();
            assert!(
                gunzip(&out).is_empty(),
                "{} level {}",
                w.library(),
                w.level()
            );
        }
    }

    #[test]
    fn incompressible_input_grows_past_its_length() {
        // xorshift bytes: no repeats for deflate to find, so the member is
        // stored blocks plus header and trailer, longer than the input.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let noise: Vec<u8> = (0..WHOLE_MAX)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for mut w in every_compressor() {
            let name = format!("{} level {}", w.library(), w.level());
            let mut out = vec![7u8; 3];
            w.compress(&noise, &mut out).unwrap();
            assert!(out.len() - 3 > noise.len(), "{name}: {} B", out.len());
            assert_eq!(out[..3], [7, 7, 7], "{name}");
            assert_eq!(gunzip(&out[3..]), noise, "{name}");
        }
    }

    #[test]
    fn level_1_is_isal_when_built_and_the_rest_libdeflate() {
        let level_1 = if WholeGzip::isal(1).is_some() {
            "isa-l"
        } else {
            "libdeflate"
        };
        assert_eq!(WholeGzip::new(1).library(), level_1);
        for level in 2..=9 {
            assert_eq!(WholeGzip::new(level).library(), "libdeflate");
            assert_eq!(WholeGzip::new(level).level(), level);
        }
    }

    #[test]
    fn isal_is_there_when_the_build_found_it() {
        assert_eq!(
            WholeGzip::isal(1).is_some(),
            WHOLE_GZIP_BACKEND.starts_with("isa-l"),
            "{WHOLE_GZIP_BACKEND}"
        );
        assert!(WholeGzip::isal(2).is_none());
    }
}
