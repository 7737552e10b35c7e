//! Access log, request ids and metrics over real sockets: every request
//! counted and logged exactly once with two workers, generated answers
//! included; the metrics read by a real Prometheus parser; the log
//! reopened under load with no line lost; a writer nobody reads never
//! holding requests up.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use ringress::Config;
use serde_json::Value;

/// A directory of its own under the system temp dir, removed on drop.
struct TempDir(TempPath);

impl TempDir {
    fn new(name: &str) -> TempDir {
        TempDir(TempPath::dir(format!(
            "ringress-obs-{}-{name}",
            std::process::id()
        )))
    }
}

/// Fixed answers at /fixed, proxied /api (to `up`), a dead upstream at
/// /dead; anything else matches no route (404).
fn config(up: SocketAddr, extra: &str) -> String {
    let dead = dead_addr();
    format!(
        r#"
[runtime]
drain_timeout = "2s"
{extra}
[[listeners]]
name = "main"
bind = "127.0.0.1:0"

[[routes]]
name = "fixed"
path_prefix = "/fixed"
respond = {{ status = 200, body = "fixed\n" }}

[[routes]]
name = "api"
path_prefix = "/api"
upstream = "app"

[[routes]]
name = "dead"
path_prefix = "/dead"
upstream = "gone"

[upstreams.app]
servers = ["{up}"]

[upstreams.gone]
servers = ["{dead}"]
connect_timeout = "1s"
"#
    )
}

/// One admin request: (status, body).
fn admin(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to admin");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("an admin answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.into(),
    )
}

fn start_admin(proxy: &Proxy, dir: &TempDir) -> SocketAddr {
    // The admin's reload file is not used here.
    let file = dir.0.join("unused.toml");
    proxy
        .handle()
        .start_admin("127.0.0.1:0".parse().unwrap(), file)
        .expect("admin binds")
}

/// `[access_log]` writing JSON lines to `path`.
fn json_log(path: &Path) -> String {
    format!(
        "[access_log]\npath = \"{}\"\nformat = \"json\"\n",
        path.display()
    )
}

/// The real binary with `threads` workers on a config of one listener
/// (on a port that was free) and `body`, written into `dir`; its stdout
/// and stderr go to `output` (or nowhere). The listener's address.
fn spawn_binary(
    dir: &TempDir,
    body: &str,
    threads: &str,
    output: Option<&Path>,
) -> (std::process::Child, SocketAddr) {
    let addr = dead_addr();
    let config = dir.0.join("ringress.toml");
    let toml = format!("[[listeners]]\nname = \"main\"\nbind = \"{addr}\"\n{body}");
    std::fs::write(&config, toml).unwrap();
    let (stdout, stderr) = match output {
        Some(path) => {
            let file = std::fs::File::create(path).unwrap();
            (file.try_clone().unwrap().into(), file.into())
        }
        None => (std::process::Stdio::null(), std::process::Stdio::null()),
    };
    let child = Command::new(env!("CARGO_BIN_EXE_ringress"))
        .arg("--config")
        .arg(&config)
        .args(["--no-pin", "--threads", threads, "--log", "warn"])
        .env("NO_COLOR", "1")
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("ringress starts");
    (child, addr)
}

/// Each request on a new connection, so both workers get some.
fn send(proxy: &Proxy, raw: &[u8]) -> u16 {
    let mut c = proxy.connect();
    c.request(raw).status
}

/// The traffic every test here sends: (request, expected status, count).
fn traffic() -> Vec<(Vec<u8>, u16, usize)> {
    vec![
        (get("/fixed"), 200, 7),
        (get("/api/x?y=1"), 200, 5),
        (get("/dead"), 502, 3),
        (get("/nowhere"), 404, 2),
        // Two Host fields: malformed.
        (
            b"GET /api HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(),
            400,
            1,
        ),
    ]
}

fn send_traffic(proxy: &Proxy) -> usize {
    let mut sent = 0;
    for (raw, status, count) in traffic() {
        for _ in 0..count {
            assert_eq!(
                send(proxy, &raw),
                status,
                "{}",
                String::from_utf8_lossy(&raw)
            );
            sent += 1;
        }
    }
    sent
}

/// A sample's name and its labels (sorted).
type SampleKey = (String, Vec<(String, String)>);
type Samples = HashMap<SampleKey, f64>;

