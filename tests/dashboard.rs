//! The admin dashboard (`GET /` on the admin listener) in a real browser:
//! headless Chromium, driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`), loads the page while a client sends
//! traffic through the proxy; the page's numbers must move and neither the
//! console nor the page's own error box may show an error.
//!
//! Without a Chromium binary the browser test is skipped, unless
//! `RINGRESS_REQUIRE_CHROMIUM` is set (`.ci/run` sets it). `RINGRESS_CHROMIUM`
//! names the binary when it is not `chromium` on the PATH.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const PAGE: &str = include_str!("../assets/dashboard.html");

/// The page is self-contained: nothing is loaded from elsewhere.
#[test]
fn the_page_loads_nothing_from_elsewhere() {
    let lower = PAGE.to_ascii_lowercase();
    for banned in [
        "http://",
        "https://",
        "//cdn",
        "<script src",
        "@import",
        "url(",
    ] {
        assert!(!lower.contains(banned), "the dashboard contains `{banned}`");
    }
    assert!(PAGE.contains("<title>ringress</title>"));
    // The ids the browser test reads.
    for id in [
        "rps",
        "requests-total",
        "generation",
        "errors",
        "conn",
        "p99",
    ] {
        assert!(PAGE.contains(&format!("id=\"{id}\"")), "no element #{id}");
    }
}

#[test]
fn dashboard_in_headless_chromium() {
    let Some(chromium) = find_chromium() else {
        if std::env::var_os("RINGRESS_REQUIRE_CHROMIUM").is_some() {
            panic!("RINGRESS_REQUIRE_CHROMIUM is set but no chromium binary was found");
        }
        eprintln!(
            "SKIPPED dashboard_in_headless_chromium: no chromium binary \
             (apt-get install chromium, or set RINGRESS_CHROMIUM)"
        );
        return;
    };

    let up = Upstream::echo();
    let config = ConfigBuilder::new(up.addr)
        .sections("[admin]\ntoken = \"dash-secret\"\n")
        .sections("[[routes]]\nname = \"api\"\npath_prefix = \"/api/\"\nupstream = \"backend\"\n")
        .build();
    let dir = TempDir::new("dashboard");
    let config_file = dir.0.join("ringress.toml");
    std::fs::write(&config_file, &config).expect("write the config file");
    let proxy = Proxy::start(&config);
    let admin = proxy
        .handle()
        .start_admin("127.0.0.1:0".parse().unwrap(), config_file)
        .expect("admin listener binds");

    // The admin side serves the page (to anyone: it holds no data) and
    // the JSON it polls (with the token only).
    let (status, page) = admin_get(admin, "/", None);
    assert_eq!(status, 200, "GET / on the admin listener: {page}");
    assert_eq!(page, PAGE, "GET / serves assets/dashboard.html");
    assert_eq!(admin_get(admin, "/stats", None).0, 401);
    let (status, stats) = admin_get(admin, "/stats", Some("dash-secret"));
    assert_eq!(status, 200, "GET /stats on the admin listener: {stats}");
    assert!(stats.contains("\"time_ms\""), "/stats: {stats}");

    // Traffic through the proxy for as long as the browser looks.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (stop, sent, addr) = (stop.clone(), sent.clone(), proxy.addr);
        thread::spawn(move || {
            let mut client = Client::connect(addr);
            let (mut n, mut closed) = (0u64, 0u64);
            while !stop.load(Ordering::Acquire) {
                let path = if n % 3 == 0 { "/api/x" } else { "/page" };
                client.send(&get(path));
                // The proxy may end a keep-alive connection; open another.
                let Some(resp) = client.read_response_to(false) else {
                    closed += 1;
                    assert!(closed < 1000, "the proxy keeps closing connections");
                    client = Client::connect(addr);
                    continue;
                };
                assert_eq!(resp.status, 200);
                n += 1;
                sent.store(n, Ordering::Release);
                thread::sleep(Duration::from_millis(2));
            }
        })
    };

    let mut browser = Browser::launch(&chromium, &dir.0.join("profile"));
    // The token rides in the fragment, which the page sends with its polls.
    browser.open(&format!("http://{admin}/#token=dash-secret"));

    // The first poll that saw traffic.
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        let s = browser.state();
        if s.polls >= 1 && s.total > 0 {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed a request: {s:?} (sent {}), console: {:?}",
            sent.load(Ordering::Acquire),
            browser.console_errors()
        );
        thread::sleep(Duration::from_millis(200));
    };
    // Three more polls (about 3 s of real time) with traffic running.
    let mut max_rps = 0.0f64;
    let deadline = Instant::now() + Duration::from_secs(15);
    let last = loop {
        let s = browser.state();
        max_rps = max_rps.max(s.rps);
        if s.polls >= first.polls + 3 {
            break s;
        }
        assert!(Instant::now() < deadline, "the page stopped polling: {s:?}");
        thread::sleep(Duration::from_millis(200));
    };
    stop.store(true, Ordering::Release);
    traffic.join().expect("traffic thread");

    assert!(
        last.total > first.total,
        "requests did not go up: {first:?} then {last:?}"
    );
    assert!(max_rps > 0.0, "req/s stayed 0: {first:?} then {last:?}");
    assert_eq!(last.connection, "live", "{last:?}");
    assert_eq!(last.generation, proxy.handle().generation().to_string());
    assert_eq!(last.errors, "", "the page reported errors");
    let console = browser.console_errors();
    assert!(console.is_empty(), "console errors: {console:#?}");
    browser.close();
}

