//! Incremental chunked transfer-coding decoder (RFC 9112 §7.1) and the
//! matching encoder helpers. Strict: CRLF only, hex sizes without padding
//! tricks, bounded extensions and trailers. Trailers are read and dropped.

/// Longest chunk-size in hex digits (2^64 - 1).
const MAX_SIZE_DIGITS: u8 = 16;
/// Bytes allowed in one chunk's extensions, and in the whole trailer section.
const MAX_EXT_BYTES: u32 = 4096;
const MAX_TRAILER_BYTES: u32 = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    SizeBws,
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    Trailer,
    TrailerLf,
    FinalLf,
    Done,
}

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    digits: u8,
    extra: u32,
    trailer: u32,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size,
            size: 0,
            digits: 0,
            extra: 0,
            trailer: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes as much of `input` as possible, handing each run of body
    /// data to `on_data`. Returns how many bytes of `input` were used; it
    /// stops right after the final CRLF, so what follows is the next message.
    pub fn decode(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            if self.state == State::Data {
                let take = (input.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                on_data(&input[i..i + take]);
                i += take;
                self.size -= take as u64;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            self.step(input[i])?;
            i += 1;
        }
        Ok(i)
    }

    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        self.state = match self.state {
            State::Size => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    if self.digits == MAX_SIZE_DIGITS {
                        return Err(ChunkError);
                    }
                    let digit = (b as char).to_digit(16).ok_or(ChunkError)?;
                    self.size = (self.size << 4) | u64::from(digit);
                    self.digits += 1;
                    State::Size
                }
                _ if self.digits == 0 => return Err(ChunkError),
                b';' => State::Ext,
                b' ' | b'\t' => State::SizeBws,
                b'\r' => State::SizeLf,
                _ => return Err(ChunkError),
            },
            State::SizeBws => match b {
                b' ' | b'\t' => State::SizeBws,
                b';' => State::Ext,
                _ => return Err(ChunkError),
            },
            State::Ext => match b {
                b'\r' => State::SizeLf,
                b'\t' | 0x20..=0x7e | 0x80..=0xff => {
                    self.extra += 1;
                    if self.extra > MAX_EXT_BYTES {
                        return Err(ChunkError);
                    }
                    State::Ext
                }
                _ => return Err(ChunkError),
            },
            State::SizeLf => {
                if b != b'\n' {
                    return Err(ChunkError);
                }
                self.digits = 0;
                self.extra = 0;
                if self.size == 0 {
                    State::TrailerStart
                } else {
                    State::Data
                }
            }
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => State::Size,
            State::TrailerStart => match b {
                b'\r' => State::FinalLf,
                _ => self.trailer_byte(b)?,
            },
            State::Trailer => match b {
                b'\r' => State::TrailerLf,
                _ => self.trailer_byte(b)?,
            },
            State::TrailerLf if b == b'\n' => State::TrailerStart,
            State::FinalLf if b == b'\n' => State::Done,
            _ => return Err(ChunkError),
        };
        Ok(())
    }

    fn trailer_byte(&mut self, b: u8) -> Result<State, ChunkError> {
        self.trailer += 1;
        if self.trailer > MAX_TRAILER_BYTES || !(b == b'\t' || b >= 0x20) || b == 0x7f {
            return Err(ChunkError);
        }
        Ok(State::Trailer)
    }
}

/// Appends one chunk (size line, data, CRLF) to `out`; empty data writes nothing.
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    write_chunk_size(out, data.len());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Appends a chunk-size line for `len` bytes of data.
pub fn write_chunk_size(out: &mut Vec<u8>, len: usize) {
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// The last chunk with an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut used = 0;
        for piece in input.chunks(step) {
            let n = d.decode(piece, |data| out.extend_from_slice(data))?;
            used += n;
            if d.is_done() {
                break;
            }
        }
        Ok((out, used, d.is_done()))
    }

    #[test]
    fn decodes_in_any_split() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        for step in 1..body.len() {
            let (out, used, done) = decode_all(body, step).unwrap();
            assert_eq!(out, b"hello world");
            assert!(done);
            assert_eq!(&body[used..], b"NEXT", "step {step}");
        }
    }

    #[test]
    fn rejects_bad_framing() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloX\r\n",
            b"-5\r\n",
            b"0x5\r\nhello\r\n",
            b"11111111111111111\r\n",
            b"5 x\r\n",
            b"0\r\nX: a\0\r\n\r\n",
            b"0\r\n\n",
        ] {
            assert!(
                decode_all(bad, 64).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn encodes() {
        let mut out = Vec::new();
        encode_chunk(&mut out, b"hello world, and more text!");
        assert_eq!(out, b"1b\r\nhello world, and more text!\r\n");
        let mut out = Vec::new();
        write_chunk_size(&mut out, 0x1000);
        assert_eq!(out, b"1000\r\n");
    }
}
