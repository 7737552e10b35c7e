//! The admin listener runs on the proxy's own engine (worker 0): the
//! endpoints, a reload from the config file, and a stalled admin client
//! not holding up the next one.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use common::*;

/// One admin request; the listener closes after each answer.
fn admin(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to admin");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: admin.test\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("an admin answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    assert!(head.contains("Connection: close"), "{head}");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// A file under the system temp dir holding `text`, removed on drop.
struct TempFile(TempPath);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path = TempPath::file(format!("ringress-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }
}

#[test]
fn admin_endpoints_on_the_proxy_engine() {
    let up = Upstream::echo();
    let config = simple_config(up.addr);
    let file = TempFile::new("admin.toml", &config);
    let proxy = Proxy::start(&config);
    let addr = proxy
        .handle()
        .start_admin("127.0.0.1:0".parse().unwrap(), file.0.to_path_buf())
        .expect("admin binds");

    // Worker 0 picks the socket up on its tick; connections queue until then.
    assert_eq!(admin(addr, "GET", "/health"), (200, "ok\n".into()));
    assert_eq!(admin(addr, "GET", "/generation"), (200, "1\n".into()));
    assert_eq!(admin(addr, "GET", "/nope").0, 404);
    assert_eq!(admin(addr, "DELETE", "/reload").0, 405);

    // A client that never finishes its head does not hold the listener.
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled.write_all(b"GET /health HTTP/1.1\r\n").unwrap();
    assert_eq!(admin(addr, "GET", "/health").0, 200);

    // Reload: the file as it is, then a broken one (kept running).
    assert_eq!(
        admin(addr, "POST", "/reload"),
        (200, "reloaded: generation 2\n".into())
    );
    std::fs::write(&file.0, config.replace("servers = [", "servers = 5 #[")).unwrap();
    let (status, body) = admin(addr, "POST", "/reload");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("upstreams.backend.servers"), "{body}");
    assert_eq!(admin(addr, "GET", "/generation"), (200, "2\n".into()));
    assert_eq!(proxy.handle().generation(), 2);

    // The proxy itself goes on serving.
    assert_eq!(proxy.connect().request(&get("/x")).status, 200);
    drop(stalled);
}

#[test]
fn a_second_admin_listener_on_the_same_address_is_refused() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&simple_config(up.addr));
    let file = TempFile::new("admin2.toml", "");
    let addr = proxy
        .handle()
        .start_admin("127.0.0.1:0".parse().unwrap(), file.0.to_path_buf())
        .unwrap();
    let other = Proxy::start(&simple_config(up.addr));
    assert!(
        other
            .handle()
            .start_admin(addr, file.0.to_path_buf())
            .is_err()
    );
}
