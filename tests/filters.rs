//! Request filters over real sockets: every match kind and action of
//! `[[filters]]`, rules scoped to routes, the default set on raw request
//! bytes, `filters = "off"`, `filters_mode = "log"`, the rule id in the
//! JSON access log, `ringress_filter_matches_total` on the admin
//! listener, and config mistakes listed with their key paths. A denied
//! request never reaches the upstream.

mod common;

use common::*;
use ringress::Config;

/// A JSON access log in a file of its own, removed on drop.
struct AccessLog(TempPath);

impl AccessLog {
    fn new(name: &str) -> AccessLog {
        AccessLog(TempPath::file(format!(
            "ringress-filters-{name}-{}.json",
            std::process::id()
        )))
    }

    fn section(&self) -> String {
        format!(
            "[access_log]\npath = \"{}\"\nformat = \"json\"\n",
            self.0.display()
        )
    }

    /// The first `n` lines, once written.
    fn lines(&self, n: usize) -> Vec<String> {
        let read = || std::fs::read_to_string(&self.0).unwrap_or_default();
        wait_until(&format!("{n} access lines"), TIMEOUT, || {
            read().lines().count() >= n
        });
        read().lines().take(n).map(str::to_string).collect()
    }
}

/// One request on a connection of its own (a refused request with a
/// body closes it).
fn once(proxy: &Proxy, raw: &[u8]) -> Response {
    proxy.connect().request(raw)
}

fn with_headers(target: &str, headers: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").into_bytes()
}

const RULES: &str = r#"
[[filters]]
id = "internal"
header = { name = "X-Internal", exact = "yes" }
action = "allow"

[[filters]]
id = "watch-admin"
path = { prefix = "/admin" }
action = "log"

[[filters]]
id = "no-delete"
methods = ["DELETE"]
status = 405

[[filters]]
id = "exact"
path = { exact = "/exact" }

[[filters]]
id = "admin"
path = { prefix = "/admin" }

[[filters]]
id = "php"
path = { regex = '(?i)\.php$' }
status = 404

[[filters]]
id = "q-exact"
query = { exact = "debug=1" }

[[filters]]
id = "q-prefix"
query = { prefix = "trace=" }

[[filters]]
id = "sqli"
query = { regex = '(?i)union(\s|\+|%20)+select' }
status = 400

[[filters]]
id = "probe"
header = { name = "X-Probe" }

[[filters]]
id = "sqlmap"
header = { name = "User-Agent", exact = "sqlmap" }

[[filters]]
id = "curl"
header = { name = "User-Agent", prefix = "curl/" }
status = 429

[[filters]]
id = "spam"
header = { name = "Referer", regex = '^https?://spam\.' }

[[filters]]
id = "big"
body_size = { over = "1KiB" }
status = 413

[[filters]]
id = "only-b"
routes = ["b"]
path = { prefix = "/b/secret" }
"#;

