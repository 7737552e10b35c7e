//! Route precedence and actions over real sockets: which of several echo
//! upstreams a request reaches (and with which target), redirects, fixed
//! responses, listener restrictions and the minimal config.

mod common;

use std::net::SocketAddr;

use common::*;

/// Named echo upstreams; tells which one took each request.
struct Backends {
    list: Vec<(&'static str, Upstream)>,
    seen: Vec<usize>,
}

impl Backends {
    fn new(names: &[&'static str]) -> Backends {
        Backends {
            list: names.iter().map(|&n| (n, Upstream::echo())).collect(),
            seen: vec![0; names.len()],
        }
    }

    fn get(&self, name: &str) -> &Upstream {
        &self.list.iter().find(|(n, _)| *n == name).expect(name).1
    }

    fn toml(&self) -> String {
        self.list
            .iter()
            .map(|(name, up)| {
                format!(
                    "[upstreams.{name}]\nservers = [\"{}\"]\nconnect_timeout = \"1s\"\n\
                     response_timeout = \"2s\"\n",
                    up.addr
                )
            })
            .collect()
    }

    /// The backend that took the requests since the last call ("-" for
    /// none); panics if more than one did.
    fn took(&mut self) -> String {
        let mut hit = Vec::new();
        for (i, (name, up)) in self.list.iter().enumerate() {
            let n = up.requests().len();
            if n != self.seen[i] {
                hit.push(*name);
                self.seen[i] = n;
            }
        }
        assert!(hit.len() <= 1, "several backends hit: {hit:?}");
        hit.first().map_or("-", |n| n).to_string()
    }
}

fn start(listeners: &str, routes: &str, b: &Backends) -> Proxy {
    Proxy::start(&format!(
        "[runtime]\ndrain_timeout = \"1s\"\n\n{listeners}\n{routes}\n{}",
        b.toml()
    ))
}

const ONE_LISTENER: &str = "[[listeners]]\nname = \"main\"\nbind = \"127.0.0.1:0\"\n";

fn request(host: &str, method: &str, path: &str, fields: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n{fields}\r\n").into_bytes()
}

/// Sends each `(raw request, backend, target seen)` case on one keep-alive
/// connection; backend "-" means no upstream, and then `target` is the
/// expected status.
fn check(proxy_addr: SocketAddr, b: &mut Backends, cases: &[(Vec<u8>, &str, &str)]) {
    let mut c = Client::connect(proxy_addr);
    for (raw, backend, target) in cases {
        let what = String::from_utf8_lossy(raw).escape_debug().to_string();
        let r = c.request(raw);
        let took = b.took();
        if *backend == "-" {
            assert_eq!(r.status.to_string(), *target, "{what}");
            assert_eq!(took, "-", "{what}: reached an upstream");
            continue;
        }
        assert_eq!(r.status, 200, "{what}: {}", r.raw_head);
        assert_eq!(took, *backend, "{what}");
        let method = std::str::from_utf8(raw).unwrap().split(' ').next().unwrap();
        assert_eq!(r.body_str(), format!("{method} {target}\n"), "{what}");
    }
}

#[test]
fn exact_host_beats_wildcard_beats_any() {
    let mut b = Backends::new(&["any", "wild", "deep", "exact"]);
    // Least specific first: file order must not decide.
    let proxy = start(
        ONE_LISTENER,
        r#"
[[routes]]
host = "*"
upstream = "any"

[[routes]]
host = "*.example.com"
upstream = "wild"

[[routes]]
host = "*.api.example.com"
upstream = "deep"

[[routes]]
host = ["shop.example.com", "store.example.com"]
upstream = "exact"
"#,
        &b,
    );
    let g = |host: &str| request(host, "GET", "/p", "");
    let cases = [
        (g("shop.example.com"), "exact", "/p"),
        (g("store.example.com"), "exact", "/p"),
        (g("Shop.Example.COM"), "exact", "/p"),
        (g("shop.example.com:8080"), "exact", "/p"),
        (g("shop.example.com."), "exact", "/p"),
        (g("a.example.com"), "wild", "/p"),
        (g("a.b.example.com"), "wild", "/p"),
        (g("api.example.com"), "wild", "/p"),
        (g("v1.api.example.com"), "deep", "/p"),
        (g("example.com"), "any", "/p"),
        (g("notexample.com"), "any", "/p"),
        (g("other.test"), "any", "/p"),
        (g("127.0.0.1"), "any", "/p"),
        // The absolute-form authority is the host, not the Host field.
        (
            b"GET http://shop.example.com/p HTTP/1.1\r\nHost: other.test\r\n\r\n".to_vec(),
            "exact",
            "/p",
        ),
        (b"GET /p HTTP/1.0\r\n\r\n".to_vec(), "any", "/p"),
    ];
    check(proxy.addr, &mut b, &cases);
    // The Host field goes upstream as the client sent it; for an
    // absolute-form target it is the target's authority.
    assert_eq!(
        b.get("any").requests()[2].header("host"),
        Some("other.test")
    );
    assert_eq!(
        b.get("exact").requests()[2].header("host"),
        Some("Shop.Example.COM")
    );
    assert_eq!(
        b.get("exact").last().header("host"),
        Some("shop.example.com")
    );
    assert_eq!(b.get("exact").last().header_count("host"), 1);
}

#[test]
fn longest_segment_aware_prefix_and_exact_paths() {
    let mut b = Backends::new(&["root", "api", "v2", "v2exact", "static", "login"]);
    let proxy = start(
        ONE_LISTENER,
        r#"
[[routes]]
path_prefix = "/"
upstream = "root"

[[routes]]
path_prefix = "/api"
upstream = "api"

[[routes]]
path_prefix = "/api/v2"
upstream = "v2"

[[routes]]
path_exact = "/api/v2"
upstream = "v2exact"

[[routes]]
path_prefix = "/static/"
upstream = "static"

[[routes]]
path_exact = "/login"
upstream = "login"
"#,
        &b,
    );
    let g = |path: &str| request("a", "GET", path, "");
    let cases = [
        (g("/"), "root", "/"),
        (g("/x"), "root", "/x"),
        (g("/api"), "api", "/api"),
        (g("/api/"), "api", "/api/"),
        (g("/api/x"), "api", "/api/x"),
        (g("/api?q=1"), "api", "/api?q=1"),
        (g("/apix"), "root", "/apix"),
        (g("/api-docs"), "root", "/api-docs"),
        (g("/API"), "root", "/API"),
        (g("/api/v2"), "v2exact", "/api/v2"),
        (g("/api/v2?x=1"), "v2exact", "/api/v2?x=1"),
        (g("/api/v2/"), "v2", "/api/v2/"),
        (g("/api/v2/items"), "v2", "/api/v2/items"),
        (g("/api/v2x"), "api", "/api/v2x"),
        (g("/api/v3"), "api", "/api/v3"),
        (g("/static/app.css"), "static", "/static/app.css"),
        (g("/static/"), "static", "/static/"),
        (g("/static"), "root", "/static"),
        (g("/staticfoo"), "root", "/staticfoo"),
        (g("/login"), "login", "/login"),
        (g("/login?next=/x"), "login", "/login?next=/x"),
        (g("/login/"), "root", "/login/"),
        (g("/login/x"), "root", "/login/x"),
    ];
    check(proxy.addr, &mut b, &cases);
}

#[test]
fn method_and_header_conditions() {
    let mut b = Backends::new(&["write", "canary", "debug", "read"]);
    let proxy = start(
        ONE_LISTENER,
        r#"
[[routes]]
path_prefix = "/m"
methods = ["POST", "PUT"]
upstream = "write"

[[routes]]
path_prefix = "/m"
headers = { "X-Canary" = "1" }
upstream = "canary"

[[routes]]
path_prefix = "/m"
header_present = ["X-Debug"]
upstream = "debug"

[[routes]]
path_prefix = "/m"
upstream = "read"

[[routes]]
path_prefix = "/only-get"
methods = ["get"]
upstream = "read"
"#,
        &b,
    );
    let r = |method: &str, path: &str, fields: &str| request("a", method, path, fields);
    let cases = [
        (r("GET", "/m", ""), "read", "/m"),
        (r("DELETE", "/m/1", ""), "read", "/m/1"),
        (r("POST", "/m", "Content-Length: 0\r\n"), "write", "/m"),
        (r("PUT", "/m/1", "Content-Length: 0\r\n"), "write", "/m/1"),
        (r("GET", "/m", "X-Canary: 1\r\n"), "canary", "/m"),
        (r("GET", "/m", "x-canary:   1  \r\n"), "canary", "/m"),
        (r("GET", "/m", "X-Canary: 2\r\n"), "read", "/m"),
        (r("GET", "/m", "X-Canary: 11\r\n"), "read", "/m"),
        (
            r("GET", "/m", "X-Other: 1\r\nX-Canary: 1\r\n"),
            "canary",
            "/m",
        ),
        (r("GET", "/m", "X-Debug: yes\r\n"), "debug", "/m"),
        (r("GET", "/m", "x-debug:\r\n"), "debug", "/m"),
        (r("GET", "/m", "X-Debugger: yes\r\n"), "read", "/m"),
        // Equal rank: the first route in the file wins.
        (
            r("POST", "/m", "X-Canary: 1\r\nContent-Length: 0\r\n"),
            "write",
            "/m",
        ),
        (
            r("GET", "/m", "X-Canary: 1\r\nX-Debug: 1\r\n"),
            "canary",
            "/m",
        ),
        (r("GET", "/only-get", ""), "read", "/only-get"),
        (r("DELETE", "/only-get", ""), "-", "404"),
        (r("OPTIONS", "/only-get", ""), "-", "404"),
    ];
    check(proxy.addr, &mut b, &cases);
}

#[test]
fn listener_restriction() {
    let mut b = Backends::new(&["admin", "public", "shared"]);
    let proxy = start(
        "[[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\n\
         [[listeners]]\nname = \"admin\"\nbind = \"127.0.0.1:0\"\n",
        r#"
[[routes]]
path_prefix = "/admin"
listeners = ["admin"]
upstream = "admin"

[[routes]]
path_prefix = "/"
listeners = ["public"]
upstream = "public"

[[routes]]
path_prefix = "/shared"
upstream = "shared"
"#,
        &b,
    );
    let admin_addr = proxy.handle().listener_addr("admin").expect("admin bound");
    assert_ne!(admin_addr, proxy.addr);
    let g = |path: &str| request("a", "GET", path, "");
    check(
        proxy.addr,
        &mut b,
        &[
            (g("/admin"), "public", "/admin"),
            (g("/admin/users"), "public", "/admin/users"),
            (g("/x"), "public", "/x"),
            (g("/shared/1"), "shared", "/shared/1"),
        ],
    );
    check(
        admin_addr,
        &mut b,
        &[
            (g("/admin"), "admin", "/admin"),
            (g("/admin/users"), "admin", "/admin/users"),
            (g("/x"), "-", "404"),
            (g("/shared/1"), "shared", "/shared/1"),
        ],
    );
}

/// Dot-segments and encoded dots are resolved before routing, and the
/// upstream gets the normalised path: `/public/../admin` is `/admin`.
#[test]
fn dot_segments_route_to_the_resolved_path() {
    let mut b = Backends::new(&["public", "admin", "root"]);
    let proxy = start(
        ONE_LISTENER,
        r#"
[[routes]]
path_prefix = "/public"
upstream = "public"

[[routes]]
path_prefix = "/admin"
upstream = "admin"

[[routes]]
path_prefix = "/"
upstream = "root"
"#,
        &b,
    );
    let g = |path: &str| request("a", "GET", path, "");
    let cases = [
        (g("/public/../admin"), "admin", "/admin"),
        (g("/public/%2e%2e/admin"), "admin", "/admin"),
        (g("/public/%2E%2E/admin/x?q=1"), "admin", "/admin/x?q=1"),
        (g("/public/.%2e/admin"), "admin", "/admin"),
        (g("/public/./../admin"), "admin", "/admin"),
        (g("/public/x/../../admin"), "admin", "/admin"),
        (g("/public/../../../admin"), "admin", "/admin"),
        (g("/public/%2e/../admin"), "admin", "/admin"),
        (g("//admin"), "admin", "/admin"),
        (g("/%61dmin"), "admin", "/admin"),
        (g("/admin/../public/x"), "public", "/public/x"),
        (g("/public/.."), "root", "/"),
        (g("/public/x/.."), "public", "/public/"),
        (g("/public/a..b"), "public", "/public/a..b"),
    ];
    check(proxy.addr, &mut b, &cases);
}

#[test]
fn strip_and_rewrite_prefix() {
    let mut b = Backends::new(&["app", "v2"]);
    let proxy = start(
        ONE_LISTENER,
        r#"
[[routes]]
path_prefix = "/app"
strip_prefix = true
upstream = "app"

[[routes]]
path_prefix = "/old/"
rewrite_prefix = "/v2/"
upstream = "v2"

[[routes]]
path_prefix = "/legacy"
rewrite_prefix = "/new"
upstream = "v2"
"#,
        &b,
    );
    let g = |path: &str| request("a.test", "GET", path, "");
    let cases = [
        (g("/app/x?y=1"), "app", "/x?y=1"),
        (g("/app/a/b/?c=d&e"), "app", "/a/b/?c=d&e"),
        (g("/app"), "app", "/"),
        (g("/app/"), "app", "/"),
        (g("/app?q=1"), "app", "/?q=1"),
        (g("/app/../app/z"), "app", "/z"),
        (g("/old/items?a=b&c"), "v2", "/v2/items?a=b&c"),
        (g("/old/"), "v2", "/v2/"),
        (g("/old/a/b"), "v2", "/v2/a/b"),
        (g("/legacy/x?k=v"), "v2", "/new/x?k=v"),
        (g("/legacy"), "v2", "/new"),
        (g("/legacy?x"), "v2", "/new?x"),
        (g("/appx"), "-", "404"),
        (g("/old"), "-", "404"),
    ];
    check(proxy.addr, &mut b, &cases);
    let seen = b.get("v2").last();
    assert_eq!(seen.header("host"), Some("a.test"));
    assert_eq!(seen.header_count("host"), 1);
}

#[test]
fn redirect_substitutes_host_and_request_uri() {
    let b = Backends::new(&["unused"]);
    let proxy = start(
        ONE_LISTENER,
        r#"
[[routes]]
path_prefix = "/"
redirect = { to = "https://$host$request_uri", status = 301 }

[[routes]]
path_exact = "/old"
redirect = { to = "/new", status = 308 }
"#,
        &b,
    );
    let mut c = proxy.connect();
    let r = c.request(&request("example.com", "GET", "/x/y?z=1&w", ""));
    assert_eq!(r.status, 301, "{}", r.raw_head);
    assert!(r.raw_head.starts_with("HTTP/1.1 301 Moved Permanently\r\n"));
    assert_eq!(r.header("location"), Some("https://example.com/x/y?z=1&w"));
    assert_eq!(r.header("content-length"), Some("0"));
    assert_eq!(r.header("connection"), None);
    // Keep-alive holds, and the next answer comes from the exact route.
    let r = c.request(&request("example.com", "GET", "/old", ""));
    assert_eq!(r.status, 308);
    assert_eq!(r.header("location"), Some("/new"));
    // The authority of an absolute-form target is the host.
    let r = c.request(b"GET http://abs.example/p?q HTTP/1.1\r\nHost: other\r\n\r\n");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://abs.example/p?q"));
    // HEAD gets the same head.
    let r = c.request(&request("example.com", "HEAD", "/h", ""));
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://example.com/h"));
    let r = c.request(&request("example.com", "GET", "/after", ""));
    assert_eq!(r.header("location"), Some("https://example.com/after"));
    assert!(b.get("unused").requests().is_empty());
}

/// `$host` is the host name without the port, as in nginx: redirecting
/// `http://example.com:8080/p` to `https://$host$request_uri` must not
/// send an https client to the plain-HTTP port.
#[test]
fn redirect_host_has_no_port() {
    let b = Backends::new(&["unused"]);
    let proxy = start(
        ONE_LISTENER,
        r#"
[[routes]]
path_prefix = "/"
redirect = { to = "https://$host$request_uri", status = 301 }
"#,
        &b,
    );
    let mut c = proxy.connect();
    let r = c.request(&request("example.com:8080", "GET", "/p?q=1", ""));
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://example.com/p?q=1"));
}

#[test]
fn respond_with_status_body_and_content_type() {
    let b = Backends::new(&["unused"]);
    let proxy = start(
        ONE_LISTENER,
        r#"
[[routes]]
path_exact = "/blocked"
respond = { status = 403, body = "blocked\n", content_type = "text/plain" }

[[routes]]
path_exact = "/tea"
respond = { status = 418, body = "{\"tea\":true}", content_type = "application/json" }

[[routes]]
path_exact = "/default-type"
respond = { status = 200, body = "hi" }

[[routes]]
path_exact = "/nothing"
respond = { status = 200 }
"#,
        &b,
    );
    let mut c = proxy.connect();
    let r = c.request(&request("a", "GET", "/blocked", ""));
    assert_eq!(r.status, 403);
    assert!(r.raw_head.starts_with("HTTP/1.1 403 Forbidden\r\n"));
    assert_eq!(r.body_str(), "blocked\n");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("content-length"), Some("8"));
    assert_eq!(r.header("connection"), None);

