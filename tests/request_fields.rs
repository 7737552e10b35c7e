//! Request fields a backend could misread never reach it: names with `_`
//! are left out unless `[forwarding] underscores_in_headers = true`
//! (CGI/WSGI backends read `X_User` as `X-User`, so a forged one would
//! slip past the stripping of `X-User`).

mod common;

use common::*;

/// The route sets `X-User` (as a verified identity would be set): the
/// client's own `X-User` is replaced, and its `X_User` must not pass.
fn proxy(underscores: Option<bool>) -> (Upstream, Proxy) {
    let up = Upstream::echo();
    let mut b = ConfigBuilder::new(up.addr)
        .route(r#"request_headers = { set = { "X-User" = "verified" } }"#);
    if let Some(on) = underscores {
        b = b.sections(&format!("[forwarding]\nunderscores_in_headers = {on}\n"));
    }
    let proxy = Proxy::start(&b.build());
    (up, proxy)
}

const FORGED: &[u8] =
    b"GET /me HTTP/1.1\r\nHost: x\r\nX-User: admin\r\nX_User: admin\r\nX_Other: 1\r\nX-Fine: yes\r\n\r\n";

#[test]
fn fields_with_underscores_are_left_out_by_default() {
    let (up, proxy) = proxy(None);
    let r = proxy.connect().request(FORGED);
    assert_eq!(r.status, 200);
    let seen = up.last();
    assert_eq!(seen.header("x-user"), Some("verified"), "{}", seen.raw_head);
    assert_eq!(seen.header_count("x-user"), 1, "{}", seen.raw_head);
    assert!(!seen.raw_head.contains('_'), "{}", seen.raw_head);
    assert_eq!(seen.header("x-fine"), Some("yes"));
}

#[test]
fn underscores_in_headers_passes_them_on() {
    let (up, proxy) = proxy(Some(true));
    assert_eq!(proxy.connect().request(FORGED).status, 200);
    let seen = up.last();
    assert_eq!(seen.header("x_user"), Some("admin"), "{}", seen.raw_head);
    assert_eq!(seen.header("x_other"), Some("1"));
    assert_eq!(seen.header("x-user"), Some("verified"));
}