#[test]
fn every_match_kind_and_action() {
    let up = Upstream::echo();
    let log = AccessLog::new("kinds");
    let config = ConfigBuilder::new(up.addr)
        .sections(&format!("{}{RULES}", log.section()))
        .sections("[[routes]]\nname = \"b\"\npath_prefix = \"/b\"\nupstream = \"backend\"\n")
        .route(r#"name = "main""#)
        .route(r#"filters = "default""#)
        .build();
    let proxy = Proxy::start(&config);
    let table: &[(&[u8], u16)] = &[
        (b"DELETE /x HTTP/1.1\r\nHost: t\r\n\r\n", 405),
        (&get("/exact"), 403),
        (&get("/exact/not"), 200),
        (&get("/admin/users"), 403),
        (&get("/a/INDEX.PHP"), 404),
        (&get("/x?debug=1"), 403),
        (&get("/x?debug=12"), 200),
        (&get("/x?trace=on"), 403),
        (&get("/x?id=1+UNION+SELECT+pw"), 400),
        (&with_headers("/x", "X-Probe: 1\r\n"), 403),
        (&with_headers("/x", "User-Agent: sqlmap\r\n"), 403),
        (&with_headers("/x", "User-Agent: sqlmap/1.7\r\n"), 200),
        (&with_headers("/x", "User-Agent: curl/8.5\r\n"), 429),
        (
            &with_headers("/x", "Referer: http://spam.example/\r\n"),
            403,
        ),
        (
            b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 2000\r\n\r\n",
            413,
        ),
        (
            b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
            200,
        ),
        // `allow` skips the later denies and the default set.
        (&with_headers("/admin/.env", "X-Internal: yes\r\n"), 200),
        // Scoped to route `b`.
        (&get("/b/secret"), 403),
        (&get("/main/b/secret"), 200),
    ];
    let mut passed = 0;
    for (raw, status) in table {
        let r = once(&proxy, raw);
        let text = String::from_utf8_lossy(raw);
        assert_eq!(r.status, *status, "{text}");
        if *status == 200 {
            passed += 1;
        } else {
            assert!(r.header("x-upstream").is_none(), "{text}");
        }
    }
    // The upstream saw exactly the requests let through.
    let seen = up.requests();
    assert_eq!(seen.len(), passed, "{seen:?}");
    assert!(
        seen.iter()
            .all(|s| !s.target.contains("secret") || s.target.starts_with("/main"))
    );
    let lines = log.lines(table.len());
    let id_of = |target: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!("\"target\":\"{target}\"")))
            .unwrap_or_else(|| panic!("no line for {target}: {lines:?}"))
            .clone()
    };
    assert!(id_of("/exact").contains(r#""filter":"exact""#));
    assert!(id_of("/a/INDEX.PHP").contains(r#""filter":"php""#));
    // A log rule that matched before the deny: the deny is what the line
    // names.
    assert!(id_of("/admin/users").contains(r#""filter":"admin""#));
    assert!(id_of("/exact/not").contains(r#""filter":null"#));
    assert!(id_of("/admin/.env").contains(r#""filter":"internal""#));
}

#[test]
fn the_default_set_refuses_raw_attacks() {
    let up = Upstream::echo();
    let log = AccessLog::new("default");
    // Top-level keys go before the builder's first table.
    let config = format!(
        "filters = \"default\"\n{}",
        ConfigBuilder::new(up.addr).sections(&log.section()).build()
    );
    let proxy = Proxy::start(&config);
    let long = format!("/?q={}", "a".repeat(3000));
    let table: &[(&[u8], &str)] = &[
        (&get("/a/%2e%2e/etc/passwd"), "default/traversal"),
        (&get("/a/%2E%2e/etc/passwd"), "default/traversal"),
        (&get("/a/x?f=..%2f..%2fetc%2fpasswd"), "default/traversal"),
        (&get("/static/%252e%252e/x"), "default/traversal"),
        (&get("/a/%c0%ae%c0%ae/x"), "default/traversal"),
        (&get("/x%00y"), "default/ctl-bytes"),
        (&get("/x?a=%0d%0aSet-Cookie:x"), "default/ctl-bytes"),
        (
            b"TRACE / HTTP/1.1\r\nHost: t\r\n\r\n",
            "default/trace-method",
        ),
        (&get(&long), "default/long-query"),
        (&get("/.env"), "default/scanner-paths"),
        (&get("/.git/config"), "default/scanner-paths"),
        (&get("/blog/WP-LOGIN.PHP"), "default/scanner-paths"),
        (&get("/vendor/phpunit/src/x.php"), "default/scanner-paths"),
    ];
    for (raw, _) in table {
        let r = once(&proxy, raw);
        let text = String::from_utf8_lossy(&raw[..raw.len().min(80)]);
        assert_eq!(r.status, 403, "{text}");
    }
    assert_eq!(once(&proxy, &get("/index.html?a=1.2")).status, 200);
    // An encoded slash in the path of a route with deny rules is refused
    // before the rules (`path_escaped_slashes` defaults to reject there).
    assert_eq!(once(&proxy, &get("/a/..%2fetc/passwd")).status, 400);
    assert_eq!(once(&proxy, &get("/a/..%5cetc/passwd")).status, 400);
    assert_eq!(up.requests().len(), 1, "only the plain request went up");
    let lines = log.lines(table.len() + 3);
    // Two workers write lines: found by target.
    for (raw, id) in table {
        let text = String::from_utf8_lossy(raw);
        let target = text.split(' ').nth(1).unwrap();
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("\"target\":\"{target}\"")))
            .unwrap_or_else(|| panic!("no line for {target}"));
        assert!(line.contains(&format!("\"filter\":\"{id}\"")), "{line}");
        assert!(
            line.contains(r#""exit":"rejected","reason":"filtered""#),
            "{line}"
        );
    }
}

#[test]
fn a_route_can_turn_filters_off_or_only_log() {
    let up = Upstream::echo();
    let log = AccessLog::new("modes");
    let config = ConfigBuilder::new(up.addr)
        .sections(&format!(
            "{}\n[[filters]]\nid = \"no-x\"\npath = {{ prefix = \"/x\" }}\n\
             [[filters]]\ninclude = \"default\"\n\
             [[routes]]\nname = \"open\"\npath_prefix = \"/open\"\nupstream = \"backend\"\nfilters = \"off\"\n\
             [[routes]]\nname = \"trial\"\npath_prefix = \"/trial\"\nupstream = \"backend\"\nfilters_mode = \"log\"\n",
            log.section()
        ))
        .build();
    let proxy = Proxy::start(&config);
    let mut c = proxy.connect();
    assert_eq!(c.request(&get("/x/1")).status, 403);
    assert_eq!(c.request(&get("/.env")).status, 403);
    assert_eq!(c.request(&get("/open/.env")).status, 200);
    // Log mode: through to the upstream, the match in the log.
    assert_eq!(c.request(&get("/trial/.git/config")).status, 200);
    assert_eq!(up.last().target, "/trial/.git/config");
    assert_eq!(up.requests().len(), 2);
    let lines = log.lines(4);
    assert!(lines[2].contains(r#""filter":null"#), "{}", lines[2]);
    assert!(
        lines[3].contains(r#""status":200"#)
            && lines[3].contains(r#""filter":"default/scanner-paths""#),
        "{}",
        lines[3]
    );
    // Top-level log mode, by a reload.
    proxy.reload(&format!("filters_mode = \"log\"\n{config}"));
    let mut c = proxy.connect();
    assert_eq!(c.request(&get("/x/2")).status, 200);
}

#[test]
fn matches_are_counted_on_the_admin_listener() {
    let up = Upstream::echo();
    let config = ConfigBuilder::new(up.addr)
        .sections(
            "[[filters]]\nid = \"watch\"\nmethods = [\"GET\"]\naction = \"log\"\n\
             [[filters]]\nid = \"ok\"\npath = { exact = \"/ok\" }\naction = \"allow\"\n\
             [[filters]]\nid = \"no\"\npath = { prefix = \"/no\" }\n",
        )
        .build();
    let proxy = Proxy::start(&config);
    let admin = proxy
        .handle()
        .start_admin(
            "127.0.0.1:0".parse().unwrap(),
            std::env::temp_dir().join("unused.toml"),
        )
        .expect("admin binds");
    let mut c = proxy.connect();
    for _ in 0..3 {
        assert_eq!(c.request(&get("/no")).status, 403);
    }
    assert_eq!(c.request(&get("/ok")).status, 200);
    assert_eq!(c.request(&get("/other")).status, 200);
    let want = [
        "ringress_filter_matches_total{rule=\"watch\",action=\"log\"} 5",
        "ringress_filter_matches_total{rule=\"no\",action=\"deny\"} 3",
        "ringress_filter_matches_total{rule=\"ok\",action=\"allow\"} 1",
        "ringress_rejections_total{reason=\"filtered\"} 3",
    ];
    let mut text = String::new();
    wait_until("the filter metrics", TIMEOUT, || {
        text = admin_metrics(admin);
        want.iter().all(|w| text.contains(w))
    });
    assert_eq!(up.requests().len(), 2);
}

#[test]
fn config_mistakes_are_listed_with_their_keys() {
    let text = r#"
[[filters]]
id = "a"
path = { regex = "([a-z]" }

[[filters]]
id = "a"
methods = ["GET"]
routes = ["apl"]

[[filters]]
id = "c"
header = { name = "X-A" }
status = 200

[[listeners]]
name = "l"
bind = "127.0.0.1:0"

[[routes]]
name = "api"
respond = { status = 200 }
filters = "defualt"
"#;
    let e = match Config::from_toml_str(text) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    for want in [
        "filters[0].path.regex: bad regex",
        "filters[1].id: duplicate id `a`",
        "filters[1].routes: no route named `apl` (did you mean `api`?)",
        "filters[2].status: 200 is out of range 400..=599",
        "routes[0] \"api\".filters: `defualt` is not one of default, on, rules, off (did you mean `default`?)",
    ] {
        assert!(e.contains(want), "`{want}` not in:\n{e}");
    }
}

/// The top-level switch and rules share the key `filters`: the TOML
/// error says what to write instead.
#[test]
fn the_switch_and_rules_together_say_how_to_include_the_default_set() {
    let text = "filters = \"default\"\n[[filters]]\nid = \"a\"\nmethods = [\"PUT\"]\n\
                [[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\
                [[routes]]\nrespond = { status = 200 }\n";
    let e = match Config::from_toml_str(text) {
        Ok(_) => panic!("accepted"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("include = \"default\""), "{e}");
}

/// `ringress --check` lists every filter mistake with its key path.
#[test]
fn check_lists_filter_mistakes() {
    let path = TempPath::file(format!(
        "ringress-filters-check-{}.toml",
        std::process::id()
    ));
    std::fs::write(
        &path,
        "[[filters]]\nid = \"x\"\nquery = { regex = \"(a\" }\n\
         [[filters]]\nid = \"y\"\nmethods = [\"GET\"]\nroutes = [\"ap\"]\n\
         [[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\
         [[routes]]\nname = \"api\"\nrespond = { status = 200 }\nfilters_mode = \"shadow\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringress"))
        .arg("--check")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run ringress --check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for want in [
        "line 3: filters[0].query.regex: bad regex",
        "filters[1].routes: no route named `ap` (did you mean `api`?)",
        "routes[0] \"api\".filters_mode: `shadow` is not one of enforce, log",
    ] {
        assert!(stderr.contains(want), "`{want}` not in:\n{stderr}");
    }
}
