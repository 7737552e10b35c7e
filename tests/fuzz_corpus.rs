//! Replays the committed fuzz inputs (tests/fuzz/corpus/TARGET/ and past
//! crashes in tests/fuzz/artifacts-kept/TARGET/) through the invariants of
//! the cargo-fuzz targets, on stable and without libFuzzer, so a regression
//! on any of them fails `cargo test`. Shares no code with tests/fuzz/.

use std::fs;
use std::net::IpAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use ringress::error::Side;
use ringress::http::chunked::{ChunkedDecoder, LAST_CHUNK, encode_chunk};
use ringress::http::encode::{
    ConnectionDirective, ForwardOptions, UpstreamRequest, write_request_head, write_response_head,
};
use ringress::http::path::normalize;
use ringress::http::{
    Framing, HeadLimits, RequestHead, ResponseHead, Version, empty_headers, parse_request,
    parse_response,
};

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
    replay("request_head", |data| {
        check_request(data, &HeadLimits::default());
        let b = |i: usize| data.get(i).copied().unwrap_or(0) as usize;
        let small = HeadLimits {
            max_head_size: 1 + b(0) * 8,
            max_uri_length: b(1),
            max_headers: b(2) % 8,
        };
        check_request(data, &small);
    });
}

#[test]
fn response_head_corpus() {
    replay("response_head", |data| {
        let get = check_response(data, 16 * 1024, false);
        let head = check_response(data, 16 * 1024, true);
        match (get, head) {
            (Ok(Some(a)), b) => assert_eq!(b, Ok(Some(a)), "HEAD stricter than GET"),
            (Ok(None), b) => assert_eq!(b, Ok(None)),
            (Err(()), b) => assert_ne!(b, Ok(None)),
        }
        let limit = 1 + data.first().copied().unwrap_or(0) as usize * 8;
        check_response(data, limit, false).ok();
    });
}

#[test]
fn chunked_corpus() {
    replay("chunked", check_chunked);
}

#[test]
fn path_normalize_corpus() {
    replay("path_normalize", check_path);
}