/// `/metrics` parsed by prometheus_client's parser: (name, labels) →
/// value, one entry per sample.
fn parse_metrics(text: &str) -> Samples {
    const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append([s.name, sorted(s.labels.items()), s.value])
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", PARSE])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client could not parse /metrics (is it installed? .ci/run installs it):\n{text}"
    );
    let samples: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    samples
        .into_iter()
        .map(|s| {
            let name = s[0].as_str().unwrap().to_string();
            let labels = s[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|kv| {
                    (
                        kv[0].as_str().unwrap().into(),
                        kv[1].as_str().unwrap().into(),
                    )
                })
                .collect();
            ((name, labels), s[2].as_f64().unwrap())
        })
        .collect()
}

fn sample(m: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    *m.get(&(name.to_string(), labels.clone()))
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
}

#[test]
fn metrics_count_every_request_exactly_on_two_workers() {
    let up = Upstream::echo();
    let dir = TempDir::new("metrics");
    let toml = config(up.addr, "");
    let proxy = Proxy::start(&toml);
    let admin_addr = start_admin(&proxy, &dir);
    let sent = send_traffic(&proxy);
    let (status, text) = admin(admin_addr, "/metrics");
    assert_eq!(status, 200);
    let m = parse_metrics(&text);
    let requests = |route: &str, code: &str| {
        sample(
            &m,
            "ringress_requests_total",
            &[("listener", "main"), ("route", route), ("code", code)],
        )
    };
    assert_eq!(requests("fixed", "200"), 7.0);
    assert_eq!(requests("api", "200"), 5.0);
    assert_eq!(requests("dead", "502"), 3.0);
    assert_eq!(requests("", "404"), 2.0);
    assert_eq!(requests("", "400"), 1.0);
    let total: f64 = m
        .iter()
        .filter(|((name, _), _)| name == "ringress_requests_total")
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, sent as f64, "admin requests are not counted");

    // Histograms: monotone buckets, +Inf equal to the count.
    for (route, n) in [("fixed", 7.0), ("api", 5.0), ("dead", 3.0), ("", 3.0)] {
        let count = sample(
            &m,
            "ringress_request_duration_seconds_count",
            &[("route", route)],
        );
        assert_eq!(count, n, "route {route}");
        let mut buckets: Vec<(f64, f64)> = m
            .iter()
            .filter(|((name, labels), _)| {
                name == "ringress_request_duration_seconds_bucket"
                    && labels.iter().any(|(k, v)| k == "route" && v == route)
            })
            .map(|((_, labels), v)| {
                let le = &labels.iter().find(|(k, _)| k == "le").unwrap().1;
                (le.parse::<f64>().unwrap(), *v)
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");
        assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, n));
    }

    let upstream = |group: &str, server: String, outcome: &str| {
        sample(
            &m,
            "ringress_upstream_requests_total",
            &[("group", group), ("server", &server), ("outcome", outcome)],
        )
    };
    assert_eq!(upstream("app", up.addr.to_string(), "response"), 5.0);
    let conns = sample(
        &m,
        "ringress_upstream_connections_total",
        &[("group", "app"), ("kind", "new")],
    ) + sample(
        &m,
        "ringress_upstream_connections_total",
        &[("group", "app"), ("kind", "reused")],
    );
    assert_eq!(conns, 5.0);
    let dead_failures: f64 = m
        .iter()
        .filter(|((name, labels), _)| {
            name == "ringress_upstream_requests_total"
                && labels.iter().any(|(k, v)| k == "group" && v == "gone")
        })
        .map(|(_, v)| v)
        .sum();
    assert_eq!(dead_failures, 3.0);
    assert_eq!(
        sample(
            &m,
            "ringress_upstream_response_seconds_count",
            &[("group", "app")]
        ),
        5.0
    );
    assert_eq!(
        sample(
            &m,
            "ringress_upstream_health",
            &[("group", "app"), ("server", &up.addr.to_string())]
        ),
        1.0
    );
    for (reason, n) in [
        ("no_route", 2.0),
        ("bad_gateway", 3.0),
        ("bad_request", 1.0),
        ("gateway_timeout", 0.0),
    ] {
        assert_eq!(
            sample(&m, "ringress_rejections_total", &[("reason", reason)]),
            n,
            "{reason}"
        );
    }
    assert!(sample(&m, "ringress_bytes_total", &[("direction", "in")]) > 0.0);
    assert!(sample(&m, "ringress_bytes_total", &[("direction", "out")]) > 0.0);
    assert_eq!(sample(&m, "ringress_config_generation", &[]), 1.0);
    assert_eq!(
        sample(&m, "ringress_config_reloads_total", &[("result", "ok")]),
        0.0
    );
    assert_eq!(sample(&m, "ringress_log_lines_dropped_total", &[]), 0.0);
    assert_eq!(
        sample(&m, "ringress_tls_handshakes_total", &[("result", "ok")]),
        0.0
    );
    assert!(m.contains_key(&(
        "ringress_connections".into(),
        vec![("state".into(), "idle".into())]
    )));

    // A reload is counted, and counts carry over it.
    proxy.reload(&toml);
    let m = parse_metrics(&admin(admin_addr, "/metrics").1);
    assert_eq!(sample(&m, "ringress_config_generation", &[]), 2.0);
    assert_eq!(
        sample(&m, "ringress_config_reloads_total", &[("result", "ok")]),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            "ringress_requests_total",
            &[("listener", "main"), ("route", "fixed"), ("code", "200")]
        ),
        7.0
    );

    // The scrapes' own connections are not counted: once the clients
    // are gone, no connection is.
    wait_until("no open client connection", TIMEOUT, || {
        let m = parse_metrics(&admin(admin_addr, "/metrics").1);
        sample(&m, "ringress_connections", &[("state", "active")]) == 0.0
            && sample(&m, "ringress_connections", &[("state", "idle")]) == 0.0
    });

    // The dashboard's JSON says the same.
    let (status, json) = admin(admin_addr, "/stats");
    assert_eq!(status, 200);
    let stats: Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(stats["requests"], sent as u64);
    assert_eq!(stats["status"]["2xx"], 12);
    assert_eq!(stats["status"]["4xx"], 3);
    assert_eq!(stats["status"]["5xx"], 3);
    assert_eq!(stats["latency"]["count"], sent as u64);
    assert_eq!(stats["workers"], 2);
    assert_eq!(stats["generation"], 2);
    let api = stats["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "api")
        .unwrap();
    assert_eq!(api["requests"], 5);
    let servers = stats["upstreams"].as_array().unwrap();
    assert_eq!(servers.len(), 2);
    assert!(
        servers
            .iter()
            .any(|s| s["group"] == "gone" && s["errors"] == 3)
    );
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn json_access_log_has_a_line_with_every_field_per_request() {
    let up = Upstream::echo();
    let dir = TempDir::new("json");
    let log = dir.0.join("access.log");
    let extra = json_log(&log);
    let proxy = Proxy::start(&config(up.addr, &extra));
    let admin_addr = start_admin(&proxy, &dir);
    let sent = send_traffic(&proxy);
    // With a user agent and referer.
    let mut c = proxy.connect();
    let resp = c.request(
        b"GET /api/ua HTTP/1.1\r\nHost: test.local\r\nUser-Agent: tester/1 \"q\"\r\nReferer: http://r.example/\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    let id = resp
        .header("x-request-id")
        .expect("a request id")
        .to_string();
    // Admin requests are not logged.
    assert_eq!(admin(admin_addr, "/stats").0, 200);
    proxy.shutdown();

    let lines = read_lines(&log);
    assert_eq!(lines.len(), sent + 1, "{lines:#?}");
    let fields = [
        "time",
        "client",
        "method",
        "target",
        "proto",
        "status",
        "bytes_in",
        "bytes_out",
        "duration_ms",
        "upstream",
        "upstream_ms",
        "route",
        "listener",
        "tls",
        "sni",
        "user_agent",
        "referer",
        "request_id",
        "generation",
        "exit",
        "reason",
    ];
    let mut by_status: HashMap<u64, usize> = HashMap::new();
    let mut entries = Vec::new();
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for f in fields {
            assert!(v.get(f).is_some(), "no {f} in {line}");
        }
        assert_eq!(v["client"], "127.0.0.1");
        assert_eq!(v["listener"], "main");
        assert_eq!(v["generation"], 1);
        let time = v["time"].as_str().unwrap();
        assert!(
            time.len() == 24 && time.ends_with('Z') && time.as_bytes()[19] == b'.',
            "{time}"
        );
        *by_status.entry(v["status"].as_u64().unwrap()).or_default() += 1;
        entries.push(v);
    }
    assert_eq!(by_status[&200], 13);
    assert_eq!(by_status[&502], 3);
    assert_eq!(by_status[&404], 2);
    assert_eq!(by_status[&400], 1);
    let find = |pred: &dyn Fn(&Value) -> bool| entries.iter().find(|v| pred(v)).unwrap().clone();
    let proxied = find(&|v| v["target"] == "/api/x?y=1");
    assert_eq!(proxied["method"], "GET");
    assert_eq!(proxied["proto"], "HTTP/1.1");
    assert_eq!(proxied["route"], "api");
    assert_eq!(proxied["upstream"], up.addr.to_string());
    assert!(proxied["upstream_ms"].is_number());
    assert_eq!(proxied["exit"], "proxied");
    assert!(proxied["reason"].is_null());
    let no_route = find(&|v| v["status"] == 404);
    assert!(no_route["route"].is_null());
    assert_eq!(no_route["reason"], "no_route");
    assert_eq!(no_route["exit"], "rejected");
    let bad = find(&|v| v["status"] == 400);
    assert!(bad["method"].is_null() && bad["target"].is_null());
    assert_eq!(bad["reason"], "bad_request");
    let dead = find(&|v| v["status"] == 502);
    assert_eq!(dead["route"], "dead");
    assert_eq!(dead["reason"], "bad_gateway");
    assert_eq!(dead["exit"], "upstream_failed");
    let fixed = find(&|v| v["route"] == "fixed");
    assert_eq!(fixed["exit"], "fixed");
    assert!(fixed["upstream"].is_null());
    let ua = find(&|v| v["target"] == "/api/ua");
    assert_eq!(ua["user_agent"], "tester/1 \"q\"");
    assert_eq!(ua["referer"], "http://r.example/");
    assert_eq!(ua["request_id"], id.as_str());
    assert!(ua["tls"].is_null() && ua["sni"].is_null());
}

#[test]
fn combined_access_log_as_nginx_writes_it() {
    let up = Upstream::echo();
    let dir = TempDir::new("combined");
    let log = dir.0.join("access.log");
    let extra = format!(
        "[access_log]\npath = \"{}\"\n\n[[routes]]\nname = \"quiet\"\npath_prefix = \"/quiet\"\naccess_log = false\nrespond = {{ status = 204 }}\n",
        log.display()
    );
    let proxy = Proxy::start(&config(up.addr, &extra));
    let mut c = proxy.connect();
    let resp = c.request(
        b"GET /api/a?b=c HTTP/1.1\r\nHost: x\r\nUser-Agent: ua\r\nReferer: http://r/\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(c.request(&get("/quiet")).status, 204);
    assert_eq!(c.request(&get("/nowhere")).status, 404);
    proxy.shutdown();
    let lines = read_lines(&log);
    assert_eq!(lines.len(), 2, "the quiet route is not logged: {lines:#?}");
    // 127.0.0.1 - - [06/Dec/2026:23:38:28 +0000] "GET /api/a?b=c HTTP/1.1" 200 123 "http://r/" "ua"
    let first = &lines[0];
    let (left, right) = first.split_once("] ").unwrap();
    assert!(left.starts_with("127.0.0.1 - - ["), "{first}");
    assert!(
        left.ends_with(" +0000") && left.len() == "127.0.0.1 - - [".len() + 26,
        "{first}"
    );
    assert!(
        right.starts_with("\"GET /api/a?b=c HTTP/1.1\" 200 "),
        "{first}"
    );
    assert!(right.ends_with(" \"http://r/\" \"ua\""), "{first}");
    assert!(
        lines[1].contains("\"GET /nowhere HTTP/1.1\" 404 ") && lines[1].ends_with("\"-\" \"-\""),
        "{}",
        lines[1]
    );
}

#[test]
fn request_ids_generated_kept_from_trusted_peers_and_returned() {
    let up = Upstream::echo();
    let proxy = Proxy::start(&config(up.addr, ""));
    let mut c = proxy.connect();

    // None sent: one is generated, sent upstream and returned.
    let resp = c.request(&get("/api/1"));
    let id = resp.header("x-request-id").expect("returned").to_string();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        up.last()
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("x-request-id"))
            .count(),
        1
    );
    assert_eq!(up.last().header("x-request-id"), Some(id.as_str()));

    // From a client that is not a trusted proxy: replaced; traceparent
    // passes untouched.
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let raw = format!(
        "GET /api/2 HTTP/1.1\r\nHost: x\r\nX-Request-Id: forged\r\ntraceparent: {trace}\r\n\r\n"
    );
    let resp = c.request(raw.as_bytes());
    let id2 = resp.header("x-request-id").unwrap().to_string();
    assert_ne!(id2, "forged");
    assert_ne!(id2, id);
    let seen = up.last();
    assert_eq!(seen.header("x-request-id"), Some(id2.as_str()));
    assert_eq!(seen.header("traceparent"), Some(trace));
    // Answers ringress makes itself carry one too: a fixed answer, no
    // route, a dead upstream.
    for (path, status) in [("/fixed", 200), ("/nowhere", 404), ("/dead", 502)] {
        let resp = proxy.connect().request(&get(path));
        assert_eq!(resp.status, status);
        let id = resp
            .header("x-request-id")
            .unwrap_or_else(|| panic!("no id on {path}"));
        assert_eq!(id.len(), 32, "{path}");
    }
    drop(c);
    proxy.shutdown();

    // From a trusted peer: kept.
    let proxy = Proxy::start(&config(
        up.addr,
        "[forwarding]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
    ));
    let mut c = proxy.connect();
    let raw = "GET /api/3 HTTP/1.1\r\nHost: x\r\nX-Request-Id: edge-42\r\n\r\n";
    let resp = c.request(raw.as_bytes());
    assert_eq!(resp.header("x-request-id"), Some("edge-42"));
    assert_eq!(up.last().header("x-request-id"), Some("edge-42"));
    // Unless it is not a usable id: replaced.
    let raw = "GET /api/3 HTTP/1.1\r\nHost: x\r\nX-Request-Id: has space\r\n\r\n";
    let resp = c.request(raw.as_bytes());
    let replaced = resp.header("x-request-id").unwrap();
    assert_eq!(replaced.len(), 32);
    assert_eq!(up.last().header("x-request-id"), Some(replaced));
    drop(c);
    proxy.shutdown();

    // Switched off.
    let proxy = Proxy::start(&config(up.addr, "[forwarding]\nrequest_id = false\n"));
    let resp = proxy.connect().request(&get("/api/4"));
    assert_eq!(resp.header("x-request-id"), None);
    assert_eq!(up.last().header("x-request-id"), None);
    assert_eq!(
        proxy
            .connect()
            .request(&get("/nowhere"))
            .header("x-request-id"),
        None
    );
}

