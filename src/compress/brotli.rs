//! brotli (RFC 7932) over the `brotli` crate's streaming state machines.
//! The crate has no reset, so a new response gets a new state; its window
//! and hash tables are allocated lazily on the first input.

use std::io;

use brotli::enc::StandardAlloc;
use brotli::enc::encode::{
    BrotliEncoderOperation as Op, BrotliEncoderParameter, BrotliEncoderStateStruct,
};
use brotli::{BrotliDecompressStream, BrotliResult, BrotliState};

use super::gzip::invalid;

type EncoderState = BrotliEncoderStateStruct<StandardAlloc>;
type DecoderState = BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>;

pub(super) struct BrotliEncoder {
    state: Box<EncoderState>,
    quality: u32,
    lgwin: u32,
}

impl BrotliEncoder {
    pub(super) fn new(quality: u32, lgwin: u32) -> BrotliEncoder {
        BrotliEncoder {
            state: fresh_encoder(quality, lgwin),
            quality,
            lgwin,
        }
    }

    pub(super) fn write(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        self.run(Op::BROTLI_OPERATION_PROCESS, input, out)
    }

    pub(super) fn flush(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.run(Op::BROTLI_OPERATION_FLUSH, &[], out)
    }

    pub(super) fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.run(Op::BROTLI_OPERATION_FINISH, &[], out)
    }

    pub(super) fn reset(&mut self) {
        self.state = fresh_encoder(self.quality, self.lgwin);
    }

    /// Output is left in the encoder's own buffer (no output slice given)
    /// and copied out with `take_output`, so `out` grows only by what exists.
    fn run(&mut self, op: Op, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let (mut avail_in, mut in_off) = (input.len(), 0);
        loop {
            let (mut avail_out, mut out_off) = (0, 0);
            let ok = self.state.compress_stream(
                op,
                &mut avail_in,
                input,
                &mut in_off,
                &mut avail_out,
                &mut [],
                &mut out_off,
                &mut None,
                &mut |_, _, _, _| (),
            );
            if !ok {
                return Err(io::Error::other("brotli encoder refused the input"));
            }
            while self.state.has_more_output() {
                // Size 0 asks for all of it; the slice may run past what was
                // taken, so only the first `size` bytes are output.
                let mut size = 0;
                let taken = self.state.take_output(&mut size);
                out.extend_from_slice(&taken[..size]);
            }
            let done = match op {
                Op::BROTLI_OPERATION_FINISH => self.state.is_finished(),
                _ => avail_in == 0,
            };
            if done {
                return Ok(());
            }
        }
    }
}

fn fresh_encoder(quality: u32, lgwin: u32) -> Box<EncoderState> {
    let mut state = Box::new(EncoderState::new(StandardAlloc::default()));
    state.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_QUALITY, quality);
    state.set_parameter(BrotliEncoderParameter::BROTLI_PARAM_LGWIN, lgwin);
    state
}

pub(super) struct BrotliDecoder {
    state: Box<DecoderState>,
    done: bool,
}

impl BrotliDecoder {
    pub(super) fn new() -> BrotliDecoder {
        BrotliDecoder {
            state: fresh_decoder(),
            done: false,
        }
    }

    pub(super) fn reset(&mut self) {
        self.state = fresh_decoder();
        self.done = false;
    }

    pub(super) fn is_done(&self) -> bool {
        self.done
    }

    pub(super) fn decode(&mut self, input: &[u8], buf: &mut [u8]) -> io::Result<(usize, usize)> {
        if self.done {
            return match input.is_empty() {
                true => Ok((0, 0)),
                false => Err(invalid("data after the end of the brotli stream")),
            };
        }
        let (mut avail_in, mut in_off) = (input.len(), 0);
        let (mut avail_out, mut out_off, mut total) = (buf.len(), 0, 0);
        let result = BrotliDecompressStream(
            &mut avail_in,
            &mut in_off,
            input,
            &mut avail_out,
            &mut out_off,
            buf,
            &mut total,
            &mut self.state,
        );
        match result {
            BrotliResult::ResultFailure => Err(invalid("corrupt brotli stream")),
            BrotliResult::ResultSuccess => {
                self.done = true;
                Ok((in_off, out_off))
            }
            BrotliResult::NeedsMoreInput | BrotliResult::NeedsMoreOutput => Ok((in_off, out_off)),
        }
    }
}

fn fresh_decoder() -> Box<DecoderState> {
    let alloc = StandardAlloc::default;
    Box::new(DecoderState::new(alloc(), alloc(), alloc()))
}
