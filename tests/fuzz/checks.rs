//! The invariants of the fuzz targets, one `check_*` per target. Included
//! (`#[path] mod checks;`) by each target in fuzz_targets/ and by
//! tests/fuzz_corpus.rs, which replays the committed corpus through them
//! under plain `cargo test`, so the two can never drift apart. Depends only
//! on `ringress` and std, which both crates have.
//!
//! Every check must never panic on any input except to report a broken
//! invariant.
// Each fuzz target calls only its own check.
#![allow(dead_code)]

use std::net::IpAddr;

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

/// The response head limit used unless the input picks a small one.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Inputs up to this long are also decoded split at every point.
const SPLIT_EVERYWHERE_UP_TO: usize = 256;

/// `parse_request`: never panic, and a head it accepts must be one every hop
/// reads the same way (CRLF only, one framing, one Host, slices that borrow
/// the buffer). Checked under the default limits and again under small,
/// input-derived ones.
pub fn check_request_head(data: &[u8]) {
    check_request(data, &HeadLimits::default());
    let b = |i: usize| data.get(i).copied().unwrap_or(0) as usize;
    let small = HeadLimits {
        max_head_size: 1 + b(0) * 8,
        max_uri_length: b(1),
        max_headers: b(2) % 8,
    };
    check_request(data, &small);
}

/// `parse_response` for both a GET and a HEAD request: never panic, an
/// accepted head has one unambiguous framing, and whether the request was
/// HEAD only ever relaxes the body rules.
pub fn check_response_head(data: &[u8]) {
    let get = check_response(data, MAX_RESPONSE_HEAD, false);
    let head = check_response(data, MAX_RESPONSE_HEAD, true);
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
    check_response(data, limit, false).ok();
}

/// `ChunkedDecoder` on a raw body: never panic, and how the input is split
/// across reads never changes the decoded data, where it stops, or whether
/// it fails.
pub fn check_chunked(data: &[u8]) {
    let len = data.len();
    let whole = decode(data, &[len]);
    check_decoded(data, &whole);
    // One split chosen by the input itself, the middle, and every split of
    // short inputs.
    let hash = data
        .iter()
        .fold(0usize, |h, &b| h.wrapping_mul(31).wrapping_add(b as usize));
    let mut cuts = vec![hash % (len + 1), len / 2];
    if len <= SPLIT_EVERYWHERE_UP_TO {
        cuts.extend(0..=len);
    }
    for cut in cuts {
        assert_eq!(decode(data, &[cut, len]), whole, "split at {cut}");
    }
    let bytes: Vec<usize> = (1..=len).collect();
    assert_eq!(decode(data, &bytes), whole, "byte at a time");
}

/// `path::normalize`: never panic, idempotent, and a normalised path has no
/// empty or dot segments and no escaped unreserved characters, so a route
/// prefix cannot be dodged.
pub fn check_path_normalize(data: &[u8]) {
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
}

// ---- heads (request and response) ----

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
    assert!(
        head.ends_with(b"\r\n\r\n"),
        "head does not end in CRLF CRLF"
    );
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

/// Bytes after the head never change it, and a head that arrives in pieces
/// is "need more", never an error. `head_len_of` parses a buffer.
fn check_prefixes(data: &[u8], n: usize, head_len_of: impl Fn(&[u8]) -> Result<Option<usize>, ()>) {
    let head = &data[..n];
    assert_eq!(head_len_of(head), Ok(Some(n)));
    let cut = data[0] as usize * n / 256;
    for k in [cut, n / 2, n.saturating_sub(3), n - 2, n - 1] {
        assert_eq!(head_len_of(&head[..k]), Ok(None), "prefix {k} of {n}");
    }
}

