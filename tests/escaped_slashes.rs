//! `path_escaped_slashes`: a path with `%2F` or `%5C` in it, which an
//! upstream may decode into separators, cannot slip past a rule on the
//! decoded path. Refused, decoded or kept, by the route that would serve
//! the decoded path; refused by default when that route carries rules.

mod common;

use common::*;
use ringress::Config;

/// A blocking fixed answer on `/blocked`, and a proxied `/api` and `/`.
fn config(up: &Upstream, top: &str, api_route: &str) -> String {
    // Top-level keys go before the first table.
    let tables = ConfigBuilder::new(up.addr)
        .sections(&format!(
            r#"
[[routes]]
path_prefix = "/blocked"
respond = {{ status = 403, body = "blocked" }}

[[routes]]
path_prefix = "/api"
upstream = "backend"
{api_route}
"#
        ))
        .build();
    format!("{top}\n{tables}")
}

fn target(up: &Upstream) -> String {
    up.last().target
}

#[test]
fn by_default_a_route_with_rules_refuses_escaped_separators_and_others_keep_them() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(&up, "", ""));
    let mut c = proxy.connect();
    // The plain path meets the rule.
    assert_eq!(c.request(&get("/blocked/secret")).status, 403);
    // Encoded in either case, slash or backslash: refused, not forwarded.
    for path in [
        "/blocked%2Fsecret",
        "/blocked%2fsecret",
        "/blocked%5Csecret",
        "/blocked%5csecret",
        "/public%2F..%2Fblocked",
    ] {
        let r = proxy.connect().request(&get(path));
        assert_eq!(r.status, 400, "{path}");
    }
    assert!(up.requests().is_empty(), "{:?}", up.requests());
    // A route without rules gets the path as sent: an API that carries
    // `a/b` in one segment keeps working.
    let r = c.request(&get("/api/projects/group%2Fname"));
    assert_eq!(r.status, 200);
    assert_eq!(target(&up), "/api/projects/group%2Fname");
}

#[test]
fn decode_routes_and_forwards_the_decoded_path() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(&up, r#"path_escaped_slashes = "decode""#, ""));
    let mut c = proxy.connect();
    let r = c.request(&get("/blocked%2Fsecret"));
    assert_eq!((r.status, r.body_str().as_str()), (403, "blocked"));
    let r = c.request(&get("/api/a%2Fb%5Cc?x=%2F"));
    assert_eq!(r.status, 200);
    // The query is not a path: left alone.
    assert_eq!(target(&up), "/api/a/b/c?x=%2F");
    let r = c.request(&get("/api%2F..%2Fother"));
    assert_eq!(r.status, 200);
    assert_eq!(target(&up), "/other");
}

#[test]
fn keep_forwards_the_path_as_sent_when_chosen() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(&up, r#"path_escaped_slashes = "keep""#, ""));
    let r = proxy.connect().request(&get("/blocked%2Fsecret"));
    // Chosen by the operator: routed as sent, so the catch-all serves it.
    assert_eq!(r.status, 200);
    assert_eq!(target(&up), "/blocked%2Fsecret");
}

#[test]
fn reject_answers_400_for_every_route() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(&up, r#"path_escaped_slashes = "reject""#, ""));
    for path in ["/api/a%2Fb", "/x%5Cy", "/blocked%2Fz"] {
        let mut c = proxy.connect();
        let r = c.request(&get(path));
        assert_eq!(r.status, 400, "{path}");
        // Well-formed, refused by policy: the connection goes on.
        assert_eq!(c.request(&get("/api/ok")).status, 200, "{path}");
    }
    assert!(up.requests().iter().all(|r| r.target == "/api/ok"));
    // No escaped separator, no change.
    assert_eq!(proxy.connect().request(&get("/api/a%20b")).status, 200);
    assert_eq!(target(&up), "/api/a%20b");
}

#[test]
fn a_route_setting_wins_over_the_top_level_one() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(
        &up,
        r#"path_escaped_slashes = "reject""#,
        r#"path_escaped_slashes = "decode""#,
    ));
    let r = proxy.connect().request(&get("/api/a%2Fb"));
    assert_eq!(r.status, 200);
    assert_eq!(target(&up), "/api/a/b");
    // The catch-all follows the top level.
    assert_eq!(proxy.connect().request(&get("/x%2Fy")).status, 400);
    // It is the route of the decoded path that decides: `/api%2Fa` is
    // `/api/a` decoded, served by `/api`.
    let r = proxy.connect().request(&get("/api%2Fa"));
    assert_eq!(r.status, 200);
    assert_eq!(target(&up), "/api/a");
}

#[test]
fn a_head_request_refused_gets_no_body() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(&up, "", ""));
    let mut c = proxy.connect();
    c.send(b"HEAD /blocked%2Fx HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response_to(true).expect("an answer");
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-length"), Some("12"));
    // No body was sent: the next answer is read cleanly.
    assert_eq!(c.request(&get("/api/next")).status, 200);
}

#[test]
fn a_bad_value_is_named_with_its_key_path() {
    let up = Upstream::echo();
    let text = config(
        &up,
        r#"path_escaped_slashes = "drop""#,
        r#"path_escaped_slashes = 1"#,
    );
    let Err(errors) = Config::from_toml_str(&text) else {
        panic!("a bad value is refused");
    };
    let errors = errors.to_string();
    assert!(errors.contains("path_escaped_slashes"), "{errors}");
    assert!(errors.contains("`drop`"), "{errors}");
    assert!(
        errors.contains("routes[1].path_escaped_slashes"),
        "{errors}"
    );
}
