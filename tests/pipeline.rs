//! The request pipeline: the logging phase runs exactly once for every
//! request whatever its exit, and header edits render variables.

mod common;

use common::*;
use ringress::pipeline::Exit;

/// An upstream that accepts and reads but never answers.
fn silent_upstream() -> Upstream {
    Upstream::start(|r, _w, up| while up.record(r).is_some() {})
}

fn pipeline_config(up: &Upstream, silent: &Upstream, refused: std::net::SocketAddr) -> String {
    ConfigBuilder::new(up.addr)
        .route(r#"path_prefix = "/app""#)
        .sections(&format!(
            r#"
[timeouts]
client_head = "300ms"

[[routes]]
path_exact = "/fixed"
respond = {{ status = 403, body = "no\n" }}

[[routes]]
path_exact = "/old"
redirect = {{ to = "/new", status = 308 }}

[[routes]]
path_prefix = "/down"
upstream = "down"

[[routes]]
path_prefix = "/slow"
upstream = "slow"

[upstreams.down]
servers = ["{refused}"]
connect_timeout = "1s"

[upstreams.slow]
servers = ["{silent}"]
response_timeout = "200ms"
"#,
            silent = silent.addr
        ))
        .build()
}

#[test]
fn logging_runs_once_per_request_for_every_exit() {
    let up = Upstream::echo();
    let silent = silent_upstream();
    let proxy = Proxy::start_with(
        &pipeline_config(&up, &silent, dead_addr()),
        1,
        ringress::IoMode::Auto,
    );
    let mut c = proxy.connect();
    // Proxied, three on one connection.
    for _ in 0..3 {
        assert_eq!(c.request(&get("/app/x")).status, 200);
    }
    assert_eq!(c.request(&get("/fixed")).status, 403);
    assert_eq!(c.request(&get("/old")).status, 308);
    // Rejected: no route (kept alive), then a malformed head (closed).
    assert_eq!(c.request(&get("/nowhere")).status, 404);
    assert_eq!(c.request(&get("/down")).status, 502);
    // An upstream timeout ends the connection.
    assert_eq!(c.request(&get("/slow")).status, 504);
    assert!(c.is_closed());
    let mut c = proxy.connect();
    let bad = c.request(b"GET /app HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    assert_eq!(bad.status, 400);
    assert!(c.is_closed());

    // Timeout: a head that never finishes gets 408.
    let mut slow = proxy.connect();
    slow.send(b"GET /app HTTP/1.1\r\n");
    assert_eq!(slow.read_response().status, 408);

    // Client gone: mid-head, and mid-body of a streamed request.
    let mut gone = proxy.connect();
    gone.send(b"GET /app HT");
    drop(gone);
    let mut gone = proxy.connect();
    gone.send(b"POST /app HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\npartial");
    drop(gone);

    let expected = [
        (Exit::Proxied, 3),
        (Exit::Fixed, 1),
        (Exit::Redirect, 1),
        (Exit::Rejected, 2),
        (Exit::UpstreamFailed, 1),
        (Exit::Timeout, 2),
        (Exit::ClientGone, 2),
    ];
    let total: u64 = expected.iter().map(|(_, n)| n).sum();
    let handle = proxy.handle();
    wait_until("every request logged", TIMEOUT, || {
        handle.exits().total() >= total
    });
    // One more request, counted after all the others: anything logged
    // twice would show by now.
    assert_eq!(proxy.connect().request(&get("/app/last")).status, 200);
    wait_until("the last request logged", TIMEOUT, || {
        handle.exits().get(Exit::Proxied) == 4
    });
    let exits = handle.exits();
    for (exit, n) in expected {
        let n = if exit == Exit::Proxied { n + 1 } else { n };
        assert_eq!(exits.get(exit), n, "{}: {exits:?}", exit.name());
    }
    assert_eq!(exits.total(), total + 1);
}

#[test]
fn header_edits_render_variables() {
    let up = Upstream::echo();
    let proxy = Proxy::start(
        &ConfigBuilder::new(up.addr)
            .route(
                r#"request_headers = { set = { "X-Real-IP" = "$client_ip", "X-Id" = "$request_id", "X-Where" = "${scheme}://$host on $listener" } }
response_headers = { add = { "X-Route" = "route $route", "X-Price" = "$$5" } }
name = "app""#,
            )
            .build(),
    );
    let mut c = proxy.connect();
    let r = c.request(b"GET /x HTTP/1.1\r\nHost: shop.test:8080\r\nX-Real-IP: 6.6.6.6\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-route"), Some("route app"));
    assert_eq!(r.header("x-price"), Some("$5"));
    let seen = up.last();
    assert_eq!(seen.header_count("x-real-ip"), 1);
    assert_eq!(seen.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-where"), Some("http://shop.test on main"));
    let id = seen.header("x-id").unwrap().to_string();
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    // Each request gets its own id.
    c.request(&get("/y"));
    assert_ne!(up.last().header("x-id"), Some(id.as_str()));
}

#[test]
fn unknown_variables_are_config_errors() {
    let up = Upstream::echo();
    let toml = ConfigBuilder::new(up.addr)
        .route(r#"request_headers = { set = { "X-Real-IP" = "$remote_addr" } }"#)
        .build();
    let err = ringress::Config::from_toml_str(&toml)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("routes[0].request_headers.set.X-Real-IP"),
        "{err}"
    );
    assert!(err.contains("$client_ip"), "{err}");
}
