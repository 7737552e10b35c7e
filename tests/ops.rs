//! Operating the real binary as an nginx operator would: SIGUSR1 reopens
//! the process log (and never kills), the log's formats, a second
//! instance on the same listeners refused, and `--upgrade` replacing a
//! running process under traffic without a failed request.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{TIMEOUT, TempPath, dead_addr, wait_until};

const BIN: &str = env!("CARGO_BIN_EXE_ringress");

/// A scratch directory, removed on drop.
struct Scratch(TempPath);

impl Scratch {
    fn new(name: &str) -> Scratch {
        Scratch(TempPath::unique_dir(&format!("ops-{name}")))
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }

    fn write(&self, file: &str, text: &str) -> PathBuf {
        let path = self.path(file);
        std::fs::write(&path, text).expect("write file");
        path
    }
}

/// A ringress process, killed on drop if still running; stdout and
/// stderr are collected together.
struct Proc {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl Proc {
    /// Two workers unless `extra` names `--threads`.
    fn spawn(config: &Path, extra: &[&str]) -> Proc {
        let threads: &[&str] = if extra.contains(&"--threads") {
            &[]
        } else {
            &["--threads", "2"]
        };
        let mut child = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .arg("--no-pin")
            .args(threads)
            .args(extra)
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ringress");
        let output = Arc::new(Mutex::new(String::new()));
        let pipes: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for mut pipe in pipes {
            let output = output.clone();
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]);
                    output.lock().expect("output").push_str(&text);
                }
            });
        }
        Proc { child, output }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({signal})");
    }

    fn output(&self) -> String {
        self.output.lock().expect("output").clone()
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let mut status = None;
        wait_until("the process to exit", TIMEOUT, || {
            status = self.child.try_wait().expect("try_wait");
            status.is_some()
        });
        status.expect("exited")
    }

    /// Waits until the collected output contains `text`.
    fn wait_output(&self, text: &str) {
        let end = std::time::Instant::now() + TIMEOUT;
        while !self.output().contains(text) {
            let output = self.output();
            assert!(
                std::time::Instant::now() < end,
                "no `{text}` in the output after {TIMEOUT:?}:\n{output}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A free port on 127.0.0.1.
fn free_addr() -> SocketAddr {
    dead_addr()
}

/// Two different free ports on 127.0.0.1 (both held while choosing).
fn free_pair() -> (SocketAddr, SocketAddr) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let b = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let pair = (a.local_addr(), b.local_addr());
    match pair {
        (Ok(a), Ok(b)) => (a, b),
        _ => panic!("no local address"),
    }
}

/// Listener `main` on `addr` answering `/hello` itself, plus `extra`
/// sections (`[log]`, `[admin]`).
fn config(addr: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[runtime]
drain_timeout = "2s"

{extra}

[[listeners]]
name = "main"
bind = "{addr}"

[[routes]]
path_prefix = "/"
respond = {{ status = 200, body = "hello\n" }}
"#
    )
}

/// One request on a new connection: (status, body), or None when the
/// connection failed or the answer was cut short.
fn request(addr: SocketAddr, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: ops.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))?
        .trim()
        .parse()
        .ok()?;
    (body.len() == length).then(|| (status, body.to_string()))
}