    // HEAD: the same head, no body; the next response parses cleanly
    // only if no body bytes were sent.
    let r = c.request(&request("a", "HEAD", "/blocked", ""));
    assert_eq!(r.status, 403);
    assert_eq!(r.header("content-length"), Some("8"));
    assert_eq!(r.header("content-type"), Some("text/plain"));

    let r = c.request(&request("a", "GET", "/tea", ""));
    assert_eq!(r.status, 418);
    assert_eq!(r.body_str(), "{\"tea\":true}");
    assert_eq!(r.header("content-type"), Some("application/json"));

    let r = c.request(&request("a", "GET", "/default-type", ""));
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "hi");
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));

    let r = c.request(&request("a", "GET", "/nothing", ""));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("0"));
    assert!(r.body.is_empty());

    // HTTP/1.0 without keep-alive: answered, then closed.
    let mut c = proxy.connect();
    let r = c.request(b"GET /blocked HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 403);
    assert_eq!(r.body_str(), "blocked\n");
    assert_eq!(r.header("connection"), Some("close"));
    assert!(b.get("unused").requests().is_empty());
}

/// RFC 9110 §8.6: no Content-Length in a 204 (or 1xx) response.
#[test]
fn respond_204_has_no_content_length() {
    let b = Backends::new(&["unused"]);
    let proxy = start(
        ONE_LISTENER,
        "[[routes]]\npath_prefix = \"/\"\nrespond = { status = 204 }\n",
        &b,
    );
    let mut c = proxy.connect();
    let r = c.request(&request("a", "GET", "/", ""));
    assert_eq!(r.status, 204);
    assert_eq!(r.header("content-length"), None, "{}", r.raw_head);
}

