//! Upstream groups: smooth weighted round-robin across servers, names
//! resolved at load, and per-server keep-alive pools.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use ringress::IoMode;

fn group_config(servers: &str) -> String {
    format!(
        r#"
[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
upstream = "app"

[upstreams.app]
servers = [{servers}]
"#
    )
}

#[test]
fn weights_split_requests_exactly_per_worker() {
    let heavy = Upstream::echo();
    let light = Upstream::echo();
    let servers = format!(
        r#"{{ addr = "{}", weight = 3 }}, {{ addr = "{}", weight = 1 }}"#,
        heavy.addr, light.addr
    );
    // One worker: one rotation, so the split is exact.
    let proxy = Proxy::start_with(&group_config(&servers), 1, IoMode::Auto);
    let mut c = proxy.connect();
    for i in 0..40 {
        assert_eq!(c.request(&get(&format!("/{i}"))).status, 200);
    }
    assert_eq!((heavy.requests().len(), light.requests().len()), (30, 10));
    // Smooth: the light server is never picked twice in a row, and the
    // heavy one at most three times in a row.
    let light_paths: Vec<usize> = light
        .requests()
        .iter()
        .map(|r| r.target[1..].parse().unwrap())
        .collect();
    assert!(
        light_paths.windows(2).all(|w| w[1] - w[0] == 4),
        "{light_paths:?}"
    );
    // Each server kept one pooled connection for the whole run.
    assert_eq!(heavy.connections.load(Ordering::Acquire), 1);
    assert_eq!(light.connections.load(Ordering::Acquire), 1);
}

#[test]
fn equal_servers_share_evenly_across_workers() {
    let ups: Vec<Upstream> = (0..3).map(|_| Upstream::echo()).collect();
    let servers: Vec<String> = ups.iter().map(|u| format!("\"{}\"", u.addr)).collect();
    let proxy = Proxy::start_with(&group_config(&servers.join(", ")), 2, IoMode::Auto);
    for i in 0..60 {
        // New connections land on either worker; each rotates on its own.
        let mut c = proxy.connect();
        assert_eq!(c.request(&get(&format!("/{i}"))).status, 200);
    }
    let counts: Vec<usize> = ups.iter().map(|u| u.requests().len()).collect();
    assert_eq!(counts.iter().sum::<usize>(), 60);
    assert!(counts.iter().all(|&n| (12..=28).contains(&n)), "{counts:?}");
}

#[test]
fn server_names_are_resolved_at_load() {
    let up = Upstream::echo();
    let servers = format!("\"localhost:{}\"", up.addr.port());
    let proxy = Proxy::start_with(&group_config(&servers), 1, IoMode::Auto);
    let mut c = proxy.connect();
    assert_eq!(c.request(&get("/named")).body_str(), "GET /named\n");
}

/// A port nobody listens on (bound, then released).
fn dead_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

#[test]
fn refused_connect_moves_on_to_the_next_server() {
    let live = Upstream::echo();
    let servers = format!(
        "\"{}\", \"{}\", \"{}\"",
        dead_addr(),
        live.addr,
        dead_addr()
    );
    let proxy = Proxy::start_with(&group_config(&servers), 1, IoMode::Auto);
    let mut c = proxy.connect();
    for i in 0..9 {
        let r = c.request(&get(&format!("/{i}")));
        assert_eq!((r.status, r.body_str()), (200, format!("GET /{i}\n")));
    }
    // POST too: nothing was sent to the refusing servers.
    let r = c.request(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(r.body_str(), "POST /p\nhi");
    assert_eq!(live.requests().len(), 10);
}

#[test]
fn all_servers_refusing_is_a_bad_gateway() {
    let servers = format!("\"{}\", \"{}\"", dead_addr(), dead_addr());
    let proxy = Proxy::start_with(&group_config(&servers), 1, IoMode::Auto);
    let mut c = proxy.connect();
    assert_eq!(c.request(&get("/")).status, 502);
    assert_eq!(c.request(&get("/again")).status, 502);
}
