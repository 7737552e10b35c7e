//! One rate-limit check per path a request can take: a client address
//! in the worker's own table, a header key through the shared buckets
//! (a lease per millisecond's worth), and a key refused.

use criterion::{Criterion, criterion_group, criterion_main};
use ringress::Config;
use ringress::limit::{KeyInput, Limiter};

fn config() -> Config {
    Config::from_toml_str(
        r#"
[rate_limits.own]
rate = "1000000000/s"
burst = 1000000
key = "client_ip"

[rate_limits.shared]
rate = "1000000/s"
burst = 100000
key = "header:X-Api-Key"

[rate_limits.refused]
rate = "1/h"
key = "route"

[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
respond = { status = 200 }
rate_limit = ["own", "shared", "refused"]
"#,
    )
    .expect("bench config")
}

fn checks(c: &mut Criterion) {
    let mut config = config();
    ringress::limit::carry_over(None, &mut config.rate_limits, 2);
    let headers = [httparse::Header {
        name: "X-Api-Key",
        value: b"team-a",
    }];
    let input = |steered| KeyInput {
        client_ip: "192.0.2.7".parse().unwrap(),
        steered,
        route: "r",
        path: b"/",
        headers: &headers,
    };
    let limits = (1, &config.rate_limits[..]);
    let mut limiter = Limiter::default();
    c.bench_function("rate limit: own table (client_ip)", |b| {
        let i = input(true);
        b.iter(|| limiter.check(limits, &[0], &i))
    });
    c.bench_function("rate limit: shared buckets (header)", |b| {
        let i = input(false);
        b.iter(|| limiter.check(limits, &[1], &i))
    });
    let _ = limiter.check(limits, &[2], &input(false));
    c.bench_function("rate limit: refused", |b| {
        let i = input(false);
        b.iter(|| limiter.check(limits, &[2], &i))
    });
}

criterion_group!(benches, checks);
criterion_main!(benches);