#[test]
fn reopen_under_load_loses_no_line() {
    let up = Upstream::echo();
    let dir = TempDir::new("reopen");
    let log = dir.0.join("access.log");
    let rotated = dir.0.join("access.log.1");
    let extra = json_log(&log);
    let proxy = Proxy::start(&config(up.addr, &extra));
    let addr = proxy.addr;
    const CLIENTS: usize = 4;
    const EACH: usize = 400;
    let loaders: Vec<_> = (0..CLIENTS)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for n in 0..EACH {
                    let path = if n % 2 == 0 { "/fixed" } else { "/api/x" };
                    assert_eq!(c.request(&get(&format!("{path}?c={i}&n={n}"))).status, 200);
                }
            })
        })
        .collect();
    // Rotate once the first lines are written, while the load runs.
    wait_until("the first lines", TIMEOUT, || !read_lines(&log).is_empty());
    std::fs::rename(&log, &rotated).unwrap();
    proxy.handle().reopen_logs();
    for l in loaders {
        l.join().unwrap();
    }
    proxy.shutdown();
    let (old, new) = (read_lines(&rotated), read_lines(&log));
    assert!(
        !old.is_empty() && !new.is_empty(),
        "old {} new {}",
        old.len(),
        new.len()
    );
    assert_eq!(old.len() + new.len(), CLIENTS * EACH);
    // Every request exactly once.
    let mut targets: Vec<String> = old
        .iter()
        .chain(&new)
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["target"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    targets.sort();
    targets.dedup();
    assert_eq!(targets.len(), CLIENTS * EACH);
}

