//! Origin hiding: the fields that name the origin's software and version
//! never reach a client, on proxied answers and on answers from the
//! cache; ringress names itself instead (or nothing), and an operator can
//! hide more fields or pass one on.

mod common;

use std::io::Write;

use common::*;
use ringress::Config;

/// An upstream that says what it runs, in every way servers do.
fn talkative_upstream() -> Upstream {
    Upstream::start(|r, w, up| {
        while up.record(r).is_some() {
            let head = "HTTP/1.1 200 OK\r\nServer: secret-origin/1.2.3\r\n\
                        X-Powered-By: PHP/8.1.2\r\nX-AspNet-Version: 4.0.30319\r\n\
                        X-Backend: app-07.internal\r\nCache-Control: max-age=60\r\n\
                        Content-Length: 2\r\n\r\nok";
            if w.write_all(head.as_bytes()).is_err() {
                return;
            }
        }
    })
}

fn assert_nothing_of_the_origin(r: &Response) {
    let head = r.raw_head.to_ascii_lowercase();
    for leak in ["secret-origin", "php", "x-aspnet-version", "4.0.30319"] {
        assert!(
            !head.contains(leak),
            "{leak} reached the client:\n{}",
            r.raw_head
        );
    }
}

#[test]
fn by_default_the_origins_software_is_hidden_and_ringress_names_itself() {
    let up = talkative_upstream();
    let proxy = Proxy::start(&ConfigBuilder::new(up.addr).build());
    let mut c = proxy.connect();
    let r = c.request(&get("/"));
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"));
    assert_nothing_of_the_origin(&r);
    assert_eq!(r.header("server"), Some("ringress"));
    // Only the listed fields go: others pass.
    assert_eq!(r.header("x-backend"), Some("app-07.internal"));
    // A generated answer names no upstream, address or version either.
    let up_gone = ConfigBuilder::new(dead_addr()).build();
    let proxy2 = Proxy::start(&up_gone);
    let r = proxy2.connect().request(&get("/"));
    assert_eq!(r.status, 502);
    let text = format!("{}{}", r.raw_head, r.body_str()).to_ascii_lowercase();
    assert!(
        !text.contains("127.0.0.1") && !text.contains("ringress/"),
        "{text}"
    );
}

#[test]
fn more_fields_can_be_hidden_and_no_server_sent() {
    let up = talkative_upstream();
    let config = ConfigBuilder::new(up.addr)
        .sections("[forwarding]\nhide_headers = [\"X-Backend\"]\nserver = \"\"\n")
        .build();
    let proxy = Proxy::start(&config);
    let r = proxy.connect().request(&get("/"));
    assert_eq!(r.status, 200);
    assert_nothing_of_the_origin(&r);
    assert_eq!(r.header("server"), None, "{}", r.raw_head);
    assert_eq!(r.header("x-backend"), None, "{}", r.raw_head);
}

#[test]
fn a_passed_field_reaches_the_client_and_replaces_ringress_own() {
    let up = talkative_upstream();
    let config = ConfigBuilder::new(up.addr)
        .sections("[forwarding]\npass_headers = [\"server\"]\nserver = \"edge\"\n")
        .build();
    let proxy = Proxy::start(&config);
    let r = proxy.connect().request(&get("/"));
    assert_eq!(r.header("server"), Some("secret-origin/1.2.3"));
    assert_eq!(r.raw_head.matches("Server:").count(), 1, "{}", r.raw_head);
    assert_eq!(r.header("x-powered-by"), None);
}

#[test]
fn answers_from_the_cache_hide_the_origin_too() {
    let up = talkative_upstream();
    let config = ConfigBuilder::new(up.addr)
        .sections("[cache.main]\nmax_size = \"4MiB\"\nmax_object = \"1MiB\"\n")
        .route(r#"cache = { zone = "main" }"#)
        .build();
    let proxy = Proxy::start(&config);
    let mut c = proxy.connect();
    let miss = c.request(&get("/page"));
    assert_nothing_of_the_origin(&miss);
    let hit = c.request(&get("/page"));
    assert!(
        hit.header("cache-status")
            .is_some_and(|s| s.contains("hit")),
        "{}",
        hit.raw_head
    );
    assert_nothing_of_the_origin(&hit);
    assert_eq!(hit.header("server"), Some("ringress"));
    assert_eq!(up.requests().len(), 1);
}

#[test]
fn bad_hiding_keys_are_listed_with_their_key_paths() {
    let up = talkative_upstream();
    let config = ConfigBuilder::new(up.addr)
        .sections("[forwarding]\nhide_headers = [\"bad name\"]\nserver = \"tab\\there\"\n")
        .build();
    let err = Config::from_toml_str(&config).expect_err("refused");
    let text = err.to_string();
    assert!(text.contains("forwarding.hide_headers"), "{text}");
    assert!(text.contains("forwarding.server"), "{text}");
}
