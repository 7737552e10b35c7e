//! Fuzz `parse_request`: never panic, and a head it accepts must be one every
//! hop reads the same way (CRLF only, one framing, one Host, slices that
//! borrow the buffer). Replayed under `cargo test` by tests/fuzz_corpus.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

use ringress::http::encode::{ForwardOptions, UpstreamRequest, write_request_head};
use ringress::http::path::normalize;
use ringress::http::{Framing, HeadLimits, RequestHead, Version, empty_headers, parse_request};

fuzz_target!(|data: &[u8]| {
    check(data, &HeadLimits::default());
    // The same input again under small, input-derived limits.
    let b = |i: usize| data.get(i).copied().unwrap_or(0) as usize;
    let small = HeadLimits {
        max_head_size: 1 + b(0) * 8,
        max_uri_length: b(1),
        max_headers: b(2) % 8,
    };
    check(data, &small);
});

/// `inner` lies inside `outer` (an empty slice is anywhere).
fn within(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len())
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn head_len_of(data: &[u8], limits: &HeadLimits) -> Result<Option<usize>, ()> {
    let mut h = empty_headers();
    match parse_request(data, &mut h, limits) {
        Ok(r) => Ok(r.map(|r| r.head_len)),
        Err(_) => Err(()),
    }
}

fn check(data: &[u8], limits: &HeadLimits) {
    let mut h = empty_headers();
    let req = match parse_request(data, &mut h, limits) {
        Ok(Some(req)) => req,
        Ok(None) => {
            assert!(data.len() < limits.max_head_size, "partial past the limit");
            return;
        }
        Err(e) => {
            assert_eq!(e.side, ringress::error::Side::Downstream);
            return;
        }
    };
    let n = req.head_len;
    assert!(n > 0 && n <= data.len() && n <= limits.max_head_size);
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

    // Every slice borrows the head (the absolute-form empty path is "/").
    for s in [req.method, req.target, req.query, req.authority, req.host] {
        assert!(within(head, s));
    }
    assert!(within(head, req.path) || (req.path == b"/" && req.target[0] != b'/'));
    assert!(req.headers.len() <= limits.max_headers);
    for f in req.headers {
        assert!(within(head, f.name.as_bytes()) && within(head, f.value));
        assert!(!f.name.is_empty() && f.name.bytes().all(is_tchar));
    }

    // Request line.
    assert!(!req.method.is_empty() && req.method.iter().all(|&b| is_tchar(b)));
    assert_ne!(req.method, b"CONNECT");
    assert!(!req.target.is_empty() && req.target.len() <= limits.max_uri_length);
    assert!(
        req.target
            .iter()
            .all(|&b| (0x21..0x7f).contains(&b) && b != b'#' && b != b'\\')
    );
    assert!(req.path.starts_with(b"/") || (req.path == b"*" && req.method == b"OPTIONS"));
    assert!(req.query.is_empty() || req.query[0] == b'?');
    if req.target[0] == b'/' {
        assert_eq!([req.path, req.query].concat(), req.target);
    }
    assert!(req.authority.starts_with(req.host));
    assert!(req.host.starts_with(b"[") || !req.host.contains(&b':'));

    // Framing: one Host (exactly one on 1.1), never CL with TE, TE only on 1.1.
    let count = |name: &str| {
        req.headers
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(name))
            .count()
    };
    let (hosts, cls, tes) = (
        count("host"),
        count("content-length"),
        count("transfer-encoding"),
    );
    assert!(hosts <= 1 && cls <= 1);
    if req.version == Version::Http11 {
        assert_eq!(hosts, 1);
    }
    assert!(tes == 0 || cls == 0);
    assert_eq!(tes > 0, req.framing == Framing::Chunked);
    if req.framing == Framing::Chunked {
        assert_eq!(req.version, Version::Http11);
    }
    if let Framing::Length(len) = req.framing {
        let value = req.header(b"content-length").unwrap();
        let digits = value.trim_ascii();
        assert!(len > 0 && digits.iter().all(u8::is_ascii_digit));
        assert_eq!(std::str::from_utf8(digits).unwrap().parse::<u64>(), Ok(len));
    }
    if req.upgrade.is_some() {
        assert_eq!(req.version, Version::Http11);
    }

    // Bytes after the head never change it, and a head that arrives in
    // pieces is "need more", never an error.
    assert_eq!(head_len_of(head, limits), Ok(Some(n)));
    let cut = data[0] as usize * n / 256;
    for k in [cut, n / 2, n.saturating_sub(3), n - 2, n - 1] {
        assert_eq!(
            head_len_of(&head[..k], limits),
            Ok(None),
            "prefix {k} of {n}"
        );
    }
    check_forwarded(&req);
}

/// The head we send upstream parses back to the same request.
fn check_forwarded(req: &RequestHead<'_, '_>) {
    let mut scratch = Vec::new();
    let Ok(path) = normalize(req.path, &mut scratch) else {
        return;
    };
    let host: &[u8] = if req.authority.is_empty() {
        b"upstream.test"
    } else {
        req.authority
    };
    let up = UpstreamRequest {
        path,
        host,
        client_ip: IpAddr::from([192, 0, 2, 1]),
        proto: "http",
    };
    let mut out = Vec::new();
    write_request_head(&mut out, req, &up, &ForwardOptions::default());
    // Room for the fields we add on top of an input at the header limit.
    let mut h: Vec<_> = empty_headers().into_iter().chain(empty_headers()).collect();
    let wide = HeadLimits {
        max_head_size: usize::MAX,
        max_uri_length: usize::MAX,
        max_headers: usize::MAX,
    };
    let back = match parse_request(&out, &mut h, &wide) {
        Ok(Some(back)) => back,
        other => panic!(
            "forwarded head {:?}: {other:?}",
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(back.head_len, out.len());
    assert_eq!(
        (back.method, back.path, back.query, back.authority),
        (req.method, path, req.query, host)
    );
    assert_eq!((back.version, back.framing), (Version::Http11, req.framing));
    assert_eq!(back.upgrade, req.upgrade);
}
