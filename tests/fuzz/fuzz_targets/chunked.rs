//! Fuzz `ChunkedDecoder`: never panic, and how the input is split across
//! reads never changes the decoded data, where it stops, or whether it
//! fails. The input is the raw body. Replayed by tests/fuzz_corpus.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringress::http::chunked::{ChunkedDecoder, LAST_CHUNK, encode_chunk};

fuzz_target!(|data: &[u8]| {
    let whole = decode(data, &[data.len()]);
    check(data, &whole);
    // One split chosen by the input itself, the middle, and every split of
    // short inputs.
    let hash = data
        .iter()
        .fold(0usize, |h, &b| h.wrapping_mul(31).wrapping_add(b as usize));
    let mut cuts = vec![hash % (data.len() + 1), data.len() / 2];
    if data.len() <= 64 {
        cuts.extend(0..=data.len());
    }
    for cut in cuts {
        assert_eq!(decode(data, &[cut, data.len()]), whole, "split at {cut}");
    }
    let bytes: Vec<usize> = (1..=data.len()).collect();
    assert_eq!(decode(data, &bytes), whole, "byte at a time");
});

/// What one decode produced: data, bytes used or the error, and done.
#[derive(Debug, PartialEq)]
struct Outcome {
    out: Vec<u8>,
    used: Result<usize, ()>,
    done: bool,
}

/// Decodes `data` fed in pieces ending at each of `ends`.
fn decode(data: &[u8], ends: &[usize]) -> Outcome {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let (mut start, mut used) = (0, 0);
    for &end in ends {
        let piece = &data[start..end];
        start = end;
        match d.decode(piece, |b| out.extend_from_slice(b)) {
            Ok(n) => {
                assert!(n <= piece.len());
                assert!(n == piece.len() || d.is_done(), "stopped early, not done");
                used += n;
            }
            Err(_) => {
                return Outcome {
                    out,
                    used: Err(()),
                    done: d.is_done(),
                };
            }
        }
        if d.is_done() {
            break;
        }
    }
    Outcome {
        out,
        used: Ok(used),
        done: d.is_done(),
    }
}

fn check(data: &[u8], whole: &Outcome) {
    assert!(whole.out.len() <= data.len());
    if whole.used.is_err() {
        assert!(!whole.done);
        return;
    }
    let used = whole.used.unwrap();
    if !whole.done {
        assert_eq!(used, data.len());
        return;
    }
    let body = &data[..used];
    assert!(body.len() >= 5 && body.ends_with(b"\r\n"));
    // The body alone decodes the same, and so does our own re-encoding.
    assert_eq!(&decode(body, &[body.len()]), whole);
    let mut again = Vec::new();
    encode_chunk(&mut again, &whole.out);
    again.extend_from_slice(LAST_CHUNK);
    let re = decode(&again, &[again.len()]);
    assert_eq!(
        (re.out, re.used, re.done),
        (whole.out.clone(), Ok(again.len()), true)
    );
}
