//! Response compression over real sockets: `Accept-Encoding` negotiation,
//! the framing and validators of a compressed answer, what is passed on
//! untouched, streaming piece by piece, exact round trips for every
//! algorithm, and compression on a cached route.

mod common;

use std::io::{BufRead, Read, Write};
use std::time::Duration;

use common::cache_upstream::*;
use common::*;

const COMPRESS: &str = r#"compress = { algorithms = ["zstd", "br", "gzip"], min_size = 256, types = ["text/*", "application/json", "application/javascript", "image/svg+xml"], level = 1 }"#;

fn compressing(origin: &Origin) -> Proxy {
    Proxy::start(&ConfigBuilder::new(origin.addr()).route(COMPRESS).build())
}

/// `GET path` with `headers` (whole lines) on `c`.
fn get_on(c: &mut Client, path: &str, headers: &str) -> Response {
    c.request(format!("GET {path} HTTP/1.1\r\nHost: test.local\r\n{headers}\r\n").as_bytes())
}

fn fetch(proxy: &Proxy, path: &str, headers: &str) -> Response {
    get_on(&mut proxy.connect(), path, headers)
}

fn decode(encoding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => flate2::read::MultiGzDecoder::new(data)
            .read_to_end(&mut out)
            .map(|_| ())
            .expect("valid gzip"),
        "br" => brotli::Decompressor::new(data, 4096)
            .read_to_end(&mut out)
            .map(|_| ())
            .expect("valid brotli"),
        "zstd" => out = zstd::stream::decode_all(data).expect("valid zstd"),
        other => panic!("no decoder for {other}"),
    }
    out
}

/// Every token of every `Vary` field, lower-cased.
fn vary(r: &Response) -> Vec<String> {
    let mut tokens: Vec<String> = r
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("vary"))
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    tokens.sort();
    tokens
}

/// Checks `r` is `original` compressed with `encoding` and framed as a
/// stream compressed on the way to an HTTP/1.1 client.
fn assert_compressed(r: &Response, encoding: &str, original: &[u8]) {
    assert_eq!(r.header("content-length"), None, "{}", r.raw_head);
    assert_eq!(
        r.header("transfer-encoding"),
        Some("chunked"),
        "{}",
        r.raw_head
    );
    assert_encoded(r, encoding, original);
}

/// Checks `r` is `original` compressed with `encoding`, however framed.
fn assert_encoded(r: &Response, encoding: &str, original: &[u8]) {
    assert_eq!(r.status, 200, "{}", r.raw_head);
    assert_eq!(
        r.header("content-encoding"),
        Some(encoding),
        "{}",
        r.raw_head
    );
    assert!(
        vary(r).contains(&"accept-encoding".to_string()),
        "{}",
        r.raw_head
    );
    assert!(
        decode(encoding, &r.body) == original,
        "{encoding} decodes to the origin's bytes"
    );
}

/// Checks `r` carries `original` as the origin sent it.
fn assert_identity(r: &Response, original: &[u8]) {
    assert_eq!(r.header("content-encoding"), None, "{}", r.raw_head);
    let length = original.len().to_string();
    assert_eq!(
        r.header("content-length"),
        Some(length.as_str()),
        "{}",
        r.raw_head
    );
    assert!(r.body == original, "byte-identical body:\n{}", r.raw_head);
}

fn text(body: Vec<u8>) -> Reply {
    Reply::ok(body).header("Content-Type", "text/plain")
}

#[test]
fn accept_encoding_is_negotiated_by_q_value_then_server_preference() {
    let body = text_body(1024);
    let sent = body.clone();
    let origin = Origin::start(move |_| text(sent.clone()));
    let proxy = compressing(&origin);
    let cases = [
        ("gzip, br, zstd", Some("zstd")),
        ("gzip;q=1, br;q=0.5", Some("gzip")),
        ("br;q=0, gzip;q=0", None),
        ("*", Some("zstd")),
        ("gzip", Some("gzip")),
        ("br", Some("br")),
        ("br;q=0.9, gzip;q=0.9, zstd;q=0.1", Some("br")),
        ("*;q=0.5, zstd;q=0", Some("br")),
        ("GZIP;Q=0.8", Some("gzip")),
        ("identity", None),
        ("deflate", None),
    ];
    let mut c = proxy.connect();
    for (accept, chosen) in cases {
        let r = get_on(&mut c, "/n", &format!("Accept-Encoding: {accept}\r\n"));
        match chosen {
            Some(encoding) => assert_compressed(&r, encoding, &body),
            None => assert_identity(&r, &body),
        }
    }
    assert_identity(&get_on(&mut c, "/n", ""), &body);
}

