//! `allow` / `deny` on routes and listeners over real sockets: first match
//! in the order written (within a list and between the two keys), IPv4
//! and IPv6 client addresses as known after a trusted X-Forwarded-For or
//! the PROXY protocol, the 403 and the upstream that never sees a refused
//! request, and a 100,000-prefix list that stays a lookup, not a scan.

mod common;

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use common::*;
use ringress::Config;

/// A request whose client is `ip` for a proxy trusting 127.0.0.1.
fn from(ip: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: {ip}\r\n\r\n").into_bytes()
}

const TRUST_LOOPBACK: &str = "[forwarding]\ntrusted_proxies = [\"127.0.0.1\"]\n";

fn status_for(proxy: &Proxy, ip: &str, path: &str) -> u16 {
    proxy.connect().request(&from(ip, path)).status
}

#[test]
fn route_rules_decide_first_match_first_in_the_order_written() {
    let up = Upstream::echo();
    let config = ConfigBuilder::new(up.addr)
        .sections(TRUST_LOOPBACK)
        .route(
            r#"deny = ["10.0.0.1"]
               allow = ["10.0.0.0/8", "2001:db8::/32"]"#,
        )
        .build();
    let proxy = Proxy::start(&config);
    for (ip, want) in [
        ("10.0.0.1", 403),
        ("10.0.0.2", 200),
        ("10.255.0.9", 200),
        // An allow list ends in an implied deny of everyone else.
        ("11.0.0.1", 403),
        ("2001:db8::5", 200),
        ("2001:db8:ffff::1", 200),
        ("2001:db9::1", 403),
        ("::1", 403),
    ] {
        assert_eq!(status_for(&proxy, ip, "/x"), want, "{ip}");
    }
    // Only the allowed requests reached the upstream.
    let seen: Vec<_> = up
        .requests()
        .iter()
        .map(|r| r.header("x-forwarded-for").unwrap_or("").to_string())
        .collect();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(
        seen.iter()
            .all(|x| !x.contains("10.0.0.1,") && x != "11.0.0.1")
    );

    // The other order: the wider allow comes first and hides the deny.
    let config = ConfigBuilder::new(up.addr)
        .sections(TRUST_LOOPBACK)
        .route(
            r#"allow = ["10.0.0.0/8"]
               deny = ["10.0.0.1", "all"]"#,
        )
        .build();
    proxy.reload(&config);
    assert_eq!(status_for(&proxy, "10.0.0.1", "/x"), 200);
    assert_eq!(status_for(&proxy, "192.0.2.1", "/x"), 403);
}

