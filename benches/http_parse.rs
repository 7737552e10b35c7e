//! Request/response head parsing and path normalisation throughput.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringress::http::{HeadLimits, empty_headers, parse_request, parse_response, path};

const BROWSER_GET: &[u8] = b"GET /api/v1/items?page=2 HTTP/1.1\r\n\
Host: shop.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Connection: keep-alive\r\n\
Cookie: session=0123456789abcdef; theme=dark\r\n\
Upgrade-Insecure-Requests: 1\r\n\r\n";

const WRK_GET: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Thu, 26 Nov 2026 16:00:00 GMT\r\n\
Content-Type: text/plain\r\nContent-Length: 100\r\nConnection: keep-alive\r\n\r\n";

fn bench_parse(c: &mut Criterion) {
    let limits = HeadLimits::default();
    let mut g = c.benchmark_group("parse");
    for (name, raw) in [("request_browser", BROWSER_GET), ("request_wrk", WRK_GET)] {
        g.throughput(Throughput::Bytes(raw.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut h = empty_headers();
                let req = parse_request(black_box(raw), &mut h, &limits);
                black_box(req.map(|r| r.map(|r| r.head_len)).ok());
            })
        });
    }
    g.throughput(Throughput::Bytes(RESPONSE.len() as u64));
    g.bench_function("response", |b| {
        b.iter(|| {
            let mut h = empty_headers();
            let resp = parse_response(black_box(RESPONSE), &mut h, 32768, false);
            black_box(resp.map(|r| r.map(|r| r.head_len)).ok());
        })
    });
    g.finish();

    let mut g = c.benchmark_group("path");
    let mut scratch = Vec::new();
    g.bench_function("normal", |b| {
        b.iter(|| black_box(path::normalize(black_box(b"/api/v1/items/42"), &mut scratch).is_ok()))
    });
    g.bench_function("dot_segments", |b| {
        b.iter(|| {
            black_box(path::normalize(black_box(b"/public/%2e%2e/admin//x"), &mut scratch).is_ok())
        })
    });
    g.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
