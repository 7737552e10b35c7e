//! Table tests of the rules over parsed heads, compiled from config text
//! (here, with the config that compiles them: the pipeline does not
//! depend on the config).

use crate::config::Config;
use crate::http::{HeadLimits, empty_headers, parse_request, path};
use crate::pipeline::{DEFAULT_FILTERS as DEFAULTS, FilterScratch};

/// A config with one listener, `rules` and routes `a` (with `route`'s
/// keys) and `b`.
fn config(top: &str, rules: &str, route: &str) -> Config {
    Config::from_toml_str(&format!(
        "{top}\n[[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n{rules}\n\
         [[routes]]\nname = \"a\"\npath_prefix = \"/\"\nrespond = {{ status = 200 }}\n{route}\n\
         [[routes]]\nname = \"b\"\npath_prefix = \"/b\"\nrespond = {{ status = 200 }}\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"))
}

/// What route `route`'s filter does with `raw`: (denied with, ids matched).
fn run(c: &Config, route: usize, raw: &[u8]) -> (Option<u16>, Vec<String>) {
    let Some(waf) = c.chains[route].waf() else {
        return (None, Vec::new());
    };
    let mut headers = empty_headers();
    let req = parse_request(raw, &mut headers, &HeadLimits::default())
        .expect("valid head")
        .expect("whole head");
    let mut buf = Vec::new();
    let norm = path::normalize(req.path, &mut buf).expect("normalised");
    let mut scratch = FilterScratch::default();
    scratch.events.clear();
    let denied = waf.evaluate(&req, norm, &mut scratch);
    let ids = scratch
        .events
        .iter()
        .map(|&(i, a)| format!("{}:{}", c.filters.rules[i as usize].id, a.name()))
        .collect();
    (denied, ids)
}

fn get(target: &str, headers: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: h\r\n{headers}\r\n").into_bytes()
}

#[test]
fn every_match_kind() {
    let rules = r#"
[[filters]]
id = "m"
methods = ["delete"]
[[filters]]
id = "pe"
path = { exact = "/exact" }
[[filters]]
id = "pp"
path = { prefix = "/pre/" }
[[filters]]
id = "pr"
path = { regex = '(?i)\.php$' }
[[filters]]
id = "qe"
query = { exact = "a=1" }
[[filters]]
id = "qp"
query = { prefix = "debug=" }
[[filters]]
id = "qr"
query = { regex = "union.+select" }
[[filters]]
id = "hp"
header = { name = "X-Probe" }
[[filters]]
id = "he"
header = { name = "User-Agent", exact = "sqlmap" }
[[filters]]
id = "hpre"
header = { name = "User-Agent", prefix = "curl/" }
[[filters]]
id = "hr"
header = { name = "Referer", regex = "^https?://spam\\." }
[[filters]]
id = "size"
body_size = { over = "1KiB" }
[[filters]]
id = "and"
methods = ["POST"]
path = { prefix = "/login" }
status = 429
"#;
    let c = config("", rules, "");
    let table: &[(&[u8], Option<&str>)] = &[
        (b"DELETE /x HTTP/1.1\r\nHost: h\r\n\r\n", Some("m")),
        (&get("/exact", ""), Some("pe")),
        (&get("/exact/no", ""), None),
        (&get("/pre/x", ""), Some("pp")),
        (&get("/pre", ""), None),
        (&get("/a/INDEX.PHP", ""), Some("pr")),
        (&get("/a/index.php5", ""), None),
        (&get("/x?a=1", ""), Some("qe")),
        (&get("/x?a=12", ""), None),
        (&get("/x?debug=1", ""), Some("qp")),
        (&get("/x?q=1+union+all+select+2", ""), Some("qr")),
        (&get("/x", "X-Probe: \r\n"), Some("hp")),
        (&get("/x", "User-Agent: sqlmap\r\n"), Some("he")),
        (&get("/x", "User-Agent: sqlmap/1.0\r\n"), None),
        (&get("/x", "User-Agent: curl/8.0\r\n"), Some("hpre")),
        // Any of the header's values.
        (
            &get(
                "/x",
                "Referer: https://ok.example/\r\nReferer: http://spam.example/\r\n",
            ),
            Some("hr"),
        ),
        (
            b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 2000\r\n\r\n",
            Some("size"),
        ),
        (
            b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 1024\r\n\r\n",
            None,
        ),
        (
            b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            None,
        ),
        (&get("/login", ""), None),
        (
            b"POST /login HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n",
            Some("and"),
        ),
    ];
    for (raw, want) in table {
        let (denied, ids) = run(&c, 0, raw);
        let text = String::from_utf8_lossy(raw);
        match want {
            Some(id) => {
                assert_eq!(ids, [format!("{id}:deny")], "{text}");
                let status = if *id == "and" { 429 } else { 403 };
                assert_eq!(denied, Some(status), "{text}");
            }
            None => assert_eq!((denied, ids.len()), (None, 0), "{text}"),
        }
    }
}

