//! Active health checks: one small thread for the whole process (not one
//! per core) probes every server of every group that has `health_check`,
//! and flips the server's shared `up` flag after enough passes or
//! failures in a row. Workers read the flag with one relaxed load.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::pki_types::ServerName;

use crate::shared::Shared;
use crate::tls::TlsStream;
use crate::upstream::{HealthCheck, ServerConfig, ServerHealth, UpstreamGroup};

/// How often the thread looks for due checks (and for shutdown).
const TICK: Duration = Duration::from_millis(50);

pub(crate) fn spawn(shared: Arc<Shared>) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ringress-health".into())
        .spawn(move || {
            // epoll is plenty for a handful of probe sockets, and works
            // wherever the workers' io_uring might not.
            match crate::worker::epoll_runtime() {
                Ok(mut rt) => rt.block_on(run(shared)),
                Err(e) => tracing::error!(error = %e, "health check thread failed to start"),
            }
        })
}

/// Probe state of one server of one group.
struct Probe {
    due: Instant,
    running: bool,
    passes: u32,
    fails: u32,
}

type Probes = Rc<RefCell<HashMap<(String, SocketAddr), Probe>>>;

async fn run(shared: Arc<Shared>) {
    let probes: Probes = Rc::new(RefCell::new(HashMap::new()));
    let mut seen_generation = 0;
    while !shared.draining.load(Ordering::Acquire) {
        let (generation, config) = shared.current();
        let now = Instant::now();
        if generation != seen_generation {
            // Forget servers no longer checked (DNS churn, reloads).
            seen_generation = generation;
            probes.borrow_mut().retain(|(group, addr), p| {
                p.running
                    || config.upstreams.iter().any(|g| {
                        &g.name == group
                            && g.health_check.is_some()
                            && g.servers.iter().any(|s| s.addr == *addr)
                    })
            });
        }
        for group in &config.upstreams {
            let Some(check) = &group.health_check else {
                continue;
            };
            for server in &group.servers {
                let key = (group.name.clone(), server.addr);
                let mut all = probes.borrow_mut();
                let probe = all.entry(key.clone()).or_insert(Probe {
                    due: now,
                    running: false,
                    passes: 0,
                    fails: 0,
                });
                if probe.running || now < probe.due {
                    continue;
                }
                probe.running = true;
                probe.due = now + check.interval;
                let target = Target::new(group, server, check);
                let health = server.health.clone();
                let probes = probes.clone();
                let (healthy, unhealthy) = (check.healthy, check.unhealthy);
                monoio::spawn(async move {
                    let result = target.probe().await;
                    let mut all = probes.borrow_mut();
                    if let Some(p) = all.get_mut(&key) {
                        p.running = false;
                        record(p, &health, result, healthy, unhealthy, &key);
                    }
                });
            }
        }
        monoio::time::sleep(TICK).await;
    }
}

/// Counts a probe result and flips the server's state when the streak is
/// long enough.
fn record(
    p: &mut Probe,
    health: &ServerHealth,
    result: Result<u16, String>,
    healthy: u32,
    unhealthy: u32,
    key: &(String, SocketAddr),
) {
    match result {
        Ok(_) => {
            p.passes += 1;
            p.fails = 0;
            if !health.is_up() && p.passes >= healthy {
                health.set_up(true);
                tracing::info!(group = %key.0, server = %key.1, "health check: server up");
            }
        }
        Err(why) => {
            p.fails += 1;
            p.passes = 0;
            if health.is_up() && p.fails >= unhealthy {
                health.set_up(false);
                tracing::warn!(group = %key.0, server = %key.1, reason = %why, "health check: server down");
            }
        }
    }
}

/// Everything one probe needs, owned (the config may change meanwhile).
struct Target {
    addr: SocketAddr,
    request: Vec<u8>,
    timeout: Duration,
    expect: (u16, u16),
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

impl Target {
    fn new(group: &UpstreamGroup, server: &ServerConfig, check: &HealthCheck) -> Target {
        let host = check
            .host
            .clone()
            .or_else(|| {
                group
                    .host_header
                    .as_ref()
                    .map(|h| String::from_utf8_lossy(h).into_owned())
            })
            .unwrap_or_else(|| match server.addr.ip() {
                // A literal address: the Host field needs IPv6 brackets.
                std::net::IpAddr::V6(ip) if server.host.parse::<std::net::IpAddr>().is_ok() => {
                    format!("[{ip}]:{}", server.addr.port())
                }
                _ => server.host.clone(),
            });
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ringress-health-check\r\nConnection: close\r\n\r\n",
            check.path
        )
        .into_bytes();
        let tls = group.tls.as_ref().map(|t| {
            let name = server
                .tls_name
                .clone()
                .unwrap_or_else(|| ServerName::IpAddress(server.addr.ip().into()));
            (t.client.clone(), name)
        });
        Target {
            addr: server.addr,
            request,
            timeout: check.timeout,
            expect: check.expect,
            tls,
        }
    }

    /// The status the server answered, if it was an expected one.
    async fn probe(self) -> Result<u16, String> {
        let timeout = self.timeout;
        match monoio::time::timeout(timeout, self.exchange()).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {timeout:?}")),
        }
    }

    async fn exchange(self) -> Result<u16, String> {
        let socket = TcpStream::connect_addr(self.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let status = match self.tls {
            None => status_of(socket, self.request).await?,
            Some((config, name)) => {
                let stream = TlsStream::connect(socket, config, name)
                    .await
                    .map_err(|e| format!("TLS: {e}"))?;
                status_of(stream, self.request).await?
            }
        };
        if (self.expect.0..=self.expect.1).contains(&status) {
            Ok(status)
        } else {
            Err(format!("status {status}"))
        }
    }
}

/// Sends the request and reads the status code of the answer.
async fn status_of<S: AsyncReadRent + monoio::io::AsyncWriteRent>(
    mut stream: S,
    request: Vec<u8>,
) -> Result<u16, String> {
    let (res, _) = stream.write_all(request).await;
    res.map_err(|e| format!("write: {e}"))?;
    let mut got: Vec<u8> = Vec::with_capacity(256);
    loop {
        if let Some(end) = got.windows(2).position(|w| w == b"\r\n") {
            return parse_status(&got[..end]).ok_or_else(|| "not an HTTP status line".to_string());
        }
        if got.len() >= 1024 {
            return Err("status line too long".into());
        }
        let buf = Vec::with_capacity(512);
        let (res, buf) = stream.read(buf).await;
        match res {
            Ok(0) => return Err("closed before answering".into()),
            Ok(_) => got.extend_from_slice(&buf),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// `HTTP/1.x NNN ...` → NNN.
fn parse_status(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_status;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 503"), Some(503));
        assert_eq!(parse_status(b"HTTP/1.1 20"), None);
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH"), None);
    }
}
