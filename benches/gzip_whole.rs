//! Whole-body gzip (src/compress/whole.rs): compressed size and speed of
//! each library at the levels that could stand in for nginx's level 1, on
//! the page `benches/compress.rs` uses and on gzip-vs.sh's page (the file
//! named by $VS_PAGE; `bench-scripts/gzip-backend.sh whole` makes it, and
//! gets html_page back in $PAGE_OUT).
//!
//! Each configuration compresses its page `CALLS` times per round, all of
//! them in turn, for `ROUNDS` rounds ($GZIP_WHOLE_ROUNDS): load from the
//! rest of a shared machine lands on every configuration alike, and the
//! median round is reported with the slowest and fastest.
//!
//! Output: one `key=value` line per page and configuration.

use std::hint::black_box;
use std::io::Read;
use std::time::Instant;

use ringress::compress::{WHOLE_GZIP_BACKEND, WholeGzip};

#[path = "common/page.rs"]
mod page;
use page::html_page;

const CALLS: usize = 200;
const ROUNDS: usize = 101;

fn main() {
    let rounds = std::env::var("GZIP_WHOLE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS);
    let mut pages = vec![("html_page", html_page(20 * 1024))];
    if let Ok(path) = std::env::var("PAGE_OUT") {
        std::fs::write(path, &pages[0].1).expect("write the page for the gzip(1) check");
    }
    if let Ok(path) = std::env::var("VS_PAGE") {
        pages.push(("vs_page", std::fs::read(&path).expect("read $VS_PAGE")));
    }
    let mut configs: Vec<WholeGzip> = [1, 2].map(WholeGzip::libdeflate).into();
    configs.extend([0, 1, 3].into_iter().filter_map(WholeGzip::isal));
    let picked = WholeGzip::new(1);
    println!(
        "whole_gzip_backend={WHOLE_GZIP_BACKEND} gzip_level_1={} rounds={rounds} calls={CALLS}",
        picked.library()
    );
    for (name, page) in &pages {
        let sizes: Vec<usize> = configs.iter_mut().map(|c| checked_size(c, page)).collect();
        let speeds = interleaved(&mut configs, page, rounds);
        for ((c, size), mut mb_s) in configs.iter().zip(sizes).zip(speeds) {
            mb_s.sort_by(f64::total_cmp);
            println!(
                "page={name} in={} lib={} level={} out={size} ratio={:.3} mb_per_s={:.1} min={:.1} max={:.1}",
                page.len(),
                c.library(),
                c.level(),
                size as f64 / page.len() as f64,
                mb_s[mb_s.len() / 2],
                mb_s[0],
                mb_s[mb_s.len() - 1],
            );
        }
    }
}

/// The member's size, after checking it decodes to the page.
fn checked_size(c: &mut WholeGzip, page: &[u8]) -> usize {
    let mut out = Vec::new();
    c.compress(page, &mut out).expect("compress");
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(&out[..])
        .read_to_end(&mut back)
        .expect("gunzip");
    assert_eq!(back, page, "{} level {}", c.library(), c.level());
    out.len()
}

/// MB/s of each configuration in each round, the configurations taking
/// turns within a round.
fn interleaved(configs: &mut [WholeGzip], page: &[u8], rounds: usize) -> Vec<Vec<f64>> {
    let mut speeds = vec![Vec::with_capacity(rounds); configs.len()];
    let mut out = Vec::with_capacity(2 * page.len());
    for _ in 0..rounds {
        for (c, mb_s) in configs.iter_mut().zip(&mut speeds) {
            let start = Instant::now();
            for _ in 0..CALLS {
                out.clear();
                c.compress(black_box(page), &mut out).expect("compress");
                black_box(&out);
            }
            let bytes = (CALLS * page.len()) as f64;
            mb_s.push(bytes / start.elapsed().as_secs_f64() / 1e6);
        }
    }
    speeds
}
