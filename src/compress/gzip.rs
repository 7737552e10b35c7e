//! gzip framing (RFC 1952) around flate2's raw deflate: the 10-byte header,
//! the CRC-32 and length trailer. Framing here rather than in flate2 keeps
//! every flate2 backend usable (miniz_oxide has no gzip mode), so the backend
//! stays a build feature picked by measurement.

use std::io;

use flate2::{Compress, Compression, Crc, Decompress, FlushCompress, FlushDecompress, Status};

/// Output room reserved per deflate call; a 20 KB page at level 1 compresses
/// to about 5 KB, so one step usually takes a whole piece.
const OUT_STEP: usize = 8 * 1024;
/// No mtime, no name, "unknown" OS: nothing about the proxy host leaks.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
/// FEXTRA alone may be 64 KiB; a header past this is refused, not buffered.
const MAX_HEADER: usize = 64 * 1024 + 1024;

pub(super) struct GzipEncoder {
    deflate: Compress,
    level: u32,
    crc: Crc,
    header_sent: bool,
    finished: bool,
}

impl GzipEncoder {
    pub(super) fn new(level: u32) -> GzipEncoder {
        GzipEncoder {
            deflate: Compress::new(Compression::new(level), false),
            level,
            crc: Crc::new(),
            header_sent: false,
            finished: false,
        }
    }

    pub(super) fn write(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        self.header(out);
        self.crc.update(input);
        self.run(input, out, FlushCompress::None)
    }

    pub(super) fn flush(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.header(out);
        self.run(&[], out, FlushCompress::Sync)
    }

