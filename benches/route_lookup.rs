//! Route lookup over tables of realistic shape and size.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ringress::Config;
use ringress::router::RouteQuery;

fn table(routes: usize) -> Config {
    let mut toml = String::from(
        "[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:0\"\n\n[upstreams.app]\nservers = [\"127.0.0.1:9\"]\n\n",
    );
    for i in 0..routes {
        toml.push_str(&format!(
            "[[routes]]\nhost = \"site{}.example.com\"\npath_prefix = \"/svc{}/\"\nupstream = \"app\"\n\n",
            i % 10,
            i
        ));
    }
    toml.push_str("[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n");
    Config::from_toml_str(&toml).expect("bench config is valid")
}

fn bench_routes(c: &mut Criterion) {
    let mut g = c.benchmark_group("route");
    for size in [2usize, 20, 200] {
        let config = table(size);
        let path = format!("/svc{}/items/1", size / 2);
        let host = format!("site{}.example.com", (size / 2) % 10);
        g.bench_function(format!("find_{size}"), |b| {
            b.iter(|| {
                let q = RouteQuery {
                    listener: 0,
                    host: black_box(host.as_bytes()),
                    path: black_box(path.as_bytes()),
                    method: b"GET",
                    headers: &[],
                    query: b"",
                };
                black_box(config.routes.find(&q).map(|r| r.max_body_size))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_routes);
criterion_main!(benches);