#[test]
fn a_log_nobody_reads_never_holds_requests_up() {
    let up = Upstream::echo();
    let dir = TempDir::new("fifo");
    let fifo = dir.0.join("fifo");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let extra = json_log(&fifo);
    let proxy = Proxy::start(&config(up.addr, &extra));
    let admin_addr = start_admin(&proxy, &dir);
    let started = Instant::now();
    let mut c = proxy.connect();
    let mut sent = 0;
    let dropped = loop {
        for _ in 0..200 {
            assert_eq!(c.request(&get("/fixed")).status, 200);
            sent += 1;
        }
        let m = parse_metrics(&admin(admin_addr, "/metrics").1);
        let dropped = sample(&m, "ringress_log_lines_dropped_total", &[]);
        if dropped > 0.0 {
            break dropped;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no line dropped after {sent} requests"
        );
    };
    assert!(dropped <= sent as f64);
    // Requests kept their pace: the writer is stuck opening the FIFO.
    let t = Instant::now();
    for _ in 0..200 {
        assert_eq!(c.request(&get("/fixed")).status, 200);
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// A 502 from a dead upstream leaves a warning in the process log that
/// names the group, server, route and cause; a burst of them is said
/// once, with how many were left out.
#[test]
fn upstream_failures_are_warned_once_per_burst() {
    let up = Upstream::echo();
    let dir = TempDir::new("warn");
    let (dead, dead2) = (dead_addr(), dead_addr());
    // "gone" has only a dead server; "mixed" a dead one beside a live
    // one, whose requests all succeed through retries.
    let body = format!(
        "[upstreams.gone]\nservers = [\"{dead}\"]\n\
         [upstreams.mixed]\nservers = [\"{dead2}\", \"{}\"]\nbalance = \"round_robin\"\n\
         [[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"gone\"\n\
         [[routes]]\nname = \"both\"\npath_prefix = \"/mixed\"\nupstream = \"mixed\"\n",
        up.addr
    );
    let stderr = dir.0.join("process.log");
    let (mut child, addr) = spawn_binary(&dir, &body, "1", Some(&stderr));
    let answered = |path: &str| {
        let mut s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(TIMEOUT)).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut raw = String::new();
        s.read_to_string(&mut raw).ok()?;
        Some(raw)
    };
    wait_until("ringress listening", TIMEOUT, || {
        answered("/first").is_some()
    });
    for i in 0..5 {
        // 503 once the failures have ejected the server.
        let raw = answered(&format!("/again{i}")).unwrap();
        assert!(
            raw.starts_with("HTTP/1.1 502") || raw.starts_with("HTTP/1.1 503"),
            "{raw}"
        );
    }
    for i in 0..4 {
        let raw = answered(&format!("/mixed/{i}")).unwrap();
        assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    }
    let log = || std::fs::read_to_string(&stderr).unwrap_or_default();
    let attempts = |text: &str, server: SocketAddr| -> Vec<String> {
        text.lines()
            .filter(|l| {
                l.contains("upstream attempt failed") && l.contains(&format!("server={server}"))
            })
            .map(str::to_string)
            .collect()
    };
    let deadline = Instant::now() + TIMEOUT;
    while attempts(&log(), dead).is_empty() || attempts(&log(), dead2).is_empty() {
        assert!(Instant::now() < deadline, "no warning in:\n{}", log());
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = log();
    // Many failures of one server within a second: one line each.
    let (gone, mixed) = (attempts(&text, dead), attempts(&text, dead2));
    assert_eq!((gone.len(), mixed.len()), (1, 1), "{text}");
    for (w, group, route) in [(&gone[0], "gone", "api"), (&mixed[0], "mixed", "both")] {
        for part in [
            "WARN".to_string(),
            "worker=0".into(),
            format!("group=\"{group}\""),
            format!("route=\"{route}\""),
            "cause=\"connect_error\"".into(),
            "error=\"bad_gateway\"".into(),
        ] {
            assert!(w.contains(&part), "{part} missing in {w}");
        }
    }
    // Once ejected, "gone" has no server left: said once for the group.
    let none: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("no upstream server available"))
        .collect();
    assert!(none.len() <= 1, "{text}");
    assert!(
        none.iter()
            .all(|l| l.contains("group=\"gone\"") && l.contains("cause=\"unavailable\"")),
        "{text}"
    );
    assert!(
        !text.contains('\x1b'),
        "no colour codes with NO_COLOR: {text}"
    );
}

/// logrotate's way with the real process: move the access log, send
/// SIGUSR1, go on; under load, every request has exactly one line in the
/// old file or the new one, and the process lives on.
#[test]
fn sigusr1_reopens_the_access_log_under_load() {
    let up = Upstream::echo();
    let dir = TempDir::new("usr1");
    let log = dir.0.join("access.log");
    let rotated = dir.0.join("access.log.1");
    let body = format!(
        "{}[upstreams.app]\nservers = [\"{}\"]\n[[routes]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        json_log(&log),
        up.addr
    );
    let (mut child, addr) = spawn_binary(&dir, &body, "2", None);
    wait_until("ringress listening", TIMEOUT, || {
        TcpStream::connect(addr).is_ok()
    });
    const CLIENTS: usize = 4;
    const EACH: usize = 300;
    let loaders: Vec<_> = (0..CLIENTS)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for n in 0..EACH {
                    assert_eq!(c.request(&get(&format!("/x?c={i}&n={n}"))).status, 200);
                }
            })
        })
        .collect();
    wait_until("the first lines", TIMEOUT, || !read_lines(&log).is_empty());
    std::fs::rename(&log, &rotated).unwrap();
    let rc = Command::new("kill")
        .args(["-USR1", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(rc.success());
    for l in loaders {
        l.join().unwrap();
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGUSR1 must not kill ringress"
    );
    // SIGTERM: the workers hand over their last lines and the writer
    // writes them before the process exits.
    let rc = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(rc.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let (old, new) = (read_lines(&rotated), read_lines(&log));
    assert!(
        !old.is_empty() && !new.is_empty(),
        "old {} new {}",
        old.len(),
        new.len()
    );
    assert_eq!(old.len() + new.len(), CLIENTS * EACH);
}

/// An access log path that cannot be opened (here: a directory) stops
/// the start, and refuses a reload that asks for it, keeping the running
/// config; the failed reload is counted.
#[test]
fn an_access_log_that_cannot_be_opened_is_refused() {
    let up = Upstream::echo();
    let dir = TempDir::new("unopenable");
    let bad = format!("[access_log]\npath = \"{}\"\n", dir.0.display());
    let parsed = Config::from_toml_str(&config(up.addr, &bad)).expect("valid text");
    let started = ringress::ServerHandle::start(
        parsed,
        ringress::ServerOptions {
            threads: Some(1),
            pin: Some(false),
            io: None,
            release_memory: None,
        },
    );
    let error = started.err().expect("refused").to_string();
    assert!(error.contains("access_log.path"), "{error}");

    let proxy = Proxy::start(&config(up.addr, ""));
    let admin_addr = start_admin(&proxy, &dir);
    let refused = proxy
        .handle()
        .reload(Config::from_toml_str(&config(up.addr, &bad)).unwrap())
        .expect_err("reload refused");
    assert!(refused.to_string().contains("access_log.path"), "{refused}");
    assert_eq!(proxy.handle().generation(), 1);
    assert_eq!(send(&proxy, &get("/fixed")), 200);
    let m = parse_metrics(&admin(admin_addr, "/metrics").1);
    assert_eq!(
        sample(&m, "ringress_config_reloads_total", &[("result", "failed")]),
        1.0
    );
    assert_eq!(
        sample(&m, "ringress_config_reloads_total", &[("result", "ok")]),
        0.0
    );
}

/// A WebSocket tunnel is logged once it closes, with the bytes that went
/// through it and its whole duration.
#[test]
fn a_tunnel_is_logged_when_it_closes_with_its_bytes() {
    use std::io::BufRead;
    let up = Upstream::start(|r, w, up| {
        if up.record(r).is_none() {
            return;
        }
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        if w.write_all(head).is_err() {
            return;
        }
        // Echo until the client closes.
        let mut buf = [0u8; 1024];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if w.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
    let dir = TempDir::new("tunnel");
    let log = dir.0.join("access.log");
    let extra = json_log(&log);
    let proxy = Proxy::start(&config(up.addr, &extra));
    let mut c = proxy.connect();
    c.send(b"GET /api/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    let mut line = String::new();
    let mut head = String::new();
    while line != "\r\n" {
        line.clear();
        c.reader.read_line(&mut line).unwrap();
        head.push_str(&line);
    }
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let payload = [b'x'; 1000];
    c.send(&payload);
    let mut back = vec![0u8; payload.len()];
    c.reader.read_exact(&mut back).unwrap();
    assert_eq!(back, payload);
    // Nothing logged while the tunnel is open.
    std::thread::sleep(Duration::from_millis(150));
    assert!(read_lines(&log).is_empty());
    drop(c);
    proxy.shutdown();
    let lines = read_lines(&log);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let v: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(v["status"], 101);
    assert_eq!(v["exit"], "proxied");
    assert!(v["bytes_in"].as_u64().unwrap() >= 1000 + 60, "{v}");
    assert!(
        v["bytes_out"].as_u64().unwrap() >= 1000 + head.len() as u64,
        "{v}"
    );
}

/// Timeouts on either side and clients that leave mid-head each get
/// their line (408, 504, 499) and their count; a listener with
/// `access_log = false` is counted but not logged.
#[test]
fn timeouts_and_gone_clients_are_logged_and_counted() {
    // Reads the request and never answers.
    let silent = Upstream::start(|r, _w, up| {
        let _ = up.record(r);
        std::thread::sleep(Duration::from_secs(3));
    });
    let dir = TempDir::new("timeouts");
    let log = dir.0.join("access.log");
    let toml = format!(
        r#"
[runtime]
drain_timeout = "2s"
[timeouts]
client_head = "300ms"
[access_log]
path = "{}"
format = "json"
[[listeners]]
name = "main"
bind = "127.0.0.1:0"
[[listeners]]
name = "quiet"
bind = "127.0.0.1:0"
access_log = false
[[routes]]
name = "slow"
path_prefix = "/"
upstream = "silent"
[upstreams.silent]
servers = ["{}"]
response_timeout = "300ms"
retries = 0
"#,
        log.display(),
        silent.addr
    );
    let proxy = Proxy::start(&toml);
    let admin_addr = start_admin(&proxy, &dir);
    // 504: the upstream never answers.
    assert_eq!(send(&proxy, &get("/wait")), 504);
    // 408: the head never ends.
    let mut c = proxy.connect();
    c.send(b"GET /partial HTTP/1.1\r\nHost: x\r\n");
    assert_eq!(c.read_response().status, 408);
    // 499: the client leaves mid-head.
    let mut c = proxy.connect();
    c.send(b"GET /gone HTTP/1.1\r\nHost: x\r\n");
    drop(c);
    // On the quiet listener: counted, not logged.
    let quiet = proxy.handle().listener_addr("quiet").unwrap();
    assert_eq!(Client::connect(quiet).request(&get("/q")).status, 504);
    let requests = |m: &Samples, listener: &str, route: &str, code: &str| {
        sample(
            m,
            "ringress_requests_total",
            &[("listener", listener), ("route", route), ("code", code)],
        )
    };
    // The server sees the client leave when it reads again.
    let mut m = parse_metrics(&admin(admin_addr, "/metrics").1);
    wait_until("the client that left is counted", TIMEOUT, || {
        m = parse_metrics(&admin(admin_addr, "/metrics").1);
        m.contains_key(&(
            "ringress_requests_total".to_string(),
            vec![
                ("code".into(), "499".into()),
                ("listener".into(), "main".into()),
                ("route".into(), "".into()),
            ],
        ))
    });
    assert_eq!(requests(&m, "main", "", "499"), 1.0);
    assert_eq!(requests(&m, "main", "slow", "504"), 1.0);
    assert_eq!(requests(&m, "main", "", "408"), 1.0);
    assert_eq!(requests(&m, "quiet", "slow", "504"), 1.0);
    assert_eq!(
        sample(
            &m,
            "ringress_rejections_total",
            &[("reason", "gateway_timeout")]
        ),
        2.0
    );
    assert_eq!(
        sample(
            &m,
            "ringress_rejections_total",
            &[("reason", "client_timeout")]
        ),
        1.0
    );
    proxy.shutdown();
    let lines: Vec<Value> = read_lines(&log)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let by_status = |status: u64| {
        lines
            .iter()
            .find(|v| v["status"] == status)
            .unwrap_or_else(|| panic!("no {status} in {lines:#?}"))
    };
    assert_eq!(by_status(504)["exit"], "timeout");
    assert_eq!(by_status(504)["reason"], "gateway_timeout");
    assert_eq!(by_status(504)["listener"], "main");
    assert_eq!(by_status(408)["exit"], "timeout");
    assert_eq!(by_status(408)["reason"], "client_timeout");
    assert_eq!(by_status(499)["exit"], "client_gone");
}

/// A client that sends a CRLF after a request body (some do) has not
/// started a request: no head timeout runs, nothing is logged or counted,
/// and its next request is served on the same connection.
#[test]
fn a_crlf_after_a_body_starts_no_request() {
    let up = Upstream::echo();
    let dir = TempDir::new("crlf");
    let log = dir.0.join("access.log");
    let extra = format!("[timeouts]\nclient_head = \"200ms\"\n{}", json_log(&log));
    let proxy = Proxy::start(&config(up.addr, &extra));
    let mut c = proxy.connect();
    let resp = c.request(b"POST /api/p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi\r\n");
    assert_eq!(resp.status, 200);
    // Longer than the head timeout: the CRLF alone must not run into it.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.request(&get("/fixed")).status, 200);
    drop(c);
    proxy.shutdown();
    let lines = read_lines(&log);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines.iter().all(|l| l.contains(r#""status":200"#)),
        "{lines:#?}"
    );
}