    pub(super) fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.header(out);
        self.run(&[], out, FlushCompress::Finish)?;
        out.extend_from_slice(&self.crc.sum().to_le_bytes());
        out.extend_from_slice(&self.crc.amount().to_le_bytes());
        self.finished = true;
        Ok(())
    }

    pub(super) fn reset(&mut self) {
        // With zlib-rs 0.6.9, a reset in the middle of a stream (response
        // abandoned) left state behind that corrupted the next stream
        // (test `reset_after_an_abandoned_response`; miniz_oxide was fine).
        // That path is rare, so it rebuilds; a finished stream resets in place.
        if self.finished || !self.header_sent {
            self.deflate.reset();
        } else {
            self.deflate = Compress::new(Compression::new(self.level), false);
        }
        self.finished = false;
        self.crc.reset();
        self.header_sent = false;
    }

    fn header(&mut self, out: &mut Vec<u8>) {
        if !self.header_sent {
            out.extend_from_slice(&HEADER);
            self.header_sent = true;
        }
    }

    /// Feeds all of `input`, then keeps calling while deflate fills the
    /// room it was given (more output pending) or, for Finish, until the end.
    fn run(&mut self, mut input: &[u8], out: &mut Vec<u8>, flush: FlushCompress) -> io::Result<()> {
        loop {
            out.reserve(OUT_STEP);
            let before = self.deflate.total_in();
            let status = self
                .deflate
                .compress_vec(input, out, flush)
                .map_err(io::Error::other)?;
            input = &input[(self.deflate.total_in() - before) as usize..];
            let room_left = out.len() < out.capacity();
            match status {
                Status::StreamEnd => return Ok(()),
                _ if input.is_empty() && room_left && flush != FlushCompress::Finish => {
                    return Ok(());
                }
                _ => {}
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Header,
    Body,
    Trailer,
    Done,
}

pub(super) struct GzipDecoder {
    inflate: Decompress,
    crc: Crc,
    stage: Stage,
    /// Header or trailer bytes split across pieces.
    pending: Vec<u8>,
}

impl GzipDecoder {
    pub(super) fn new() -> GzipDecoder {
        GzipDecoder {
            inflate: Decompress::new(false),
            crc: Crc::new(),
            stage: Stage::Header,
            pending: Vec::new(),
        }
    }

    pub(super) fn reset(&mut self) {
        self.inflate.reset(false);
        self.crc.reset();
        self.stage = Stage::Header;
        self.pending.clear();
    }

    pub(super) fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// One step of the current stage: (input consumed, output produced).
    pub(super) fn decode(&mut self, input: &[u8], buf: &mut [u8]) -> io::Result<(usize, usize)> {
        match self.stage {
            Stage::Header => self.header(input),
            Stage::Body => self.body(input, buf),
            Stage::Trailer => self.trailer(input),
            Stage::Done if input.is_empty() => Ok((0, 0)),
            Stage::Done => Err(invalid("data after the end of the gzip stream")),
        }
    }

    fn header(&mut self, input: &[u8]) -> io::Result<(usize, usize)> {
        let had = self.pending.len();
        let take = input.len().min(MAX_HEADER - had);
        self.pending.extend_from_slice(&input[..take]);
        match header_len(&self.pending)? {
            Some(len) => {
                self.pending.clear();
                self.stage = Stage::Body;
                Ok((len - had, 0))
            }
            None if self.pending.len() >= MAX_HEADER => Err(invalid("gzip header too long")),
            None => Ok((take, 0)),
        }
    }

    fn body(&mut self, input: &[u8], buf: &mut [u8]) -> io::Result<(usize, usize)> {
        let (in0, out0) = (self.inflate.total_in(), self.inflate.total_out());
        let status = self
            .inflate
            .decompress(input, buf, FlushDecompress::None)
            .map_err(|e| invalid(&e.to_string()))?;
        let used = (self.inflate.total_in() - in0) as usize;
        let made = (self.inflate.total_out() - out0) as usize;
        self.crc.update(&buf[..made]);
        if status == Status::StreamEnd {
            self.stage = Stage::Trailer;
        }
        Ok((used, made))
    }

    fn trailer(&mut self, input: &[u8]) -> io::Result<(usize, usize)> {
        let take = input.len().min(8 - self.pending.len());
        self.pending.extend_from_slice(&input[..take]);
        if self.pending.len() == 8 {
            let word = |i: usize| {
                u32::from_le_bytes(self.pending[i..i + 4].try_into().unwrap_or_default())
            };
            if word(0) != self.crc.sum() || word(4) != self.crc.amount() {
                return Err(invalid("gzip trailer does not match the data"));
            }
            self.stage = Stage::Done;
        }
        Ok((take, 0))
    }
}

/// The header's length once `buf` holds all of it (RFC 1952 2.3).
fn header_len(buf: &[u8]) -> io::Result<Option<usize>> {
    const FHCRC: u8 = 2;
    const FEXTRA: u8 = 4;
    const FNAME: u8 = 8;
    const FCOMMENT: u8 = 16;
    if buf.len() < 10 {
        return Ok(None);
    }
    if buf[..3] != [0x1f, 0x8b, 8] || buf[3] & 0xe0 != 0 {
        return Err(invalid("not a gzip header"));
    }
    let flags = buf[3];
    let mut pos = 10;
    if flags & FEXTRA != 0 {
        let Some(xlen) = buf.get(pos..pos + 2) else {
            return Ok(None);
        };
        pos += 2 + usize::from(u16::from_le_bytes([xlen[0], xlen[1]]));
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            let Some(nul) = buf.get(pos..).and_then(|b| b.iter().position(|&c| c == 0)) else {
                return Ok(None);
            };
            pos += nul + 1;
        }
    }
    if flags & FHCRC != 0 {
        pos += 2;
    }
    Ok((buf.len() >= pos).then_some(pos))
}

pub(super) fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_with_optional_fields_is_measured_only_when_complete() {
        let mut h = vec![0x1f, 0x8b, 8, 4 | 8 | 16 | 2, 0, 0, 0, 0, 0, 3];
        h.extend_from_slice(&[3, 0, b'a', b'b', b'c']);
        h.extend_from_slice(b"name\0comment\0");
        h.extend_from_slice(&[0, 0]);
        for cut in 0..h.len() {
            assert_eq!(header_len(&h[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(header_len(&h).unwrap(), Some(h.len()));
        assert!(header_len(&[0x1f, 0x8b, 7, 0, 0, 0, 0, 0, 0, 0]).is_err());
        assert!(header_len(&[0x1f, 0x8b, 8, 0x20, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
