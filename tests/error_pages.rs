//! `error_pages`: the operator's own page per status, for the answers
//! ringress generates and in place of an upstream's answer with that
//! status; at the top level and per route; read again on reload.

mod common;

use std::io::Write;

use common::*;
use ringress::Config;

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write page");
    path.display().to_string()
}

/// An upstream answering `/fail` with a 503 page of its own (naming
/// itself) and everything else with 200.
fn failing_upstream() -> Upstream {
    Upstream::start(|r, w, up| {
        while let Some(req) = up.record(r) {
            let resp = if req.target.starts_with("/fail") || req.target.starts_with("/api/fail") {
                let body = "<h1>Origin stack trace at app-07</h1>";
                format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/html\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
            } else {
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_string()
            };
            if w.write_all(resp.as_bytes()).is_err() {
                return;
            }
        }
    })
}

fn with_top(top: &str, builder: ConfigBuilder) -> String {
    format!("{top}\n{}", builder.build())
}

#[test]
fn generated_answers_use_the_page_for_their_status() {
    let dir = TempPath::unique_dir("pages");
    let p502 = write(&dir, "502.html", "<h1>We will be right back</h1>\n");
    let p404 = write(&dir, "404.html", "<h1>Nothing here</h1>\n");
    let top = format!("error_pages = {{ 502 = \"{p502}\", 404 = \"{p404}\" }}");
    let toml = with_top(
        &top,
        ConfigBuilder::new(dead_addr()).route(r#"path_prefix = "/app""#),
    );
    let proxy = Proxy::start(&toml);
    let mut c = proxy.connect();
    let r = c.request(&get("/app/x"));
    assert_eq!(r.status, 502);
    assert_eq!(r.body_str(), "<h1>We will be right back</h1>\n");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    // No route: the top-level page.
    let r = c.request(&get("/elsewhere"));
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (404, "<h1>Nothing here</h1>\n")
    );
    // A HEAD gets the page's head alone; the connection goes on.
    let r = c.request(b"HEAD /elsewhere HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-length"), Some("22"));
    let r = c.request(&get("/elsewhere"));
    assert_eq!(r.body_str(), "<h1>Nothing here</h1>\n");
    // A status without a page keeps the built-in answer.
    let r = proxy
        .connect()
        .request(b"GET /app HTTP/1.1\r\nHost: t\r\nExpect: nonsense\r\n\r\n");
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (417, "Expectation Failed\n")
    );
}

#[test]
fn an_upstream_answer_with_a_paged_status_is_replaced() {
    let dir = TempPath::unique_dir("pages");
    let p503 = write(&dir, "503.html", "<p>maintenance</p>");
    let up = failing_upstream();
    let toml = with_top(
        &format!("error_pages = {{ 503 = \"{p503}\" }}"),
        ConfigBuilder::new(up.addr),
    );
    let proxy = Proxy::start(&toml);
    let mut c = proxy.connect();
    let r = c.request(&get("/fail"));
    assert_eq!(r.status, 503);
    assert_eq!(r.body_str(), "<p>maintenance</p>");
    assert!(!r.raw_head.contains("app-07"));
    // The client connection goes on, and other answers pass untouched.
    let r = c.request(&get("/fine"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"));
    let r = c.request(&get("/fail"));
    assert_eq!(r.body_str(), "<p>maintenance</p>");
}

#[test]
fn a_route_page_wins_over_the_top_level_one() {
    let dir = TempPath::unique_dir("pages");
    let top_page = write(&dir, "503.html", "<p>maintenance</p>");
    let api_page = write(&dir, "503.json", "{\"error\":\"unavailable\"}");
    let up = failing_upstream();
    let toml = with_top(
        &format!("error_pages = {{ 503 = \"{top_page}\" }}"),
        ConfigBuilder::new(up.addr).sections(&format!(
            r#"
[[routes]]
path_prefix = "/api"
upstream = "backend"
error_pages = {{ 503 = "{api_page}" }}
"#
        )),
    );
    let proxy = Proxy::start(&toml);
    let mut c = proxy.connect();
    let r = c.request(&get("/api/fail"));
    assert_eq!(r.body_str(), "{\"error\":\"unavailable\"}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let r = c.request(&get("/fail"));
    assert_eq!(r.body_str(), "<p>maintenance</p>");
}

#[test]
fn a_reload_reads_the_pages_again_and_a_missing_one_is_refused() {
    let dir = TempPath::unique_dir("pages");
    let page = write(&dir, "502.html", "first");
    let toml = with_top(
        &format!("error_pages = {{ 502 = \"{page}\" }}"),
        ConfigBuilder::new(dead_addr()),
    );
    let proxy = Proxy::start(&toml);
    assert_eq!(proxy.connect().request(&get("/")).body_str(), "first");
    write(&dir, "502.html", "second");
    proxy.reload(&toml);
    assert_eq!(proxy.connect().request(&get("/")).body_str(), "second");
    // A missing file, a status that is no error, a wrong type: each
    // named with its key path.
    let bad = with_top(
        &format!(
            "error_pages = {{ 502 = \"{}\", 200 = \"{page}\", 503 = 1 }}",
            dir.join("nope.html").display()
        ),
        ConfigBuilder::new(dead_addr()),
    );
    let Err(errors) = Config::from_toml_str(&bad) else {
        panic!("a config with a missing page is refused");
    };
    let errors = errors.to_string();
    for want in [
        "error_pages.502",
        "nope.html",
        "error_pages.200",
        "error_pages.503",
    ] {
        assert!(errors.contains(want), "{want} in:\n{errors}");
    }
    // The running config is kept.
    assert_eq!(proxy.connect().request(&get("/")).body_str(), "second");
}