#[test]
fn allow_skips_later_denies_and_the_default_set_log_goes_on() {
    let rules = r#"
[[filters]]
id = "watch"
path = { prefix = "/" }
action = "log"
[[filters]]
id = "ok"
header = { name = "X-Internal", exact = "1" }
action = "allow"
[[filters]]
id = "no-admin"
path = { prefix = "/admin" }
"#;
    let c = config(
        r#"filters_mode = "enforce""#,
        rules,
        r#"filters = "default""#,
    );
    let (denied, ids) = run(&c, 0, &get("/admin", ""));
    assert_eq!(
        (denied, ids),
        (Some(403), vec!["watch:log".into(), "no-admin:deny".into()])
    );
    let (denied, ids) = run(&c, 0, &get("/admin/.env", "X-Internal: 1\r\n"));
    assert_eq!(
        (denied, ids),
        (None, vec!["watch:log".into(), "ok:allow".into()])
    );
    let (denied, ids) = run(&c, 0, &get("/.env", ""));
    let want = vec!["watch:log".into(), "default/scanner-paths:deny".into()];
    assert_eq!((denied, ids), (Some(403), want));
}

#[test]
fn log_mode_turns_deny_into_log_and_guards_nothing() {
    let rules = "[[filters]]\nid = \"x\"\npath = { prefix = \"/x\" }\n";
    let c = config(r#"filters_mode = "log""#, rules, "");
    let (denied, ids) = run(&c, 0, &get("/x", ""));
    assert_eq!((denied, ids), (None, vec!["x:log".to_string()]));
    assert!(!c.chains[0].guards_requests());
    let c = config("", rules, r#"filters_mode = "log""#);
    assert!(!c.chains[0].guards_requests());
    assert!(c.chains[1].guards_requests(), "route b enforces");
}

#[test]
fn routes_select_their_rules() {
    let rules = r#"
[[filters]]
id = "only-b"
routes = ["b"]
methods = ["PUT"]
[[filters]]
id = "all"
methods = ["PATCH"]
"#;
    let ids = |c: &Config, r: usize| -> Vec<String> {
        c.chains[r]
            .waf()
            .map(|w| w.ids().map(str::to_string).collect())
            .unwrap_or_default()
    };
    let c = config("", rules, "");
    assert_eq!(ids(&c, 0), ["all"]);
    assert_eq!(ids(&c, 1), ["only-b", "all"]);
    // The default set where it is included; a route can leave it out or
    // turn everything off.
    let with = format!("[[filters]]\ninclude = \"default\"\n{rules}");
    let c = config("", &with, r#"filters = "rules""#);
    assert_eq!(ids(&c, 0), ["all"]);
    assert_eq!(ids(&c, 1)[..5].join(" "), DEFAULTS.map(|d| d.0).join(" "));
    assert_eq!(ids(&c, 1)[5..], ["only-b", "all"]);
    let c = config("", rules, r#"filters = "off""#);
    assert!(c.chains[0].is_empty());
    // The switch alone, at the top level.
    let c = config(r#"filters = "default""#, "", "");
    assert_eq!(ids(&c, 0).len(), 5);
    assert!(c.chains[0].guards_requests());
    let c = config("", "", "");
    assert!(c.chains[0].is_empty() && c.chains[1].is_empty());
}

#[test]
fn the_default_set_on_raw_targets() {
    let c = config(r#"filters = "default""#, "", "");
    let table: &[(&[u8], Option<&str>)] = &[
        (&get("/a/%2e%2e/etc/passwd", ""), Some("default/traversal")),
        (&get("/a/..%2fetc", ""), Some("default/traversal")),
        (&get("/x%00y", ""), Some("default/ctl-bytes")),
        (
            b"TRACE / HTTP/1.1\r\nHost: h\r\n\r\n",
            Some("default/trace-method"),
        ),
        (
            b"TRACK / HTTP/1.1\r\nHost: h\r\n\r\n",
            Some("default/trace-method"),
        ),
        (&get(&format!("/?q={}", "a".repeat(2046)), ""), None),
        (
            &get(&format!("/?q={}", "a".repeat(2047)), ""),
            Some("default/long-query"),
        ),
        (&get("/.env", ""), Some("default/scanner-paths")),
        (&get("/.git/config", ""), Some("default/scanner-paths")),
        (&get("/WP-LOGIN.PHP", ""), Some("default/scanner-paths")),
        (&get("/index.html?a=1", "User-Agent: x\r\n"), None),
    ];
    for (raw, want) in table {
        let (denied, ids) = run(&c, 0, raw);
        let text = String::from_utf8_lossy(&raw[..raw.len().min(60)]);
        match want {
            Some(id) => assert_eq!(
                (denied, ids),
                (Some(403), vec![format!("{id}:deny")]),
                "{text}"
            ),
            None => assert_eq!((denied, ids.len()), (None, 0), "{text}"),
        }
    }
}

#[test]
fn scratch_follows_the_set_it_runs_on() {
    let a = config(
        "",
        "[[filters]]\nid = \"a\"\npath = { regex = \"^/a\" }\n",
        "",
    );
    let b = config(
        "",
        "[[filters]]\nid = \"q\"\nquery = { regex = \"x\" }\n\
         [[filters]]\nid = \"b\"\npath = { regex = \"^/b\" }\n",
        "",
    );
    let mut scratch = FilterScratch::default();
    let raw = get("/b?y", "");
    let mut headers = empty_headers();
    let req = parse_request(&raw, &mut headers, &HeadLimits::default())
        .unwrap()
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            a.chains[0]
                .waf()
                .unwrap()
                .evaluate(&req, b"/b", &mut scratch),
            None
        );
        assert_eq!(
            b.chains[0]
                .waf()
                .unwrap()
                .evaluate(&req, b"/b", &mut scratch),
            Some(403)
        );
    }
}

#[test]
fn config_errors_name_their_keys() {
    let bad = |text: &str| match Config::from_toml_str(&format!(
        "{text}\n[[listeners]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\
             [[routes]]\nname = \"api\"\nrespond = {{ status = 200 }}\n"
    )) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    };
    let e = bad("[[filters]]\nid = \"r\"\npath = { regex = \"(\" }\n");
    assert!(e.contains("filters[0].path.regex: bad regex"), "{e}");
    let e = bad("[[filters]]\nid = \"r\"\nmethods = [\"GET\"]\nroutes = [\"apl\"]\n");
    assert!(
        e.contains("filters[0].routes: no route named `apl` (did you mean `api`?)"),
        "{e}"
    );
    let e = bad(
        "[[filters]]\nid = \"r\"\nmethods = [\"GET\"]\n[[filters]]\nid = \"r\"\nmethods = [\"PUT\"]\n",
    );
    assert!(e.contains("filters[1].id: duplicate id `r`"), "{e}");
    let e = bad("[[filters]]\nid = \"r\"\nmethods = [\"GET\"]\nstatus = 302\n");
    assert!(
        e.contains("filters[0].status: 302 is out of range 400..=599"),
        "{e}"
    );
    let e = bad("[[filters]]\nid = \"r\"\nmethods = [\"GET\"]\naction = \"drop\"\n");
    assert!(
        e.contains("filters[0].action: `drop` is not one of deny, allow, log"),
        "{e}"
    );
    let e = bad("[[filters]]\nmethods = [\"GET\"]\n");
    assert!(e.contains("filters[0].id: is required"), "{e}");
    let e = bad("[[filters]]\nid = \"r\"\n");
    assert!(e.contains("filters[0]: a rule needs a condition"), "{e}");
    let e = bad("[[filters]]\nid = \"r\"\npath = { exact = \"/\", prefix = \"/\" }\n");
    assert!(
        e.contains("filters[0].path: set one of exact, prefix, regex"),
        "{e}"
    );
    let e = bad("[[filters]]\nid = \"default/x\"\nmethods = [\"GET\"]\n");
    assert!(e.contains("filters[0].id"), "{e}");
    let e = bad("filters = \"defualt\"\n");
    assert!(e.contains("did you mean `default`?"), "{e}");
    let e = bad("filters_mode = \"dry-run\"\n");
    assert!(
        e.contains("filters_mode: `dry-run` is not one of enforce, log"),
        "{e}"
    );
    let e = bad("[[filters]]\nid = \"r\"\nheader = { value = \"x\" }\n");
    assert!(e.contains("filters[0].header.name: missing"), "{e}");
}

#[test]
fn a_rule_no_route_runs_is_warned_about() {
    let rules = "[[filters]]\ninclude = \"default\"\n\
                 [[filters]]\nid = \"x\"\nroutes = [\"a\"]\nmethods = [\"PUT\"]\n\
                 [[filters]]\nid = \"y\"\nmethods = [\"PUT\"]\n";
    let c = config("", rules, r#"filters = "off""#);
    let w = c.warnings.join("\n");
    assert!(w.contains("filters[1]: no route runs this rule"), "{w}");
    assert!(!w.contains("filters[2]"), "{w}");
}
