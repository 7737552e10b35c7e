//! First light: a request through the proxy to a real upstream and back.

mod common;

use common::*;

#[test]
fn get_through_proxy() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&simple_config(up.addr));
    let mut c = proxy.connect();
    let r = c.request(&get("/hello?x=1"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "GET /hello?x=1\n");
    let r = c.request(b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(r.body_str(), "POST /p\nhello");
    assert_eq!(up.connections.load(std::sync::atomic::Ordering::Acquire), 1);
    let seen = up.last();
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("via"), Some("1.1 ringress"));
}