/// One admin request (the listener closes after each answer).
fn admin_get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to admin");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(s, "GET {path} HTTP/1.1\r\nHost: admin.test\r\n{auth}\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("an admin answer");
    let raw = String::from_utf8(raw).expect("a UTF-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_string())
}

fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RINGRESS_CHROMIUM") {
        return Some(p.into());
    }
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
    .find(|p| p.is_file())
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(TempPath);

impl TempDir {
    fn new(name: &str) -> TempDir {
        TempDir(TempPath::dir(format!(
            "ringress-{}-{name}",
            std::process::id()
        )))
    }
}

/// What the page shows, read from its elements.
#[derive(Debug, Clone, Default)]
struct PageState {
    polls: u64,
    total: u64,
    rps: f64,
    generation: String,
    connection: String,
    errors: String,
}

/// Headless Chromium with the DevTools protocol on fds 3 (commands in) and
/// 4 (answers and events out), NUL-terminated JSON messages. Killed on drop.
struct Browser {
    child: Child,
    commands: std::io::PipeWriter,
    messages: Receiver<String>,
    events: Vec<String>,
    next_id: u64,
    session: Option<String>,
    stderr: PathBuf,
}

/// How long one DevTools command may take.
const CDP_TIMEOUT: Duration = Duration::from_secs(20);