fn wait_serving(addr: SocketAddr, p: &Proc) {
    wait_until(
        &format!("{addr} to answer; output:\n{}", p.output()),
        TIMEOUT,
        || request(addr, "GET", "/hello").is_some_and(|(s, _)| s == 200),
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn sigusr1_reopens_the_process_log_and_never_kills() {
    let dir = Scratch::new("usr1");
    let addr = free_addr();
    let log = dir.path("ringress.log");
    let extra = format!("[log]\npath = \"{}\"", log.display());
    let file = dir.write("ringress.toml", &config(addr, &extra));
    let mut p = Proc::spawn(&file, &[]);
    wait_serving(addr, &p);
    wait_until("the start line in the log file", TIMEOUT, || {
        read(&log).contains("ringress started")
    });

    // logrotate: move the file away, then SIGUSR1.
    let moved = dir.path("ringress.log.1");
    std::fs::rename(&log, &moved).expect("rotate");
    p.signal(libc::SIGUSR1);
    wait_until("a new log file at the path", TIMEOUT, || {
        read(&log).contains("process log reopened")
    });
    assert!(p.running(), "SIGUSR1 stopped the process");

    // New lines go to the new file only.
    p.signal(libc::SIGHUP);
    wait_until("the reload line in the new file", TIMEOUT, || {
        read(&log).contains("config reloaded")
    });
    let old = read(&moved);
    assert!(old.contains("ringress started"), "{old}");
    assert!(!old.contains("config reloaded"), "{old}");
    // The reload lists what changed (here: nothing).
    assert!(read(&log).contains("reload: no listener"), "{}", read(&log));
    // A file gets no colour codes, and the log went to the file only.
    assert!(!read(&log).contains('\x1b') && !old.contains('\x1b'));
    assert!(!p.output().contains("ringress started"), "{}", p.output());

    // Repeated USR1s are as harmless, and traffic goes on.
    for _ in 0..3 {
        p.signal(libc::SIGUSR1);
    }
    assert_eq!(
        request(addr, "GET", "/hello"),
        Some((200, "hello\n".into()))
    );
    assert!(p.running());
    p.signal(libc::SIGTERM);
    assert!(p.wait_exit().success());
}

#[test]
fn json_process_log_on_stdout() {
    let dir = Scratch::new("json");
    let addr = free_addr();
    let file = dir.write(
        "ringress.toml",
        &config(addr, "[log]\npath = \"stdout\"\nformat = \"json\""),
    );
    let mut p = Proc::spawn(&file, &[]);
    wait_serving(addr, &p);
    p.wait_output("ringress started");
    let out = p.output();
    let line = out
        .lines()
        .find(|l| l.contains("ringress started"))
        .expect("start line");
    assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    assert!(line.contains(r#""level":"INFO""#), "{line}");
    assert!(!out.contains('\x1b'), "colour on a pipe: {out}");
    p.signal(libc::SIGTERM);
    assert!(p.wait_exit().success());
}

#[test]
fn a_second_instance_is_refused_naming_the_running_one() {
    let dir = Scratch::new("second");
    let addr = free_addr();
    let file = dir.write("ringress.toml", &config(addr, ""));
    let mut first = Proc::spawn(&file, &[]);
    wait_serving(addr, &first);

    let mut second = Proc::spawn(&file, &[]);
    let status = second.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", second.output());
    let message = second.output();
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(
        message.contains(&format!("pid {}", first.pid())),
        "{message}"
    );
    assert!(message.contains(BIN), "command line not named: {message}");
    assert!(message.contains("--upgrade"), "{message}");

    // The first one is untouched.
    assert!(first.running());
    assert_eq!(
        request(addr, "GET", "/hello"),
        Some((200, "hello\n".into()))
    );
    first.signal(libc::SIGTERM);
    assert!(first.wait_exit().success());
}

/// An address held by a socket that cannot be shared (this test's own,
/// without SO_REUSEPORT): refused with or without `--upgrade`, and
/// nothing is bound.
#[test]
fn a_port_held_by_another_program_is_refused_even_for_an_upgrade() {
    let dir = Scratch::new("foreign");
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = holder.local_addr().expect("addr");
    let file = dir.write("ringress.toml", &config(addr, ""));

    let mut plain = Proc::spawn(&file, &[]);
    assert_eq!(plain.wait_exit().code(), Some(1), "{}", plain.output());
    let me = format!("pid {}", std::process::id());
    assert!(plain.output().contains(&me), "{}", plain.output());

    let mut upgrade = Proc::spawn(&file, &["--upgrade"]);
    assert_eq!(upgrade.wait_exit().code(), Some(1), "{}", upgrade.output());
    let message = upgrade.output();
    assert!(message.contains("cannot listen on"), "{message}");
    assert!(!message.contains("ringress started"), "{message}");
}

/// Sequential requests, each on a new connection (so each goes through
/// a listening socket), until stopped.
struct Traffic {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<Mutex<Vec<String>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Traffic {
    /// `pause` between requests (zero: as fast as one thread goes).
    fn start(addr: SocketAddr, pause: Duration) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match request(addr, "GET", "/hello") {
                        Some((200, body)) if body == "hello\n" => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failed.lock().expect("failed").push(format!("{other:?}")),
                    }
                    if !pause.is_zero() {
                        thread::sleep(pause);
                    }
                }
            })
        };
        Traffic {
            stop,
            ok,
            failed,
            thread: Some(thread),
        }
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops and returns (answered, failures).
    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let failed = self.failed.lock().expect("failed").clone();
        (self.ok(), failed)
    }
}

