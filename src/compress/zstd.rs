//! zstd (RFC 8878, as an HTTP coding RFC 9659) over the `zstd` crate's raw
//! streaming contexts, which reset in place and keep their buffers.

use std::io;

use zstd::stream::raw::{CParameter, DParameter, Decoder, Encoder, InBuffer, Operation, OutBuffer};

use super::gzip::invalid;

/// Output room reserved per call.
const OUT_STEP: usize = 8 * 1024;
/// RFC 9659: decoders must accept up to an 8 MiB window and may refuse more.
const MAX_WINDOW_LOG: u32 = 23;

pub(super) struct ZstdEncoder {
    ctx: Encoder<'static>,
}

impl ZstdEncoder {
    pub(super) fn new(level: u32, window_log: u32) -> ZstdEncoder {
        // Creating a context fails only when out of memory, and both
        // parameters are in the ranges zstd documents.
        let mut ctx = Encoder::new(level as i32).expect("zstd compression context");
        ctx.set_parameter(CParameter::WindowLog(window_log))
            .expect("zstd window log in range");
        ZstdEncoder { ctx }
    }

    pub(super) fn write(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let mut src = InBuffer::around(input);
        while src.pos < input.len() {
            out.reserve(OUT_STEP);
            let len = out.len();
            self.ctx
                .run(&mut src, &mut OutBuffer::around_pos(out, len))?;
        }
        Ok(())
    }

    pub(super) fn flush(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.drain(out, |ctx, dst| ctx.flush(dst))
    }

    pub(super) fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.drain(out, |ctx, dst| ctx.finish(dst, true))
    }

    pub(super) fn reset(&mut self) {
        // A session reset keeps the level, the window and the buffers.
        self.ctx.reinit().expect("zstd session reset");
    }

    /// Repeats `step` until it reports nothing left in the context.
    fn drain(
        &mut self,
        out: &mut Vec<u8>,
        mut step: impl FnMut(&mut Encoder<'static>, &mut OutBuffer<'_, Vec<u8>>) -> io::Result<usize>,
    ) -> io::Result<()> {
        loop {
            out.reserve(OUT_STEP);
            let len = out.len();
            if step(&mut self.ctx, &mut OutBuffer::around_pos(out, len))? == 0 {
                return Ok(());
            }
        }
    }
}

pub(super) struct ZstdDecoder {
    ctx: Decoder<'static>,
    /// At a frame boundary: nothing started or the last frame complete.
    at_boundary: bool,
}

impl ZstdDecoder {
    pub(super) fn new() -> ZstdDecoder {
        let mut ctx = Decoder::new().expect("zstd decompression context");
        ctx.set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG))
            .expect("zstd window log max in range");
        ZstdDecoder {
            ctx,
            at_boundary: true,
        }
    }

    pub(super) fn reset(&mut self) {
        self.ctx.reinit().expect("zstd session reset");
        self.at_boundary = true;
    }

    pub(super) fn is_done(&self) -> bool {
        self.at_boundary
    }

    pub(super) fn decode(&mut self, input: &[u8], buf: &mut [u8]) -> io::Result<(usize, usize)> {
        let mut src = InBuffer::around(input);
        let mut dst = OutBuffer::around(buf);
        let hint = self
            .ctx
            .run(&mut src, &mut dst)
            .map_err(|e| invalid(&e.to_string()))?;
        if src.pos > 0 || dst.pos() > 0 {
            self.at_boundary = hint == 0;
        }
        Ok((src.pos, dst.pos()))
    }
}