fn check_request(data: &[u8], limits: &HeadLimits) {
    let mut h = empty_headers();
    let req = match parse_request(data, &mut h, limits) {
        Ok(Some(req)) => req,
        Ok(None) => {
            assert!(data.len() < limits.max_head_size, "partial past the limit");
            return;
        }
        Err(e) => {
            assert_eq!(e.side, Side::Downstream);
            return;
        }
    };
    let n = req.head_len;
    assert!(n > 0 && n <= data.len() && n <= limits.max_head_size);
    let head = &data[..n];
    check_line_ends(head);

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
    assert!(
        req.version == Version::Http10 || hosts == 1,
        "no Host on 1.1"
    );
    assert!(
        tes == 0 || cls == 0,
        "Content-Length with Transfer-Encoding"
    );
    assert_eq!(tes > 0, req.framing == Framing::Chunked);
    assert!(req.framing != Framing::Chunked || req.version == Version::Http11);
    if let Framing::Length(len) = req.framing {
        let digits = req.header(b"content-length").unwrap().trim_ascii();
        assert!(len > 0 && digits.iter().all(u8::is_ascii_digit));
        assert_eq!(std::str::from_utf8(digits).unwrap().parse::<u64>(), Ok(len));
    }
    assert!(req.upgrade.is_none() || req.version == Version::Http11);

    check_prefixes(data, n, |buf| {
        let mut h = empty_headers();
        parse_request(buf, &mut h, limits)
            .map(|r| r.map(|r| r.head_len))
            .map_err(|_| ())
    });
    check_forwarded_request(&req);
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
        reserved: &[],
        client_cert: None,
        edits: &ringress::http::encode::NO_EDITS,
    };
    let mut out = Vec::new();
    write_request_head(&mut out, req, &up, &ForwardOptions::default());
    let wide = HeadLimits {
        max_head_size: usize::MAX,
        max_uri_length: usize::MAX,
        max_headers: usize::MAX,
    };
    // Room for the fields we add on top of an input at the header limit.
    let mut h: Vec<_> = empty_headers().into_iter().chain(empty_headers()).collect();
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

/// Parses and checks; the result is (head_len, status) when accepted.
fn check_response(data: &[u8], max: usize, is_head: bool) -> Result<Option<(usize, u16)>, ()> {
    let mut h = empty_headers();
    match parse_response(data, &mut h, max, is_head) {
        Ok(Some(resp)) => {
            check_accepted_response(data, max, is_head, &resp);
            Ok(Some((resp.head_len, resp.status)))
        }
        Ok(None) => {
            assert!(data.len() < max, "partial past the limit");
            Ok(None)
        }
        Err(e) => {
            assert_eq!(e.side, Side::Upstream);
            Err(())
        }
    }
}

fn check_accepted_response(data: &[u8], max: usize, is_head: bool, resp: &ResponseHead<'_, '_>) {
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

    check_prefixes(data, n, |buf| {
        let mut h = empty_headers();
        parse_response(buf, &mut h, max, is_head)
            .map(|r| r.map(|r| r.head_len))
            .map_err(|_| ())
    });

    // The head we send the client parses back with the same framing.
    let directive = if resp.framing == Framing::Close {
        ConnectionDirective::Close
    } else {
        ConnectionDirective::Default
    };
    let mut out = Vec::new();
    write_response_head(&mut out, resp, resp.framing, directive, true);
    // Room for the fields we add on top of an input at the header limit.
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

// ---- chunked bodies ----

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
        let Ok(n) = d.decode(piece, |b| out.extend_from_slice(b)) else {
            return Outcome {
                out,
                used: Err(()),
                done: d.is_done(),
            };
        };
        assert!(n <= piece.len());
        assert!(n == piece.len() || d.is_done(), "stopped early, not done");
        used += n;
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

/// A whole-input decode: a failure is never done, an unfinished body used
/// every byte, and a finished one stops right after its final CRLF.
fn check_decoded(data: &[u8], whole: &Outcome) {
    assert!(whole.out.len() <= data.len());
    let used = match whole.used {
        Err(()) => return assert!(!whole.done),
        Ok(used) if !whole.done => return assert_eq!(used, data.len()),
        Ok(used) => used,
    };
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