/// `inner` lies inside `outer` (an empty slice is anywhere).
fn within(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len())
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// An accepted head ends in CRLF CRLF and has no NUL, bare LF or bare CR.
fn check_line_ends(head: &[u8]) {
    assert!(head.ends_with(b"\r\n\r\n"));
    for (i, &b) in head.iter().enumerate() {
        assert_ne!(b, 0, "NUL at {i}");
        if b == b'\n' {
            assert!(i > 0 && head[i - 1] == b'\r', "bare LF at {i}");
        }
        if b == b'\r' {
            assert_eq!(head.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
}

/// Prefixes of an accepted head, input-derived and near its end.
fn prefix_cuts(data: &[u8], n: usize) -> [usize; 5] {
    [
        data[0] as usize * n / 256,
        n / 2,
        n.saturating_sub(3),
        n - 2,
        n - 1,
    ]
}

fn check_request(data: &[u8], limits: &HeadLimits) {
    let mut h = empty_headers();
    let req = match parse_request(data, &mut h, limits) {
        Ok(Some(req)) => req,
        Ok(None) => return assert!(data.len() < limits.max_head_size),
        Err(e) => return assert_eq!(e.side, Side::Downstream),
    };
    let n = req.head_len;
    assert!(n > 0 && n <= data.len() && n <= limits.max_head_size);
    let head = &data[..n];
    check_line_ends(head);
    for s in [req.method, req.target, req.query, req.authority, req.host] {
        assert!(within(head, s));
    }
    assert!(within(head, req.path) || (req.path == b"/" && req.target[0] != b'/'));
    assert!(req.headers.len() <= limits.max_headers);
    for f in req.headers {
        assert!(within(head, f.name.as_bytes()) && within(head, f.value));
        assert!(!f.name.is_empty() && f.name.bytes().all(is_tchar));
    }
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
    assert!(hosts <= 1 && cls <= 1 && (tes == 0 || cls == 0));
    assert!(req.version == Version::Http10 || hosts == 1);
    assert_eq!(tes > 0, req.framing == Framing::Chunked);
    assert!(req.framing != Framing::Chunked || req.version == Version::Http11);
    if let Framing::Length(len) = req.framing {
        let digits = req.header(b"content-length").unwrap().trim_ascii();
        assert!(len > 0 && digits.iter().all(u8::is_ascii_digit));
        assert_eq!(std::str::from_utf8(digits).unwrap().parse::<u64>(), Ok(len));
    }
    assert!(req.upgrade.is_none() || req.version == Version::Http11);

    let head_len_of = |buf: &[u8]| {
        let mut h = empty_headers();
        parse_request(buf, &mut h, limits).map(|r| r.map(|r| r.head_len))
    };
    assert_eq!(head_len_of(head), Ok(Some(n)));
    for k in prefix_cuts(data, n) {
        assert_eq!(head_len_of(&head[..k]), Ok(None), "prefix {k} of {n}");
    }
    check_forwarded_request(&req);
}

/// Header room for a forwarded head: our own fields on top of the input's.
fn wide_headers<'b>() -> Vec<std::mem::MaybeUninit<httparse::Header<'b>>> {
    empty_headers().into_iter().chain(empty_headers()).collect()
}

/// The head we send upstream parses back to the same request.
fn check_forwarded_request(req: &RequestHead<'_, '_>) {
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
    let wide = HeadLimits {
        max_head_size: usize::MAX,
        max_uri_length: usize::MAX,
        max_headers: usize::MAX,
    };
    let mut h = wide_headers();
    let Ok(Some(back)) = parse_request(&out, &mut h, &wide) else {
        panic!(
            "forwarded head refused: {:?}",
            String::from_utf8_lossy(&out)
        );
    };
    assert_eq!(back.head_len, out.len());
    assert_eq!(
        (back.method, back.path, back.query, back.authority),
        (req.method, path, req.query, host)
    );
    assert_eq!((back.version, back.framing), (Version::Http11, req.framing));
    assert_eq!(back.upgrade, req.upgrade);
}

fn check_response(data: &[u8], max: usize, is_head: bool) -> Result<Option<(usize, u16)>, ()> {
    let mut h = empty_headers();
    match parse_response(data, &mut h, max, is_head) {
        Ok(Some(resp)) => {
            check_response_head(data, max, is_head, &resp);
            Ok(Some((resp.head_len, resp.status)))
        }
        Ok(None) => {
            assert!(data.len() < max);
            Ok(None)
        }
        Err(e) => {
            assert_eq!(e.side, Side::Upstream);
            Err(())
        }
    }
}

fn check_response_head(data: &[u8], max: usize, is_head: bool, resp: &ResponseHead<'_, '_>) {
    let n = resp.head_len;
    assert!(n > 0 && n <= data.len() && n <= max);
    let head = &data[..n];
    check_line_ends(head);
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
    assert!(cls <= 1 && (cls == 0 || tes == 0));
    assert!(tes == 0 || resp.version == Version::Http11);
    assert_eq!(cls == 1, resp.content_length.is_some());
    let no_body = is_head || resp.is_interim() || resp.status == 204 || resp.status == 304;
    match resp.framing {
        Framing::Empty => assert!(no_body || resp.content_length == Some(0)),
        Framing::Length(len) => assert!(!no_body && len > 0 && resp.content_length == Some(len)),
        Framing::Chunked => assert!(!no_body && tes > 0),
        Framing::Close => assert!(!no_body && cls == 0 && tes == 0 && !resp.reusable),
    }
    let head_len_of = |buf: &[u8]| {
        let mut h = empty_headers();
        parse_response(buf, &mut h, max, is_head).map(|r| r.map(|r| r.head_len))
    };
    assert_eq!(head_len_of(head), Ok(Some(n)));
    for k in prefix_cuts(data, n) {
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
    let mut h = wide_headers();
    let Ok(Some(back)) = parse_response(&out, &mut h, usize::MAX, is_head) else {
        panic!(
            "forwarded head refused: {:?}",
            String::from_utf8_lossy(&out)
        );
    };
    assert_eq!(back.head_len, out.len());
    assert_eq!((back.status, back.reason), (resp.status, resp.reason));
    assert_eq!(
        (back.version, back.framing),
        (Version::Http11, resp.framing)
    );
}

/// Decoded data, bytes used (or the error), and whether the body ended.
type Decoded = (Vec<u8>, Result<usize, ()>, bool);

/// Decodes `data` fed in pieces ending at each of `ends`.
fn decode(data: &[u8], ends: &[usize]) -> Decoded {
    let mut d = ChunkedDecoder::new();
    let mut out = Vec::new();
    let (mut start, mut used) = (0, 0);
    for &end in ends {
        let piece = &data[start..end];
        start = end;
        let Ok(n) = d.decode(piece, |b| out.extend_from_slice(b)) else {
            return (out, Err(()), d.is_done());
        };
        assert!(n == piece.len() || (n < piece.len() && d.is_done()));
        used += n;
        if d.is_done() {
            break;
        }
    }
    (out, Ok(used), d.is_done())
}

fn check_chunked(data: &[u8]) {
    let len = data.len();
    let whole = decode(data, &[len]);
    let hash = data
        .iter()
        .fold(0usize, |h, &b| h.wrapping_mul(31).wrapping_add(b as usize));
    let mut cuts = vec![hash % (len + 1), len / 2];
    if len <= 256 {
        cuts.extend(0..=len);
    }
    for cut in cuts {
        assert_eq!(decode(data, &[cut, len]), whole, "split at {cut}");
    }
    let bytes: Vec<usize> = (1..=len).collect();
    assert_eq!(decode(data, &bytes), whole, "byte at a time");

    let (out, used, done) = &whole;
    assert!(out.len() <= len);
    match used {
        Err(()) => assert!(!done),
        Ok(used) if !done => assert_eq!(*used, len),
        Ok(used) => {
            let body = &data[..*used];
            assert!(body.len() >= 5 && body.ends_with(b"\r\n"));
            assert_eq!(decode(body, &[body.len()]), whole);
            let mut again = Vec::new();
            encode_chunk(&mut again, out);
            again.extend_from_slice(LAST_CHUNK);
            let n = again.len();
            assert_eq!(decode(&again, &[n]), (out.clone(), Ok(n), true));
        }
    }
}

fn check_path(data: &[u8]) {
    let mut scratch = Vec::new();
    let Ok(once) = normalize(data, &mut scratch) else {
        return assert!(data.starts_with(b"/") && (data.contains(&b'%') || data.contains(&b';')));
    };
    let once = once.to_vec();
    if !data.starts_with(b"/") {
        return assert_eq!(once, data);
    }
    let mut scratch = Vec::new();
    assert_eq!(
        normalize(&once, &mut scratch),
        Ok(&once[..]),
        "not idempotent"
    );
    assert!(once.starts_with(b"/") && once.len() <= data.len());
    for bad in [&b"//"[..], b"/./", b"/../"] {
        assert!(!once.windows(bad.len()).any(|w| w == bad));
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
        assert!(!(byte.is_ascii_alphanumeric() || b"-._~".contains(&byte)));
    }
}