#[test]
fn a_compressed_answer_is_chunked_weakly_tagged_and_varies() {
    let body = text_body(2048);
    let sent = body.clone();
    let origin = Origin::start(move |req| {
        let reply = Reply::ok(sent.clone()).header("Content-Type", "text/html; charset=utf-8");
        match req.target.as_str() {
            "/strong" => reply
                .header("ETag", "\"abc\"")
                .header("Vary", "Accept-Language"),
            "/weak" => reply.header("ETag", "W/\"w\""),
            _ => reply,
        }
    });
    let proxy = compressing(&origin);
    let gzip = "Accept-Encoding: gzip\r\n";
    let mut c = proxy.connect();

    let strong = get_on(&mut c, "/strong", gzip);
    assert_compressed(&strong, "gzip", &body);
    assert!(strong.chunked);
    assert_eq!(strong.header("etag"), Some("W/\"abc\""));
    assert_eq!(vary(&strong), ["accept-encoding", "accept-language"]);

    let weak = get_on(&mut c, "/weak", gzip);
    assert_compressed(&weak, "gzip", &body);
    assert_eq!(weak.header("etag"), Some("W/\"w\""));
    assert_eq!(vary(&weak), ["accept-encoding"]);

    let plain = get_on(&mut c, "/plain", gzip);
    assert_compressed(&plain, "gzip", &body);
    assert_eq!(plain.header("etag"), None);
    assert_eq!(origin.total(), 3);
}

#[test]
fn an_http_1_0_client_gets_a_close_delimited_compressed_body() {
    let body = text_body(4096);
    let sent = body.clone();
    let origin = Origin::start(move |_| text(sent.clone()));
    let proxy = compressing(&origin);
    let mut c = proxy.connect();
    c.send(b"GET /old HTTP/1.0\r\nHost: test.local\r\nAccept-Encoding: gzip\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-encoding"), Some("gzip"), "{}", r.raw_head);
    assert_eq!(r.header("content-length"), None, "{}", r.raw_head);
    assert_eq!(r.header("transfer-encoding"), None, "{}", r.raw_head);
    assert!(decode("gzip", &r.body) == body);
    assert!(c.is_closed());
}

#[test]
fn answers_that_are_not_compressed_pass_byte_identical() {
    let big = text_body(2048);
    let encoded = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&big).unwrap();
        e.finish().unwrap()
    };
    let (sent_big, sent_encoded) = (big.clone(), encoded.clone());
    let origin = Origin::start(move |req| {
        let typed = |t: &str| Reply::ok(sent_big.clone()).header("Content-Type", t);
        match req.target.as_str() {
            "/encoded" => Reply::ok(sent_encoded.clone())
                .header("Content-Type", "text/plain")
                .header("Content-Encoding", "gzip"),
            "/small" => text(sent_big[..255].to_vec()),
            "/png" => typed("image/png"),
            "/octets" => typed("application/octet-stream"),
            "/untyped" => Reply::ok(sent_big.clone()),
            "/no-transform" => typed("text/plain").header("Cache-Control", "no-transform"),
            "/control" => typed("text/plain"),
            _ => typed("nope/nope"),
        }
    });
    let proxy = compressing(&origin);
    let all = "Accept-Encoding: gzip, br, zstd\r\n";
    let mut c = proxy.connect();

    // The route does compress: only what follows is left alone.
    assert_compressed(&get_on(&mut c, "/control", all), "zstd", &big);
    let r = get_on(&mut c, "/encoded", all);
    assert_eq!(r.header("content-encoding"), Some("gzip"), "{}", r.raw_head);
    assert_eq!(
        r.header("content-length"),
        Some(encoded.len().to_string().as_str())
    );
    assert!(r.body == encoded, "the origin's gzip bytes, untouched");
    for path in ["/small", "/png", "/octets", "/untyped", "/no-transform"] {
        let r = get_on(&mut c, path, all);
        let original = if path == "/small" {
            &big[..255]
        } else {
            &big[..]
        };
        assert_eq!(r.status, 200, "{path}");
        assert_identity(&r, original);
    }
}

