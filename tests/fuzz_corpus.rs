//! Replays the committed fuzz inputs (tests/fuzz/corpus/TARGET/ and past
//! crashes in tests/fuzz/artifacts-kept/TARGET/) through the invariants of
//! the cargo-fuzz targets, on stable and without libFuzzer, so a regression
//! on any of them fails `cargo test`. The checks are the targets' own, from
//! tests/fuzz/checks.rs.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

#[path = "fuzz/checks.rs"]
mod checks;

const TARGETS: [&str; 4] = ["request_head", "response_head", "chunked", "path_normalize"];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz")
}

/// Runs `check` on every input kept for `target`; reports all failures.
fn replay(target: &str, check: fn(&[u8])) {
    let mut files = Vec::new();
    for kind in ["corpus", "artifacts-kept"] {
        if let Ok(dir) = fs::read_dir(fuzz_dir().join(kind).join(target)) {
            files.extend(dir.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    assert!(files.len() >= 10, "corpus for {target} is missing");
    let failed: Vec<_> = files
        .iter()
        .filter(|f| {
            let data = fs::read(f).unwrap();
            catch_unwind(AssertUnwindSafe(|| check(&data))).is_err()
        })
        .collect();
    assert!(failed.is_empty(), "{target}: failing inputs {failed:#?}");
}

#[test]
fn every_kept_directory_is_a_target() {
    for kind in ["corpus", "artifacts-kept"] {
        let Ok(dir) = fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for entry in dir {
            let name = entry.unwrap().file_name();
            let name = name.to_string_lossy();
            assert!(TARGETS.contains(&&*name), "{kind}/{name}: no such target");
        }
    }
}

#[test]
fn request_head_corpus() {
    replay("request_head", checks::check_request_head);
}

#[test]
fn response_head_corpus() {
    replay("response_head", checks::check_response_head);
}

#[test]
fn chunked_corpus() {
    replay("chunked", checks::check_chunked);
}

#[test]
fn path_normalize_corpus() {
    replay("path_normalize", checks::check_path_normalize);
}
