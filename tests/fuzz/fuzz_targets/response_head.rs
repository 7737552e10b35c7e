//! Fuzz `parse_response` for both a GET and a HEAD request: never panic, an
//! accepted head has one unambiguous framing, and whether the request was
//! HEAD only ever relaxes the body rules. Replayed by tests/fuzz_corpus.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringress::http::encode::{ConnectionDirective, write_response_head};
use ringress::http::{Framing, ResponseHead, Version, empty_headers, parse_response};

const MAX_HEAD: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    let get = outcome(data, MAX_HEAD, false);
    let head = outcome(data, MAX_HEAD, true);
    // GET accepted => HEAD accepted with the same head; same "need more".
    match (get, head) {
        (Ok(Some(a)), Ok(Some(b))) => assert_eq!(a, b),
        (Ok(Some(_)), other) => panic!("GET accepted, HEAD gave {other:?}"),
        (Ok(None), other) => assert_eq!(other, Ok(None)),
        (Err(()), Ok(None)) => panic!("GET rejected, HEAD wants more"),
        (Err(()), _) => {}
    }
    // A small, input-derived limit.
    let limit = 1 + data.first().copied().unwrap_or(0) as usize * 8;
    outcome(data, limit, false).ok();
});

/// Parses and checks; the result is (head_len, status) when accepted.
fn outcome(data: &[u8], max: usize, is_head: bool) -> Result<Option<(usize, u16)>, ()> {
    let mut h = empty_headers();
    match parse_response(data, &mut h, max, is_head) {
        Ok(Some(resp)) => {
            check(data, max, is_head, &resp);
            Ok(Some((resp.head_len, resp.status)))
        }
        Ok(None) => {
            assert!(data.len() < max, "partial past the limit");
            Ok(None)
        }
        Err(e) => {
            assert_eq!(e.side, ringress::error::Side::Upstream);
            Err(())
        }
    }
}

fn within(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len())
}

fn check(data: &[u8], max: usize, is_head: bool, resp: &ResponseHead<'_, '_>) {
    let n = resp.head_len;
    assert!(n > 0 && n <= data.len() && n <= max);
    let head = &data[..n];
    assert!(
        head.ends_with(b"\r\n\r\n"),
        "head does not end in CRLF CRLF"
    );
    for (i, &b) in head.iter().enumerate() {
        assert_ne!(b, 0, "NUL in an accepted head");
        if b == b'\n' {
            assert!(i > 0 && head[i - 1] == b'\r', "bare LF at {i}");
        }
        if b == b'\r' {
            assert_eq!(head.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
    assert!(within(head, resp.reason));
    for f in resp.headers {
        assert!(within(head, f.name.as_bytes()) && within(head, f.value));
    }
    assert!((100..=999).contains(&resp.status));

    let count = |name: &str| {
        resp.headers
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(name))
            .count()
    };
    let (cls, tes) = (count("content-length"), count("transfer-encoding"));
    assert!(cls <= 1, "Content-Length twice");
    assert!(
        cls == 0 || tes == 0,
        "Content-Length with Transfer-Encoding"
    );
    assert!(tes == 0 || resp.version == Version::Http11);
    assert_eq!(cls == 1, resp.content_length.is_some());
    let no_body = is_head || resp.is_interim() || resp.status == 204 || resp.status == 304;
    match resp.framing {
        Framing::Empty => assert!(no_body || resp.content_length == Some(0)),
        Framing::Length(len) => {
            assert!(!no_body && len > 0 && resp.content_length == Some(len));
        }
        Framing::Chunked => assert!(!no_body && tes > 0),
        Framing::Close => {
            assert!(!no_body && cls == 0 && tes == 0 && !resp.reusable);
        }
    }

    // Bytes after the head never change it; a head in pieces needs more.
    let head_len_of = |buf: &[u8]| {
        let mut h = empty_headers();
        parse_response(buf, &mut h, max, is_head).map(|r| r.map(|r| r.head_len))
    };
    assert_eq!(head_len_of(head), Ok(Some(n)));
    let cut = data[0] as usize * n / 256;
    for k in [cut, n / 2, n.saturating_sub(3), n - 2, n - 1] {
        assert_eq!(head_len_of(&head[..k]), Ok(None), "prefix {k} of {n}");
    }

    // The head we send the client parses back with the same framing.
    let directive = if resp.framing == Framing::Close {
        ConnectionDirective::Close
    } else {
        ConnectionDirective::Default
    };
    let mut out = Vec::new();
    write_response_head(&mut out, resp, resp.framing, directive, true);
    let mut h: Vec<_> = empty_headers().into_iter().chain(empty_headers()).collect();
    let back = match parse_response(&out, &mut h, usize::MAX, is_head) {
        Ok(Some(back)) => back,
        other => panic!(
            "forwarded head {:?}: {other:?}",
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(back.head_len, out.len());
    assert_eq!((back.status, back.reason), (resp.status, resp.reason));
    assert_eq!(
        (back.version, back.framing),
        (Version::Http11, resp.framing)
    );
}