#[test]
fn the_403_is_ringress_own_and_keeps_the_connection() {
    let up = Upstream::echo();
    let config = ConfigBuilder::new(up.addr)
        .sections(TRUST_LOOPBACK)
        .route(r#"deny = ["192.0.2.0/24"]"#)
        .build();
    let proxy = Proxy::start(&config);
    let mut c = proxy.connect();
    let r = c.request(&from("192.0.2.77", "/secret"));
    assert_eq!(r.status, 403);
    assert_eq!(r.body_str(), "Forbidden\n");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    // A well-formed request refused: the connection stays usable.
    let r = c.request(&from("198.51.100.1", "/open"));
    assert_eq!(r.status, 200);
    assert_eq!(up.requests().len(), 1);
    assert_eq!(up.last().target, "/open");
}

#[test]
fn a_deny_list_lets_everyone_else_in_and_all_denies_both_families() {
    let up = Upstream::echo();
    let config = ConfigBuilder::new(up.addr)
        .sections(TRUST_LOOPBACK)
        .route(r#"deny = ["198.51.100.0/24", "2001:db8:bad::/48"]"#)
        .build();
    let proxy = Proxy::start(&config);
    assert_eq!(status_for(&proxy, "198.51.100.200", "/"), 403);
    assert_eq!(status_for(&proxy, "198.51.101.1", "/"), 200);
    assert_eq!(status_for(&proxy, "2001:db8:bad:1::1", "/"), 403);
    assert_eq!(status_for(&proxy, "2001:db8:bae::1", "/"), 200);
    // Untrusted peers are judged by their own address: the plain socket.
    let config = ConfigBuilder::new(up.addr)
        .route(r#"deny = ["all"]"#)
        .build();
    proxy.reload(&config);
    assert_eq!(status_for(&proxy, "10.0.0.1", "/"), 403);
}

/// `[[routes]]` in front of the catch-all, each with its own list.
#[test]
fn each_route_has_its_own_list() {
    let up = Upstream::echo();
    let config = ConfigBuilder::new(up.addr)
        .sections(TRUST_LOOPBACK)
        .sections(
            r#"
[[routes]]
path_prefix = "/admin"
upstream = "backend"
allow = ["10.1.0.0/16"]
"#,
        )
        .build();
    let proxy = Proxy::start(&config);
    assert_eq!(status_for(&proxy, "10.1.2.3", "/admin/x"), 200);
    assert_eq!(status_for(&proxy, "10.2.2.3", "/admin/x"), 403);
    assert_eq!(status_for(&proxy, "10.2.2.3", "/public"), 200);
    // An encoded separator cannot take `/admin` past its rules.
    let r = proxy
        .connect()
        .request(&from("10.2.2.3", "/x/..%2Fadmin%2Fx"));
    assert_ne!(r.status, 200);
    let r = proxy.connect().request(&from("10.2.2.3", "/admin%2Fx"));
    assert_eq!(r.status, 400);
}

/// A PROXY protocol v2 header for `src` (IPv6) to `dst`.
fn proxy_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (IpAddr::V6(s), IpAddr::V6(d)) = (src.ip(), dst.ip()) else {
        panic!("IPv6 only");
    };
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend_from_slice(&[0x21, 0x21, 0, 36]);
    out.extend_from_slice(&s.octets());
    out.extend_from_slice(&d.octets());
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

#[test]
fn listener_rules_apply_to_every_route_with_proxy_protocol_addresses() {
    let up = Upstream::echo();
    let config = ConfigBuilder::new(up.addr)
        .sections(
            r#"
[forwarding]
trusted_proxies = ["127.0.0.1"]

[[listeners]]
name = "lb"
bind = "127.0.0.1:0"
proxy_protocol = true
deny = ["2001:db8:dead::/48"]
allow = ["2001:db8::/32", "127.0.0.1"]

[[routes]]
path_prefix = "/fixed"
respond = { status = 200, body = "fixed" }
"#,
        )
        .build();
    let proxy = Proxy::start(&config);
    let dst: SocketAddr = "[2001:db8::1]:80".parse().unwrap();
    let send = |src: &str, path: &str| {
        let mut c = proxy.connect();
        c.send(&proxy_v2(src.parse().unwrap(), dst));
        c.request(&get(path)).status
    };
    assert_eq!(send("[2001:db8:1::7]:4000", "/x"), 200);
    assert_eq!(send("[2001:db8:dead::7]:4000", "/x"), 403);
    // The listener's rules hold for fixed answers too.
    assert_eq!(send("[2001:db8:dead::7]:4000", "/fixed"), 403);
    assert_eq!(send("[2001:db9::7]:4000", "/fixed"), 403);
    assert_eq!(send("[2001:db8:1::7]:4000", "/fixed"), 200);
    assert_eq!(up.requests().len(), 1);
    // The other listener has no rules.
    let main = proxy.handle().listener_addr("main").expect("main bound");
    assert_eq!(Client::connect(main).request(&get("/x")).status, 200);
}

/// 100,000 /24 prefixes (every other one of 10.0.0.0/8 and more), as an
/// operator's block list: loaded, right at both ends, and a lookup.
#[test]
fn a_hundred_thousand_prefixes_stay_fast() {
    let prefixes: Vec<String> = (0..100_000u32)
        .map(|i| {
            let net = 0x0A00_0000u32 + (i * 2) * 256;
            format!("{}/24", std::net::Ipv4Addr::from(net))
        })
        .collect();
    let mut list = String::new();
    for p in &prefixes {
        let _ = write!(list, "\"{p}\", ");
    }
    let up = Upstream::echo();
    let config = ConfigBuilder::new(up.addr)
        .sections(TRUST_LOOPBACK)
        .route(&format!("deny = [{list}]"))
        .build();
    let started = Instant::now();
    let parsed = Config::from_toml_str(&config).expect("config");
    let load = started.elapsed();
    let proxy = Proxy::start(&config);
    // Denied: the first and last listed; allowed: the gaps between.
    assert_eq!(status_for(&proxy, "10.0.0.9", "/"), 403);
    assert_eq!(status_for(&proxy, "10.0.1.9", "/"), 200);
    let last = 0x0A00_0000u32 + 199_998 * 256;
    assert_eq!(
        status_for(&proxy, &std::net::Ipv4Addr::from(last + 5).to_string(), "/"),
        403
    );
    assert_eq!(
        status_for(
            &proxy,
            &std::net::Ipv4Addr::from(last + 256).to_string(),
            "/"
        ),
        200
    );
    // The compiled table is searched, not scanned: 200,000 lookups take
    // a small fraction of what one scan of the list per lookup would
    // (2 * 10^10 range checks), even unoptimised.
    let acl = parsed.chains[0].ip_access().expect("route list");
    let started = Instant::now();
    let mut denied = 0;
    for i in 0..200_000u32 {
        let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000 + i * 97));
        denied += usize::from(!acl.allows(ip));
    }
    let lookups = started.elapsed();
    assert!(denied > 50_000 && denied < 150_000, "{denied}");
    assert!(lookups.as_secs_f64() < 2.0, "200k lookups took {lookups:?}");
    eprintln!(
        "100k prefixes: config read in {load:?}, 200k lookups in {lookups:?} ({} intervals)",
        acl.intervals()
    );
}

#[test]
fn bad_entries_are_listed_with_their_key_path() {
    let up = Upstream::echo();
    let config = ConfigBuilder::new(up.addr)
        .route(r#"allow = ["10.0.0.0/8", "10.0.0.0/33", "example.com"]"#)
        .build()
        .replace(
            "name = \"main\"",
            "name = \"main\"\ndeny = [\"2001:db8::/129\"]",
        );
    let errors = Config::from_toml_str(&config).unwrap_err().to_string();
    for want in [
        "routes[0].allow[1]: `10.0.0.0/33`: prefix length must be 0..=32",
        "routes[0].allow[2]: `example.com` is not an address or address/prefix",
        "listeners[0] \"main\".deny[0]: `2001:db8::/129`: prefix length must be 0..=128",
    ] {
        assert!(errors.contains(want), "missing {want:?} in:\n{errors}");
    }
}