#[test]
fn no_route_is_404_and_keeps_the_connection() {
    let mut b = Backends::new(&["known"]);
    let proxy = start(
        ONE_LISTENER,
        "[[routes]]\nhost = \"known.test\"\npath_prefix = \"/\"\nupstream = \"known\"\n",
        &b,
    );
    let mut c = proxy.connect();
    let r = c.request(&request("unknown.test", "GET", "/", ""));
    assert_eq!(r.status, 404);
    assert_eq!(r.body_str(), "Not Found\n");
    assert_eq!(r.header("connection"), None);
    assert_eq!(b.took(), "-");
    let r = c.request(&request("known.test", "GET", "/after", ""));
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "GET /after\n");
    assert_eq!(b.took(), "known");

    // Pipelined: a miss, a hit and a miss in one write, answered in order.
    c.send(
        b"GET /1 HTTP/1.1\r\nHost: nope\r\n\r\n\
          GET /2 HTTP/1.1\r\nHost: known.test\r\n\r\n\
          GET /3 HTTP/1.1\r\nHost: nope\r\n\r\n",
    );
    assert_eq!(c.read_response().status, 404);
    let r = c.read_response();
    assert_eq!((r.status, r.body_str().as_str()), (200, "GET /2\n"));
    assert_eq!(c.read_response().status, 404);
    let r = c.request(&request("known.test", "GET", "/4", ""));
    assert_eq!(r.body_str(), "GET /4\n");
}

