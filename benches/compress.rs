//! Compression throughput, ratio and resident memory per stream for each
//! coding at a few levels, on a deterministic ~20 KB HTML page; run by
//! `bench-scripts/gzip-backend.sh` once per flate2 backend feature.
//!
//! Output: one `key=value` line per measurement, for the script to collect.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ringress::compress::{Algorithm, Encoder};

#[path = "common/page.rs"]
mod page;
use page::html_page;

/// Upstream body pieces arrive at about this size from the relay's reads.
const PIECE: usize = 4096;
const RUN_FOR: Duration = Duration::from_millis(700);
const STREAMS: usize = 64;

fn main() {
    let backend = std::env::var("GZIP_BACKEND").unwrap_or_else(|_| "default".into());
    let page = html_page(20 * 1024);
    if let Ok(path) = std::env::var("PAGE_OUT") {
        std::fs::write(path, &page).expect("write the page for the gzip(1) check");
    }
    let cases = [
        (Algorithm::Gzip, None),
        (Algorithm::Gzip, Some(2)),
        (Algorithm::Gzip, Some(3)),
        (Algorithm::Gzip, Some(4)),
        (Algorithm::Gzip, Some(6)),
        (Algorithm::Brotli, None),
        (Algorithm::Brotli, Some(5)),
        (Algorithm::Zstd, None),
        (Algorithm::Zstd, Some(1)),
    ];
    for (alg, level) in cases {
        let (size, mb_s) = throughput(alg, level, &page);
        let level = level.map_or("default".to_string(), |l| l.to_string());
        println!(
            "backend={backend} alg={} level={level} in={} out={size} ratio={:.3} mb_per_s={mb_s:.1}",
            alg.token(),
            page.len(),
            size as f64 / page.len() as f64,
        );
    }
    for alg in [Algorithm::Gzip, Algorithm::Brotli, Algorithm::Zstd] {
        for body_len in [page.len(), 1 << 20] {
            let bytes = resident_per_stream(alg, &html_page(body_len));
            println!(
                "backend={backend} alg={} level=default body={body_len} resident_per_stream={bytes}",
                alg.token()
            );
        }
    }
}

/// Steady state: one encoder reset between responses, body fed in pieces.
fn throughput(alg: Algorithm, level: Option<u32>, page: &[u8]) -> (usize, f64) {
    let mut enc = Encoder::new(alg, level);
    let mut out = Vec::with_capacity(page.len());
    let mut size = 0;
    let (start, mut bytes) = (Instant::now(), 0u64);
    while start.elapsed() < RUN_FOR {
        out.clear();
        compress(&mut enc, page, &mut out);
        size = black_box(out.len());
        bytes += page.len() as u64;
    }
    (size, bytes as f64 / start.elapsed().as_secs_f64() / 1e6)
}

fn compress(enc: &mut Encoder, body: &[u8], out: &mut Vec<u8>) {
    for piece in body.chunks(PIECE) {
        enc.write(piece, out).expect("compress");
    }
    enc.finish(out).expect("finish");
    enc.reset();
}

/// Resident set growth per live encoder after one body of `body` through it,
/// from /proc (pages the coder touched, which is what costs a busy proxy).
fn resident_per_stream(alg: Algorithm, body: &[u8]) -> usize {
    let before = resident_bytes();
    let mut out = Vec::new();
    let live: Vec<Encoder> = (0..STREAMS)
        .map(|_| {
            let mut enc = Encoder::new(alg, None);
            for piece in body.chunks(PIECE) {
                enc.write(piece, &mut out).expect("compress");
                out.clear();
            }
            enc
        })
        .collect();
    let grown = resident_bytes().saturating_sub(before);
    drop(black_box(live));
    grown / STREAMS
}

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm
        .split(' ')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("statm resident");
    pages * 4096
}
