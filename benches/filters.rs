//! The request filters of a route with 20 rules (15 `[[filters]]`
//! entries with regexes on the path, the query and two headers, and the
//! default set), on a request that passes them all (every regex group
//! runs once), one an early exact rule refuses, and the default set
//! alone.

use criterion::{Criterion, criterion_group, criterion_main};
use ringress::Config;
use ringress::http::{HeadLimits, empty_headers, parse_request, path};
use ringress::pipeline::FilterScratch;

const RULES: [&str; 15] = [
    r#"path = { exact = "/blocked" }"#,
    r#"path = { regex = '(?i)\.(php|asp|jsp)$' }"#,
    r#"path = { regex = '/(etc|proc)/' }"#,
    r#"path = { prefix = "/private/" }"#,
    r#"query = { regex = '(?i)union.+select' }"#,
    r#"query = { regex = '(?i)<script' }"#,
    r#"query = { prefix = "debug=" }"#,
    r#"header = { name = "User-Agent", regex = '(?i)(sqlmap|nikto|nmap)' }"#,
    r#"header = { name = "User-Agent", prefix = "curl/" }"#,
    r#"header = { name = "Referer", regex = '^https?://spam\.' }"#,
    r#"header = { name = "X-Probe" }"#,
    r#"methods = ["DELETE", "PATCH"]"#,
    r#"body_size = { over = "1MiB" }"#,
    "path = { prefix = \"/watch\" }\naction = \"log\"",
    "header = { name = \"X-Internal\", exact = \"yes\" }\naction = \"allow\"",
];

fn config(rules: &str) -> Config {
    Config::from_toml_str(&format!(
        "{rules}[[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\
         [[routes]]\nrespond = {{ status = 200 }}\n"
    ))
    .expect("bench config")
}

fn run(c: &mut Criterion, name: &str, config: &Config, raw: &[u8], want: Option<u16>) {
    let waf = config.chains[0].waf().expect("filters");
    let mut headers = empty_headers();
    let req = parse_request(raw, &mut headers, &HeadLimits::default())
        .expect("valid")
        .expect("whole");
    let mut buf = Vec::new();
    let norm = path::normalize(req.path, &mut buf).expect("path");
    let mut scratch = FilterScratch::default();
    assert_eq!(waf.evaluate(&req, norm, &mut scratch), want, "{name}");
    c.bench_function(name, |b| {
        b.iter(|| {
            scratch.events.clear();
            waf.evaluate(&req, norm, &mut scratch)
        })
    });
}

fn filters(c: &mut Criterion) {
    let mut rules = String::new();
    for (i, cond) in RULES.iter().enumerate() {
        rules.push_str(&format!("[[filters]]\nid = \"r{i}\"\n{cond}\n"));
    }
    rules.push_str("[[filters]]\ninclude = \"default\"\n");
    let twenty = config(&rules);
    let pass = b"GET /app/page.html?q=hello&page=2 HTTP/1.1\r\nHost: test.local\r\n\
                 User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\nReferer: https://example.com/\r\n\
                 Accept: */*\r\n\r\n";
    run(c, "filters/20 rules, passed", &twenty, pass, None);
    run(
        c,
        "filters/20 rules, first refuses",
        &twenty,
        b"GET /blocked HTTP/1.1\r\nHost: test.local\r\n\r\n",
        Some(403),
    );
    let defaults = config("filters = \"default\"\n");
    run(c, "filters/default set, passed", &defaults, pass, None);
}

criterion_group!(benches, filters);
criterion_main!(benches);
