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

/// /etc/hosts lines for one test name, removed (file restored) on drop.
/// The system resolver reads the file on every lookup, so this is how a
/// test moves a name the way a DNS-based registry would.
struct HostsFile {
    original: String,
}

impl HostsFile {
    fn take() -> HostsFile {
        HostsFile {
            original: std::fs::read_to_string("/etc/hosts").expect("read /etc/hosts"),
        }
    }

    fn set(&self, lines: &[(&str, &str)]) {
        let mut text = self.original.clone();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        for (ip, name) in lines {
            text.push_str(&format!("{ip} {name}\n"));
        }
        write_hosts(&text);
    }
}

impl Drop for HostsFile {
    fn drop(&mut self) {
        write_hosts(&self.original);
    }
}

/// Replaces /etc/hosts in one step where it can (rename), else in place
/// (a bind-mounted file cannot be renamed over).
fn write_hosts(text: &str) {
    let tmp = format!("/etc/hosts.ringress-test-{}", std::process::id());
    if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, "/etc/hosts").is_ok() {
        return;
    }
    let _ = std::fs::remove_file(&tmp);
    std::fs::write("/etc/hosts", text).expect("write /etc/hosts (tests run as root)");
}

/// A server on `ip:port` answering every request with `name`.
fn named_server(ip: &str, port: u16, name: &'static str) -> Option<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind((ip, port)).ok()?;
    let accept = listener.try_clone().ok()?;
    std::thread::spawn(move || {
        for conn in accept.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || {
                use std::io::{BufRead, BufReader, Write};
                let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                let mut w = conn.try_clone().expect("clone");
                let mut r = BufReader::new(conn);
                loop {
                    let mut line = String::new();
                    let mut blank = false;
                    while !blank {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        blank = line == "\r\n";
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
                        name.len()
                    );
                    if w.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Some(listener)
}

/// With `resolve_interval`, a server name is re-resolved and every address
/// it has is a server: addresses appearing and disappearing in DNS change
/// the group without a reload, and a name that stops resolving keeps its
/// last addresses.
#[test]
fn server_names_are_re_resolved() {
    // Two servers on the same port at two loopback addresses.
    let (a, b, port) = (0..20)
        .find_map(|_| {
            let a = named_server("127.0.0.2", 0, "A")?;
            let port = a.local_addr().ok()?.port();
            let b = named_server("127.0.0.3", port, "B")?;
            Some((a, b, port))
        })
        .expect("a port free on 127.0.0.2 and 127.0.0.3");
    let name = format!("ringress-dns-{}.test", std::process::id());
    let hosts = HostsFile::take();
    hosts.set(&[("127.0.0.2", &name)]);
    let config = format!(
        "{}resolve_interval = \"1s\"\nconnect_timeout = \"1s\"\n",
        group_config(&format!("\"{name}:{port}\""))
    );
    let proxy = Proxy::start_with(&config, 1, IoMode::Auto);
    let answers = |n: usize| -> Vec<String> {
        (0..n)
            .map(|_| {
                let mut c = proxy.connect();
                let r = c.request(&get("/"));
                assert_eq!(r.status, 200);
                r.body_str()
            })
            .collect()
    };
    assert!(answers(6).iter().all(|s| s == "A"));
    // Wait (bounded) until the answers match `want`.
    let settle = |want: &dyn Fn(&[String]) -> bool, what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
        loop {
            let seen = answers(8);
            if want(&seen) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: still {seen:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    hosts.set(&[("127.0.0.2", &name), ("127.0.0.3", &name)]);
    settle(
        &|s| {
            s.iter().filter(|x| *x == "A").count() == 4
                && s.iter().filter(|x| *x == "B").count() == 4
        },
        "the added address serves half",
    );
    hosts.set(&[("127.0.0.3", &name)]);
    settle(
        &|s| s.iter().all(|x| x == "B"),
        "the removed address gets nothing",
    );
    // The name stops resolving: the last known address stays.
    hosts.set(&[]);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(answers(6).iter().all(|s| s == "B"));
    drop((a, b));
}