impl Browser {
    fn launch(binary: &Path, profile: &Path) -> Browser {
        std::fs::create_dir_all(profile).expect("create the browser profile dir");
        let (to_browser_r, to_browser_w) = std::io::pipe().expect("pipe");
        let (from_browser_r, from_browser_w) = std::io::pipe().expect("pipe");
        let stderr = profile.with_extension("stderr.log");
        // The child's ends, moved above fd 9 so that moving them onto 3 and 4
        // cannot overwrite one with the other.
        let (cmd_end, out_end) = (high_fd(&to_browser_r), high_fd(&from_browser_w));
        drop((to_browser_r, from_browser_w));
        let (cmd_fd, out_fd) = (cmd_end.as_raw_fd(), out_end.as_raw_fd());
        let mut command = Command::new(binary);
        command
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--disable-background-networking",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-pipe",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).expect("browser log file"));
        // SAFETY: only async-signal-safe calls between fork and exec; dup2
        // clears close-on-exec on the copies.
        unsafe {
            command.pre_exec(move || {
                for (from, to) in [(cmd_fd, 3), (out_fd, 4)] {
                    if libc::dup2(from, to) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = command.spawn().expect("start chromium");
        drop((cmd_end, out_end));

        let (tx, messages) = mpsc::channel();
        thread::spawn(move || {
            let mut r = BufReader::new(from_browser_r);
            loop {
                let mut msg = Vec::new();
                match r.read_until(0, &mut msg) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        if msg.last() == Some(&0) {
                            msg.pop();
                        }
                        if tx.send(String::from_utf8_lossy(&msg).into_owned()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Browser {
            child,
            commands: to_browser_w,
            messages,
            events: Vec::new(),
            next_id: 1,
            session: None,
            stderr,
        }
    }

    /// Sends one command (to the attached page once there is one) and
    /// returns its answer; events that come first are kept.
    fn call(&mut self, method: &str, params: &str) -> String {
        let answer = self.try_call(method, params);
        assert!(!answer.contains("\"error\":{"), "{method} failed: {answer}");
        answer
    }

    /// [`call`](Self::call) that hands back an error answer too.
    fn try_call(&mut self, method: &str, params: &str) -> String {
        let id = self.next_id;
        self.next_id += 1;
        let session = match &self.session {
            Some(s) => format!(",\"sessionId\":\"{s}\""),
            None => String::new(),
        };
        let msg = format!("{{\"id\":{id},\"method\":\"{method}\",\"params\":{params}{session}}}\0");
        self.commands
            .write_all(msg.as_bytes())
            .unwrap_or_else(|e| panic!("send {method} to chromium: {e}{}", self.log()));
        let prefix = format!("{{\"id\":{id},");
        let deadline = Instant::now() + CDP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.messages.recv_timeout(left) {
                Ok(m) if m.starts_with(&prefix) => return m,
                Ok(m) => self.events.push(m),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("chromium did not answer {method} in time{}", self.log())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("chromium went away during {method}{}", self.log())
                }
            }
        }
    }

    /// A new tab, attached, with console and log events on, navigated to
    /// `url`.
    fn open(&mut self, url: &str) {
        let created = self.call("Target.createTarget", r#"{"url":"about:blank"}"#);
        let target = string_field(&created, "targetId").expect("a targetId");
        let attached = self.call(
            "Target.attachToTarget",
            &format!(r#"{{"targetId":"{target}","flatten":true}}"#),
        );
        self.session = Some(string_field(&attached, "sessionId").expect("a sessionId"));
        self.call("Runtime.enable", "{}");
        self.call("Log.enable", "{}");
        self.call("Page.enable", "{}");
        self.call("Page.navigate", &format!(r#"{{"url":"{url}"}}"#));
    }

    /// Evaluates `expr` in the page; the value as JSON text, None when it
    /// threw or the page was between documents.
    fn eval(&mut self, expr: &str) -> Option<String> {
        let params = format!(
            r#"{{"expression":"{}","returnByValue":true}}"#,
            expr.replace('\\', "\\\\").replace('"', "\\\"")
        );
        let answer = self.try_call("Runtime.evaluate", &params);
        if answer.contains("\"exceptionDetails\"") || answer.contains("\"error\":{") {
            return None;
        }
        let at = answer.find("\"value\":")? + "\"value\":".len();
        let rest = &answer[at..];
        let end = if let Some(s) = rest.strip_prefix('"') {
            s.find('"').map_or(rest.len(), |e| e + 2)
        } else {
            rest.find([',', '}']).unwrap_or(rest.len())
        };
        Some(rest[..end].to_string())
    }

    /// The page's numbers, one `|`-joined string from the page (every part
    /// URI-encoded, so the answer needs no JSON unescaping); all empty
    /// while the dashboard is not loaded yet.
    fn state(&mut self) -> PageState {
        let raw = self.eval(
            "(() => { const g = (id) => document.getElementById(id); \
             if (!g('requests-total')) return ''; \
             return [document.body.dataset.polls, g('requests-total').dataset.value, \
             g('rps').dataset.value, g('generation').textContent, g('conn').dataset.state, \
             g('errors').textContent].map((v) => encodeURIComponent(v == null ? '' : v)).join('|'); })()",
        );
        let raw = raw.unwrap_or_default();
        let raw = raw.trim_matches('"');
        if raw.is_empty() {
            return PageState::default();
        }
        let parts: Vec<String> = raw.split('|').map(uri_decode).collect();
        assert_eq!(parts.len(), 6, "page state: {raw}");
        PageState {
            polls: parts[0].parse().unwrap_or(0),
            total: parts[1].parse().unwrap_or(0),
            rps: parts[2].parse().unwrap_or(0.0),
            generation: parts[3].clone(),
            connection: parts[4].clone(),
            errors: parts[5].clone(),
        }
    }

    /// Errors the page logged: exceptions, `console.error`, and the
    /// browser's own log entries at error level (failed loads, CSP, ...).
    fn console_errors(&mut self) -> Vec<String> {
        while let Ok(m) = self.messages.try_recv() {
            self.events.push(m);
        }
        self.events
            .iter()
            .filter(|m| {
                m.contains("\"method\":\"Runtime.exceptionThrown\"")
                    || (m.contains("\"method\":\"Runtime.consoleAPICalled\"")
                        && (m.contains("\"type\":\"error\"") || m.contains("\"type\":\"assert\"")))
                    || (m.contains("\"method\":\"Log.entryAdded\"")
                        && m.contains("\"level\":\"error\""))
            })
            .cloned()
            .collect()
    }

    fn close(mut self) {
        self.session = None;
        let id = self.next_id;
        let _ = self
            .commands
            .write_all(format!("{{\"id\":{id},\"method\":\"Browser.close\"}}\0").as_bytes());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        // Drop kills it.
    }

    fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("\nchromium stderr (last lines):\n{}", tail.join("\n"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A close-on-exec copy of `fd` numbered 10 or above.
fn high_fd(fd: &impl AsRawFd) -> OwnedFd {
    // SAFETY: fcntl on an open fd; the new fd is owned by nobody else.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    assert!(
        n >= 10,
        "fcntl(F_DUPFD_CLOEXEC): {}",
        std::io::Error::last_os_error()
    );
    unsafe { OwnedFd::from_raw_fd(n) }
}

/// `"key":"value"` in a DevTools message (ids and session ids have no
/// escapes).
fn string_field(msg: &str, key: &str) -> Option<String> {
    let start = msg.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let len = msg[start..].find('"')?;
    Some(msg[start..start + len].to_string())
}

fn uri_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        if b[i] == b'%'
            && let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