#[test]
fn listed_types_are_compressed() {
    let body = text_body(1024);
    let sent = body.clone();
    let origin = Origin::start(move |req| {
        let ty = req.target.trim_start_matches("/?type=").replace("%20", " ");
        Reply::ok(sent.clone()).header("Content-Type", &ty)
    });
    let proxy = compressing(&origin);
    let mut c = proxy.connect();
    for ty in [
        "text/css",
        "text/plain;%20charset=utf-8",
        "application/json",
        "application/javascript",
        "image/svg+xml",
    ] {
        let r = get_on(&mut c, &format!("/?type={ty}"), "Accept-Encoding: gzip\r\n");
        assert_compressed(&r, "gzip", &body);
    }
}

#[test]
fn no_content_and_not_modified_are_untouched() {
    let origin = Origin::start(|req| match req.target.as_str() {
        "/204" => Reply {
            body: Body::Empty,
            ..Reply::new(204, "")
        }
        .header("Content-Type", "text/plain"),
        "/200" => text(text_body(1024)),
        _ => Reply::not_modified()
            .header("Content-Type", "text/plain")
            .header("ETag", "\"abc\""),
    });
    let proxy = compressing(&origin);
    let mut c = proxy.connect();
    let none = get_on(&mut c, "/204", "Accept-Encoding: gzip\r\n");
    assert_eq!(none.status, 204);
    assert_eq!(none.header("content-encoding"), None, "{}", none.raw_head);
    assert_eq!(none.header("transfer-encoding"), None, "{}", none.raw_head);
    let same = get_on(
        &mut c,
        "/304",
        "Accept-Encoding: gzip\r\nIf-None-Match: \"abc\"\r\n",
    );
    assert_eq!(same.status, 304);
    assert_eq!(same.header("content-encoding"), None, "{}", same.raw_head);
    assert_eq!(same.header("transfer-encoding"), None, "{}", same.raw_head);
    // Both without a body: the next answer is framed on its own, and it
    // shows the route does compress.
    let control = get_on(&mut c, "/200", "Accept-Encoding: gzip\r\n");
    assert_compressed(&control, "gzip", &text_body(1024));
}

#[test]
fn head_gets_the_headers_get_would_without_a_body() {
    let body = text_body(2048);
    let sent = body.clone();
    let origin = Origin::start(move |_| text(sent.clone()));
    let proxy = compressing(&origin);
    let mut c = proxy.connect();
    let head = c.request(b"HEAD /h HTTP/1.1\r\nHost: test.local\r\nAccept-Encoding: gzip\r\n\r\n");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-encoding"),
        Some("gzip"),
        "{}",
        head.raw_head
    );
    assert_eq!(head.header("content-length"), None, "{}", head.raw_head);
    assert!(vary(&head).contains(&"accept-encoding".to_string()));
    // Nothing followed the head.
    let get = get_on(&mut c, "/h", "Accept-Encoding: gzip\r\n");
    assert_compressed(&get, "gzip", &body);
    assert_eq!(origin.requests()[0].method, "HEAD");
}

/// Reads one chunk of a chunked body; None at the last chunk.
fn read_chunk(c: &mut Client) -> Option<Vec<u8>> {
    let mut line = String::new();
    c.reader.read_line(&mut line).expect("a chunk size in time");
    let size = usize::from_str_radix(line.trim_end(), 16).expect("a chunk size");
    if size == 0 {
        return None;
    }
    let mut data = vec![0; size + 2];
    c.reader.read_exact(&mut data).expect("the chunk in time");
    data.truncate(size);
    Some(data)
}

