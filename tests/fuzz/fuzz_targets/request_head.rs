//! Fuzz target: `checks::check_request_head` (../checks.rs), also run
//! over the committed corpus by tests/fuzz_corpus.rs under `cargo test`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_request_head(data));
