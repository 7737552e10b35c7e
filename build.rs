//! Picks the whole-body gzip backend (src/compress/whole.rs) at build time:
//! with the `isal` feature (on by default) and a libisal that pkg-config
//! finds, it sets `cfg(ringress_isal)`; otherwise the build goes on with
//! libdeflate alone, so a machine without libisal-dev still builds.
//!
//! Only libisal 2.30 and 2.31 are accepted: isal-sys 0.5.3's bindings were
//! generated from 2.31's igzip_lib.h, and 2.30's (Debian bookworm) declares
//! the same structures field for field (2.31 only adds a zlib header
//! function isal-rs does not call). A later release may change the layout
//! the bindings assume, so it falls back until checked.

use std::env;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ringress_isal)");
    println!("cargo::rerun-if-changed=build.rs");
    let backend = if env::var_os("CARGO_FEATURE_ISAL").is_some() {
        match pkg_config::Config::new()
            .range_version("2.30".."2.32")
            // isal-sys links it; a search path for the system's own
            // directory here could shadow other crates' bundled libraries.
            .cargo_metadata(false)
            .probe("libisal")
        {
            Ok(lib) => {
                println!("cargo::rustc-cfg=ringress_isal");
                format!("isa-l {}", lib.version)
            }
            Err(e) => {
                let why = match e {
                    pkg_config::Error::Command { .. } => "pkg-config is not installed",
                    _ => "pkg-config finds no libisal 2.30-2.31",
                };
                println!(
                    "cargo::warning={why}: whole-body gzip uses libdeflate (Debian: apt-get install libisal-dev pkg-config)"
                );
                "libdeflate".to_string()
            }
        }
    } else {
        "libdeflate".to_string()
    };
    println!("cargo::rustc-env=RINGRESS_WHOLE_GZIP={backend}");
}