#[test]
fn upgrade_starts_alongside_takes_the_admin_over_and_loses_no_request() {
    upgrade_under_traffic(&[], &[]);
}

#[test]
fn upgrade_loses_no_request_on_epoll() {
    upgrade_under_traffic(&["--io", "epoll"], &["--io", "epoll"]);
}

/// The new process binds as many sockets as the old one has (its two
/// workers take three), or the steering could not last until the old
/// sockets are all closed.
#[test]
fn upgrade_to_fewer_workers_loses_no_request() {
    upgrade_under_traffic(&["--threads", "3"], &["--threads", "2"]);
}

/// Starts a process with `old_args`, then one with `--upgrade` and
/// `new_args`, then stops the first, all under traffic.
fn upgrade_under_traffic(old_args: &[&str], new_args: &[&str]) {
    let dir = Scratch::new("upgrade");
    let (addr, admin) = free_pair();
    let file = dir.write(
        "ringress.toml",
        &config(addr, &format!("[admin]\nbind = \"{admin}\"")),
    );
    let mut old = Proc::spawn(&file, old_args);
    wait_serving(addr, &old);
    old.wait_output("admin listener started");
    assert_eq!(
        request(admin, "GET", "/generation"),
        Some((200, "1\n".into()))
    );

    // Paced, so that the run leaves hundreds of closed connections behind
    // rather than tens of thousands; full speed only around the stop.
    let traffic = Traffic::start(addr, Duration::from_millis(2));
    let mut new = Proc::spawn(&file, &[new_args, &["--upgrade"]].concat());
    new.wait_output("admin listener started");
    assert!(
        new.output().contains(&format!("pid {}", old.pid())),
        "{}",
        new.output()
    );
    assert!(old.running() && new.running());

    // Every admin request now goes to the new process: its reloads count
    // 2, 3, 4, ... with none answered by the old one (which would say 2
    // again). Worker 0 picks the admin socket up on its next tick; until
    // then connections wait in the socket's queue.
    for generation in 2..8 {
        assert_eq!(
            request(admin, "POST", "/reload"),
            Some((200, format!("reloaded: generation {generation}\n"))),
            "old:\n{}\nnew:\n{}",
            old.output(),
            new.output()
        );
    }
    assert!(!old.output().contains("config reloaded (admin)"));

    // A connection that waits in a listening socket's queue when the old
    // process closes it would be reset: the new process must have all the
    // new connections by then.
    let burst = Traffic::start(addr, Duration::ZERO);
    wait_until("the burst to start", TIMEOUT, || burst.ok() > 10);
    old.signal(libc::SIGTERM);
    assert!(old.wait_exit().success(), "{}", old.output());
    let after = burst.ok();
    wait_until("traffic on the new process alone", TIMEOUT, || {
        burst.ok() > after + 200
    });
    for traffic in [traffic, burst] {
        let (answered, failed) = traffic.finish();
        assert!(
            failed.is_empty(),
            "{} of {answered} failed: {failed:?}",
            failed.len()
        );
    }
    assert_eq!(request(admin, "GET", "/health"), Some((200, "ok\n".into())));
    assert!(new.running());
    new.signal(libc::SIGTERM);
    assert!(new.wait_exit().success());
}