/// The minimal config: listeners, routes and upstreams only, every other
/// section left to its defaults.
const MINIMAL: &str = r#"
[[listeners]]
name = "web"
bind = "127.0.0.1:0"

[[routes]]
path_prefix = "/blocked"
respond = { status = 403, body = "Forbidden\n" }

[[routes]]
host = "api.example.com"
path_prefix = "/"
upstream = "api"

[[routes]]
path_prefix = "/"
upstream = "web"

[upstreams.api]
servers = ["127.0.0.1:9001"]

[upstreams.web]
servers = ["127.0.0.1:9002", "127.0.0.1:9003"]
"#;

#[test]
fn minimal_config_works() {
    let api = Upstream::echo();
    let web1 = Upstream::echo();
    let web2 = Upstream::echo();
    let toml = MINIMAL
        .replace("127.0.0.1:9001", &api.addr.to_string())
        .replace("127.0.0.1:9002", &web1.addr.to_string())
        .replace("127.0.0.1:9003", &web2.addr.to_string());
    let proxy = Proxy::start(&toml);
    let mut c = proxy.connect();

    let r = c.request(&request("www.example.com", "GET", "/blocked", ""));
    assert_eq!(r.status, 403);
    assert_eq!(r.body_str(), "Forbidden\n");
    let r = c.request(&request("www.example.com", "GET", "/blocked/x", ""));
    assert_eq!(r.status, 403);
    let r = c.request(&request("www.example.com", "GET", "/blockedx", ""));
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "GET /blockedx\n");

    let r = c.request(&request("api.example.com", "GET", "/v1/items?x=1", ""));
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "GET /v1/items?x=1\n");
    assert_eq!(api.requests().len(), 1);
    // The more specific host wins over the any-host /blocked route.
    let r = c.request(&request("api.example.com", "GET", "/blocked", ""));
    assert_eq!(r.body_str(), "GET /blocked\n");
    assert_eq!(api.requests().len(), 2);

    for i in 0..4 {
        let r = c.request(&request("www.example.com", "GET", &format!("/p{i}"), ""));
        assert_eq!(r.status, 200);
        assert_eq!(r.body_str(), format!("GET /p{i}\n"));
    }
    // Two equal servers share the load (web1 also took /blockedx).
    assert_eq!(web1.requests().len() + web2.requests().len(), 5);
    assert!(
        web1.requests().len() >= 2 && web2.requests().len() >= 2,
        "web1 {} web2 {}",
        web1.requests().len(),
        web2.requests().len()
    );
    let seen = api.last();
    assert_eq!(seen.header("host"), Some("api.example.com"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
}

/// The minimal config from the core engine issue (common/issue_minimal.toml,
/// byte for byte), with the addresses swapped: it must stay valid and behave
/// in every later version.
#[test]
fn issue_minimal_config_works() {
    let up = Upstream::echo();
    let toml = include_str!("common/issue_minimal.toml")
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9000", &up.addr.to_string());
    let proxy = Proxy::start(&toml);
    let mut c = proxy.connect();
    let r = c.request(&get("/blocked/page"));
    assert_eq!((r.status, r.body_str().as_str()), (403, "forbidden\n"));
    let r = c.request(&get("/shop?item=1"));
    assert_eq!(
        (r.status, r.body_str().as_str()),
        (200, "GET /shop?item=1\n")
    );
}

/// Query conditions match parameters as sent; a route with them beats
/// the catch-all only when they hold.
#[test]
fn query_conditions_pick_the_route() {
    let mut b = Backends::new(&["v2", "main", "debug"]);
    let proxy = start(
        ONE_LISTENER,
        r#"
[[routes]]
query = { "version" = "2" }
upstream = "v2"
[[routes]]
query_present = ["debug"]
path_prefix = "/x"
upstream = "debug"
[[routes]]
upstream = "main"
"#,
        &b,
    );
    let mut c = proxy.connect();
    for (target, want) in [
        ("/a?version=2", "v2"),
        ("/a?x=1&version=2&y", "v2"),
        ("/a?version=22", "main"),
        ("/a?myversion=2", "main"),
        ("/x?debug", "debug"),
        ("/x?a=1&debug=yes", "debug"),
        ("/y?debug", "main"),
        ("/x", "main"),
    ] {
        assert_eq!(c.request(&get(target)).status, 200, "{target}");
        assert_eq!(b.took(), want, "{target}");
    }
}

/// A regex rewrite replaces the matched part of the normalised path with
/// the template (captures expanded); the query is kept.
#[test]
fn regex_rewrite_changes_the_upstream_target() {
    let mut b = Backends::new(&["api"]);
    // `?` is refused in the template: the query belongs to the request.
    let err = ringress::Config::from_toml_str(&format!(
        "{ONE_LISTENER}\n[[routes]]\nupstream = \"api\"\nrewrite = {{ regex = \"^/(.*)$\", to = \"/x?y\" }}\n{}",
        b.toml()
    ))
    .unwrap_err();
    assert!(err.to_string().contains("routes[0].rewrite.to"), "{err}");
    let proxy = start(
        ONE_LISTENER,
        r#"
[[routes]]
upstream = "api"
rewrite = { regex = "^/v(\\d+)/users/(?P<id>[0-9]+)", to = "/api/v$1/user-$id" }
"#,
        &b,
    );
    let mut c = proxy.connect();
    assert_eq!(c.request(&get("/v2/users/42/posts?page=3")).status, 200);
    assert_eq!(b.took(), "api");
    assert_eq!(b.get("api").last().target, "/api/v2/user-42/posts?page=3");
    // No match: the path goes as it is.
    assert_eq!(c.request(&get("/other")).status, 200);
    assert_eq!(b.get("api").last().target, "/other");
    let err = ringress::Config::from_toml_str(&format!(
        "{ONE_LISTENER}\n[[routes]]\nupstream = \"api\"\nrewrite = {{ regex = \"(\", to = \"/\" }}\n{}",
        b.toml()
    ))
    .unwrap_err();
    assert!(err.to_string().contains("routes[0].rewrite.regex"), "{err}");
}

/// Per-route header edits: set replaces, add appends, remove drops; both
/// directions; the proxy's own framing fields cannot be edited.
#[test]
fn route_header_edits_both_ways() {
    let up = Upstream::start(|r, w, up| {
        use std::io::Write;
        while up.record(r).is_some() {
            let body = b"ok";
            let head = "HTTP/1.1 200 OK\r\nServer: secret-origin/1.0\r\nX-Powered-By: php\r\n\
                        Cache-Control: private\r\nContent-Length: 2\r\n\r\n";
            if w.write_all(head.as_bytes())
                .and_then(|_| w.write_all(body))
                .is_err()
            {
                return;
            }
        }
    });
    let proxy = Proxy::start(
        &ConfigBuilder::new(up.addr)
            .route(
                r#"request_headers = { set = { "X-Env" = "prod" }, add = { "X-Tag" = "b" }, remove = ["Cookie"] }
response_headers = { set = { "Cache-Control" = "no-store" }, add = { "X-Frame-Options" = "DENY" }, remove = ["Server", "X-Powered-By"] }"#,
            )
            .build(),
    );
    let mut c = proxy.connect();
    let r =
        c.request(b"GET / HTTP/1.1\r\nHost: h\r\nX-Env: dev\r\nX-Tag: a\r\nCookie: s=1\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_str(), "ok");
    assert_eq!(r.header("server"), None);
    assert_eq!(r.header("x-powered-by"), None);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    let seen = up.last();
    assert_eq!(seen.header_count("x-env"), 1, "{}", seen.raw_head);
    assert_eq!(seen.header("x-env"), Some("prod"));
    assert_eq!(seen.header_count("x-tag"), 2, "{}", seen.raw_head);
    assert_eq!(seen.header("cookie"), None);
    for bad in ["Content-Length", "Transfer-Encoding", "Connection", "Host"] {
        let err = ringress::Config::from_toml_str(
            &ConfigBuilder::new(up.addr)
                .route(&format!("response_headers = {{ remove = [\"{bad}\"] }}"))
                .build(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("response_headers"), "{bad}: {err}");
    }
}