#[test]
fn compression_streams_each_piece_as_it_arrives() {
    let pieces: Vec<Vec<u8>> = text_body(5 * 400).chunks(400).map(<[u8]>::to_vec).collect();
    let gate = Gate::default();
    let mut steps = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        if i > 0 {
            steps.push(Step::Wait(gate.clone()));
        }
        steps.push(Step::Data(p.clone()));
    }
    let origin = Origin::start(move |_| {
        Reply::chunked(200, steps.clone()).header("Content-Type", "text/plain")
    });
    let proxy = compressing(&origin);
    let mut c = proxy.connect();
    // A proxy that holds the pieces back fails here, not at the harness
    // timeout.
    c.stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    c.send(b"GET /stream HTTP/1.1\r\nHost: test.local\r\nAccept-Encoding: gzip\r\n\r\n");
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        let mut line = String::new();
        assert!(c.reader.read_line(&mut line).expect("the head in time") > 0);
        head.push_str(&line);
    }
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\ncontent-encoding: gzip\r\n"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\ntransfer-encoding: chunked\r\n"),
        "{head}"
    );

    let mut decoder = flate2::write::MultiGzDecoder::new(Vec::new());
    let mut expected = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        expected.extend_from_slice(piece);
        // Piece i is decodable before the origin may send piece i + 1.
        while decoder.get_ref().len() < expected.len() {
            let chunk = read_chunk(&mut c)
                .unwrap_or_else(|| panic!("the body ended before piece {i} decoded"));
            decoder.write_all(&chunk).unwrap();
            decoder.flush().unwrap();
        }
        assert!(
            *decoder.get_ref() == expected,
            "piece {i} decodes to its bytes"
        );
        gate.open();
    }
    while let Some(chunk) = read_chunk(&mut c) {
        decoder.write_all(&chunk).unwrap();
    }
    let mut trailer = String::new();
    c.reader.read_line(&mut trailer).unwrap();
    assert_eq!(trailer, "\r\n");
    assert!(decoder.finish().unwrap() == expected);
}

#[test]
fn every_algorithm_round_trips_exactly() {
    let big = text_body(100 * 1024);
    let sent = big.clone();
    let origin = Origin::start(move |req| match req.target.as_str() {
        "/big" => text(sent.clone()),
        "/big-chunked" => {
            let pieces = sent.chunks(8192).map(|p| Step::Data(p.to_vec())).collect();
            Reply::chunked(200, pieces).header("Content-Type", "text/plain")
        }
        "/at-min" => text(sent[..256].to_vec()),
        _ => text(sent[..255].to_vec()),
    });
    let proxy = compressing(&origin);
    for encoding in ["gzip", "br", "zstd"] {
        let accept = format!("Accept-Encoding: {encoding}\r\n");
        for path in ["/big", "/big-chunked"] {
            let r = fetch(&proxy, path, &accept);
            assert_compressed(&r, encoding, &big);
            assert!(
                r.body.len() < big.len() / 2,
                "{encoding} {path}: {} bytes",
                r.body.len()
            );
        }
        assert_compressed(&fetch(&proxy, "/at-min", &accept), encoding, &big[..256]);
        assert_identity(&fetch(&proxy, "/below-min", &accept), &big[..255]);
    }
}

#[test]
fn a_cached_route_serves_each_encoding_from_the_cache() {
    let body = text_body(4096);
    let sent = body.clone();
    let origin = Origin::start(move |_| text(sent.clone()).header("Cache-Control", "max-age=60"));
    let toml = ConfigBuilder::new(origin.addr())
        .sections("[cache.main]\nmax_size = \"64MiB\"\nmax_object = \"1MiB\"")
        .route(&format!("{COMPRESS}\ncache = {{ zone = \"main\" }}"))
        .build();
    let proxy = Proxy::start(&toml);
    let gzip = "Accept-Encoding: gzip\r\n";
    assert_compressed(&fetch(&proxy, "/c", gzip), "gzip", &body);
    assert_identity(&fetch(&proxy, "/c", ""), &body);
    let fetched = origin.count("/c");
    assert!((1..=2).contains(&fetched), "{fetched} fetches");

    // A stored encoding is whole, so a hit may give its length.
    for round in 0..3 {
        let zipped = fetch(&proxy, "/c", gzip);
        assert_encoded(&zipped, "gzip", &body);
        let plain = fetch(&proxy, "/c", "");
        assert_identity(&plain, &body);
        for r in [&zipped, &plain] {
            let status = r.header("cache-status").unwrap_or_default();
            assert!(
                status.starts_with("ringress; hit; ttl="),
                "round {round}: {}",
                r.raw_head
            );
        }
    }
    assert_eq!(origin.count("/c"), fetched);
}
