//! Fuzz `path::normalize`: never panic, idempotent, and a normalised path
//! has no empty or dot segments and no escaped unreserved characters, so a
//! route prefix cannot be dodged. Replayed by tests/fuzz_corpus.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringress::http::path::normalize;

fuzz_target!(|data: &[u8]| {
    let mut scratch = Vec::new();
    let Ok(once) = normalize(data, &mut scratch) else {
        assert!(
            data.starts_with(b"/") && (data.contains(&b'%') || data.contains(&b';')),
            "only bad escapes and `;` dot-segments fail"
        );
        return;
    };
    let once = once.to_vec();
    if !data.starts_with(b"/") {
        assert_eq!(once, data, "non-origin-form paths pass unchanged");
        return;
    }
    let mut scratch = Vec::new();
    let twice = normalize(&once, &mut scratch).expect("a normalised path is valid");
    assert_eq!(twice, &once[..], "not idempotent");

    assert!(once.starts_with(b"/") && once.len() <= data.len());
    for bad in [&b"//"[..], b"/./", b"/../"] {
        assert!(!once.windows(bad.len()).any(|w| w == bad), "{bad:?} left");
    }
    assert!(!once.ends_with(b"/.") && !once.ends_with(b"/.."));
    // `..;` is a dot-segment to servlet containers: refused, never passed on.
    assert!(
        !once
            .split(|&b| b == b'/')
            .any(|s| s.starts_with(b".;") || s.starts_with(b"..;"))
    );
    for (i, _) in once.iter().enumerate().filter(|&(_, &b)| b == b'%') {
        let hex = once.get(i + 1..i + 3).expect("truncated escape");
        assert!(
            hex.iter()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b))
        );
        let byte = u8::from_str_radix(std::str::from_utf8(hex).unwrap(), 16).unwrap();
        assert!(
            !(byte.is_ascii_alphanumeric() || b"-._~".contains(&byte)),
            "%{byte:02X} kept"
        );
    }
});
