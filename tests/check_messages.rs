//! What `ringress --check` prints for a bad or doubtful config, line for
//! line: the line of each problem, named routes and listeners by name,
//! the nearest key for a typo, the duplicated table, one problem per
//! mistake (no follow-on reports), and warnings for likely mistakes.

#[path = "common/temp.rs"]
mod temp;

use std::path::Path;
use std::process::Command;

use temp::TempPath;

const BIN: &str = env!("CARGO_BIN_EXE_ringress");

/// What `--check` said about a config.
struct Checked {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    file: String,
}

fn check(text: &str) -> Checked {
    let dir = TempPath::unique_dir("check");
    let path = dir.join("ringress.toml");
    std::fs::write(&path, text).expect("write config");
    let out = Command::new(BIN)
        .args(["--check", "-c"])
        .arg(&path)
        .output()
        .expect("run ringress --check");
    Checked {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        file: display(&path),
    }
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

impl Checked {
    /// Asserts the config was rejected with exactly these problems.
    fn rejected_with(&self, problems: &[&str]) {
        let mut want = format!("{}: {} problem(s):\n", self.file, problems.len());
        for p in problems {
            want.push_str(&format!("  {p}\n"));
        }
        assert_eq!(self.code, Some(2), "stderr:\n{}", self.stderr);
        assert_eq!(self.stderr, want);
    }

    /// Asserts the config was accepted with exactly these warnings.
    fn accepted_with(&self, warnings: &[&str]) {
        let want: String = warnings
            .iter()
            .map(|w| format!("  warning: {w}\n"))
            .collect();
        assert_eq!(self.code, Some(0), "stderr:\n{}", self.stderr);
        assert_eq!(self.stderr, want);
        assert_eq!(self.stdout, format!("{}: ok\n", self.file));
    }
}

#[test]
fn problems_give_their_line_and_the_names_of_routes_and_listeners() {
    check(
        r#"[[listeners]]
name = "public"
bind = "127.0.0.1:0"
backlog = 0

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "nowhere"

[[routes]]
path_prefix = "/"
respond = { status = 99 }
"#,
    )
    .rejected_with(&[
        r#"line 4: listeners[0] "public".backlog: 0 is out of range 1..=65535"#,
        r#"line 9: routes[0] "api".upstream: no upstream named `nowhere` (define [upstreams.nowhere])"#,
        "line 13: routes[1].respond.status: 99 is out of range 200..=599",
    ]);
}

#[test]
fn a_missing_key_gets_the_line_of_its_table() {
    check(
        r#"[[listeners]]
name = "main"

[[routes]]
name = "teapot"
respond = { status = 418 }
"#,
    )
    .rejected_with(&[r#"line 1: listeners[0] "main".bind: missing (e.g. bind = "0.0.0.0:8080")"#]);
}

#[test]
fn unknown_keys_and_values_suggest_the_nearest_one() {
    check(
        r#"[runtime]
thraeds = 2
io = "io-uring"

[[listener]]
name = "main"

[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
name = "app"
path-prefix = "/"
upstrem = "app"
colour = "blue"

[upstreams.app]
servers = ["127.0.0.1:9"]
balance = "least_con"
"#,
    )
    .rejected_with(&[
        "line 2: runtime.thraeds: unknown key (did you mean `threads`?)",
        "line 3: runtime.io: `io-uring` is not one of auto, io_uring, epoll (did you mean `io_uring`?)",
        "line 5: listener: unknown key (did you mean `listeners`?)",
        r#"line 14: routes[0] "app".path-prefix: unknown key (did you mean `path_prefix`?)"#,
        r#"line 15: routes[0] "app".upstrem: unknown key (did you mean `upstream`?)"#,
        r#"line 16: routes[0] "app".colour: unknown key"#,
        "line 20: upstreams.app.balance: `least_con` is not one of round_robin, least_conn, p2c, hash, random (did you mean `least_conn`?)",
    ]);
}

#[test]
fn a_misspelt_key_is_not_also_missing() {
    check(
        r#"[[listeners]]
name = "main"
bnid = "127.0.0.1:0"

[[routes]]
name = "home"
respnod = { status = 200 }
"#,
    )
    .rejected_with(&[
        r#"line 3: listeners[0] "main".bnid: unknown key (did you mean `bind`?)"#,
        r#"line 7: routes[0] "home".respnod: unknown key (did you mean `respond`?)"#,
    ]);
}

#[test]
fn a_duplicate_table_is_named() {
    check(
        r#"[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[upstreams.app]
servers = ["127.0.0.1:9"]

[upstreams.app]
servers = ["127.0.0.1:10"]
"#,
    )
    .rejected_with(&["line 8: duplicate table [upstreams.app]"]);
}

#[test]
fn a_duplicate_key_is_named_with_its_table() {
    check(
        r#"[[listeners]]
name = "main"
bind = "127.0.0.1:0"
bind = "127.0.0.1:1"
"#,
    )
    .rejected_with(&["line 4: duplicate key `bind` in [[listeners]]"]);
}

#[test]
fn syntax_errors_keep_their_line() {
    let out = check("[runtime]\nthreads = 2\n\n[[listeners]\nname = \"main\"\n");
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("\n  line 4: TOML syntax error: "),
        "{}",
        out.stderr
    );
}

/// A listener with a bad bind is one problem: the routes that name it do
/// not also report "no listener named", nor its `tls` keys as unknown.
#[test]
fn a_bad_bind_is_one_problem() {
    check(
        r#"[[listeners]]
name = "edge"
bind = "not-an-address"
tls = { certs = [] }

[[routes]]
name = "a"
listeners = ["edge"]
respond = { status = 200 }

[[routes]]
name = "b"
listeners = "edge"
respond = { status = 200 }
"#,
    )
    .rejected_with(&[
        r#"line 3: listeners[0] "edge".bind: `not-an-address` is not a host:port address (invalid socket address)"#,
        r#"line 4: listeners[0] "edge".tls.certs: needs at least one certificate"#,
    ]);
}

#[test]
fn a_bad_bind_alone_is_exactly_one_problem() {
    check(
        r#"[[listeners]]
name = "edge"
bind = "not-an-address"

[[routes]]
listeners = ["edge"]
upstream = "app"

[upstreams.app]
servers = ["127.0.0.1:9"]
"#,
    )
    .rejected_with(&[
        r#"line 3: listeners[0] "edge".bind: `not-an-address` is not a host:port address (invalid socket address)"#,
    ]);
}

/// An upstream group with a problem is still known by name to routes.
#[test]
fn a_bad_upstream_group_is_one_problem() {
    check(
        r#"[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
name = "api"
upstream = "app"

[[routes]]
name = "static"
upstream = "files"

[upstreams.app]
servers = [5]

[upstreams]
files = "127.0.0.1:9"
"#,
    )
    .rejected_with(&[
        "line 14: upstreams.app.servers[0]: expected \"host:port\" or { addr, weight, backup, max_conns, region }, found integer",
        "line 17: upstreams.files: expected a table, found string",
    ]);
}

#[test]
fn an_upstream_no_route_uses_is_a_warning() {
    check(
        r#"[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
upstream = "app"

[upstreams.app]
servers = ["127.0.0.1:9"]

[upstreams.old_app]
servers = ["127.0.0.1:10"]
"#,
    )
    .accepted_with(&["line 11: upstreams.old_app: no route uses this upstream"]);
}

#[test]
fn a_dollar_that_starts_no_variable_is_a_warning() {
    check(
        r#"[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
name = "shop"
respond = { status = 200 }

[routes.response_headers.set]
X-Price = "costs $5"
X-Trailing = "up to $"
X-Empty = "${}"
X-Fine = "$$5 and ${host} and $scheme"
"#,
    )
    .accepted_with(&[
        r#"line 10: routes[0] "shop".response_headers.set.X-Price: `$5` is not a variable, so it is sent as written (variables start with a letter; write `$$` for a `$`)"#,
        r#"line 11: routes[0] "shop".response_headers.set.X-Trailing: a `$` at the end is not a variable, so it is sent as written (variables start with a letter; write `$$` for a `$`)"#,
        r#"line 12: routes[0] "shop".response_headers.set.X-Empty: `${}` is not a variable, so it is sent as written (variables start with a letter; write `$$` for a `$`)"#,
    ]);
}

#[test]
fn an_unknown_variable_stays_an_error() {
    check(
        r#"[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
name = "shop"
respond = { status = 200 }
response_headers = { set = { X-Ip = "$remote_addr" } }
"#,
    )
    .rejected_with(&[
        r#"line 8: routes[0] "shop".response_headers.set.X-Ip: unknown variable `$remote_addr`: ringress calls it `$client_ip` (variables: $client_ip, $client_port, $host, $scheme, $request_id, $route, $listener, $tls_version, $sni, $client_subject)"#,
    ]);
}

/// Reloads (SIGHUP, `POST /reload`) log `Config::warnings`: the same
/// located text.
#[test]
fn warnings_reach_the_loaded_config() {
    let config = ringress::Config::from_toml_str(
        "[[listeners]]\nbind = \"127.0.0.1:0\"\n\n[upstreams.spare]\nservers = [\"127.0.0.1:9\"]\n",
    )
    .expect("valid config");
    assert_eq!(
        config.warnings,
        ["line 4: upstreams.spare: no route uses this upstream"]
    );
}

#[test]
fn cache_and_compress_mistakes_are_each_reported_with_their_key() {
    check(
        r#"[cache.main]
max_size = "1MiB"
max_object = "2MiB"
purge_from = ["10.0.0.0/33"]

[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[upstreams.app]
servers = ["127.0.0.1:9"]

[[routes]]
name = "cached"
upstream = "app"
cache = { zone = "mian", key = ["query:x"], ttl = { 99 = "1s" } }
compress = { algorithms = ["gzip", "lz4"], level = 12 }
"#,
    )
    .rejected_with(&[
        "line 3: cache.main.max_object: is larger than max_size",
        "line 4: cache.main.purge_from[0]: `10.0.0.0/33`: prefix length must be 0..=32",
        r#"line 16: routes[0] "cached".cache.zone: no [cache.mian] zone"#,
        r#"line 16: routes[0] "cached".cache.key[0]: `query:x` is not a key addition: use `header:NAME` or `cookie:NAME`"#,
        r#"line 16: routes[0] "cached".cache.ttl.99: is not a final status code (200-599)"#,
        r#"line 17: routes[0] "cached".compress.algorithms[1]: `lz4` is not one of "zstd", "br", "gzip""#,
        r#"line 17: routes[0] "cached".compress.level: 12 is outside gzip's levels 1-9"#,
    ]);
}
