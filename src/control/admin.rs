//! The admin listener: a tiny blocking HTTP/1.1 server on its own thread,
//! for operators and their tooling. `POST /reload` re-reads the config
//! file and publishes it (as SIGHUP does, but with the outcome in the
//! answer); `GET /health` says the process is up. Bind it to loopback or
//! a management network only: it has no authentication.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use super::server::Reloader;
use crate::config::Config;

const MAX_HEAD: usize = 8192;
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole request must arrive within this (one client at a time is
/// served: a slow one must not hold the admin listener).
const REQUEST_TIME: Duration = Duration::from_secs(5);

/// Binds `bind` and serves admin requests until the process exits.
pub fn spawn(bind: SocketAddr, reloader: Reloader, config: PathBuf) -> io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(bind)?;
    if !bind.ip().is_loopback() {
        tracing::warn!(%bind, "the admin listener has no authentication and is not on loopback");
    }
    std::thread::Builder::new()
        .name("ringress-admin".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => {
                        if let Err(e) = serve(stream, &reloader, &config) {
                            tracing::debug!(error = %e, "admin connection failed");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })
}

fn serve(mut stream: TcpStream, reloader: &Reloader, config: &Path) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    let deadline = std::time::Instant::now() + REQUEST_TIME;
    let (method, path) = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return answer(&mut stream, 408, "request timeout\n");
        }
        stream.set_read_timeout(Some(left.min(IO_TIMEOUT)))?;
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                break (
                    req.method.unwrap_or("").to_string(),
                    req.path.unwrap_or("").to_string(),
                );
            }
            Ok(httparse::Status::Partial) if len < MAX_HEAD => continue,
            _ => return answer(&mut stream, 400, "bad request\n"),
        }
    };
    match (method.as_str(), path.as_str()) {
        ("POST", "/reload") => {
            let outcome = Config::from_file(config).and_then(|c| {
                for w in &c.warnings {
                    tracing::warn!("{w}");
                }
                reloader.reload(c)
            });
            match outcome {
                Ok(generation) => {
                    tracing::info!(generation, "config reloaded (admin)");
                    answer(
                        &mut stream,
                        200,
                        &format!("reloaded: generation {generation}\n"),
                    )
                }
                Err(errors) => {
                    tracing::error!("admin reload rejected, keeping the running config:");
                    let mut body = String::from("reload rejected, keeping the running config:\n");
                    for e in &errors.0 {
                        tracing::error!("  {e}");
                        body.push_str(&format!("  {e}\n"));
                    }
                    answer(&mut stream, 422, &body)
                }
            }
        }
        ("GET" | "HEAD", "/health") => answer(&mut stream, 200, "ok\n"),
        ("GET", "/generation") => answer(&mut stream, 200, &format!("{}\n", reloader.generation())),
        (_, "/reload" | "/health" | "/generation") => {
            answer(&mut stream, 405, "method not allowed\n")
        }
        _ => answer(&mut stream, 404, "not found\n"),
    }
}

fn answer(stream: &mut TcpStream, status: u16, body: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        crate::http::answer::reason(status),
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
