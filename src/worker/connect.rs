//! Getting an upstream connection: a pooled one that is still usable, or a
//! new one (TCP, then TLS when the group asks for it) within the group's
//! connect timeout.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;
use rustls::pki_types::ServerName;

use super::ctx::WorkerCtx;
use crate::error::{ErrorKind, ProxyError};
use crate::rt::conn::Conn;
use crate::rt::deadline;
use crate::tls::TlsStream;
use crate::upstream::{PoolKey, ServerConfig, UpstreamGroup};

/// Which pooled connections can serve `group`'s requests to `server`:
/// same address, and for TLS the same settings and server name.
pub(crate) fn pool_key(group: &UpstreamGroup, server: &ServerConfig) -> PoolKey {
    PoolKey {
        addr: server.addr,
        tls: group
            .tls
            .as_ref()
            .map_or(0, |t| (t.pool_tag ^ server.tls_name_tag) | 1),
    }
}

/// An idle pooled connection or a fresh one; `reused` says which.
/// `client`: (source, destination) for the PROXY header the group sends;
/// such connections are never pooled (each speaks for one client). `now`
/// ages the pool; the attempt's start time is close enough.
pub(crate) async fn acquire(
    ctx: &WorkerCtx,
    group: &UpstreamGroup,
    server: &ServerConfig,
    allow_pooled: bool,
    client: (SocketAddr, Option<SocketAddr>),
    now: Instant,
) -> Result<(Conn, bool), ProxyError> {
    if allow_pooled && group.send_proxy_protocol.is_none() {
        let key = pool_key(group, server);
        loop {
            let Some(mut conn) = ctx.pool.borrow_mut().take(&key, now) else {
                break;
            };
            // Always checked: stray bytes an upstream sent after its last
            // response (or its close) must never reach the next client.
            // On TLS that includes late session tickets: such a
            // connection is dropped too, which is only a lost reuse.
            if !conn.has_unread_input() && idle_conn_usable(conn.socket()) {
                return Ok((conn, true));
            }
        }
    }
    let addr = server.addr;
    let until = Instant::now() + group.connect_timeout;
    let mut socket =
        match deadline::within(group.connect_timeout, TcpStream::connect_addr(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                stream
            }
            Ok(Err(e)) => {
                tracing::debug!(worker = ctx.id, %addr, error = %e, "upstream connect failed");
                return Err(ProxyError::upstream(ErrorKind::BadGateway));
            }
            Err(_) => {
                tracing::debug!(worker = ctx.id, %addr, "upstream connect timed out");
                return Err(ProxyError::upstream(ErrorKind::GatewayTimeout));
            }
        };
    if let Some(version) = group.send_proxy_protocol {
        let destination = client
            .1
            .unwrap_or_else(|| SocketAddr::new(client.0.ip(), 0));
        let mut header = Vec::with_capacity(64);
        crate::net::proxy_protocol::write(&mut header, version, client.0, destination);
        let left = until.saturating_duration_since(Instant::now());
        let sent = deadline::within(left, socket.write_all(header)).await;
        if !matches!(sent, Ok((Ok(_), _))) {
            tracing::debug!(worker = ctx.id, %addr, "sending the PROXY header failed");
            return Err(ProxyError::upstream(ErrorKind::BadGateway));
        }
    }
    let Some(tls) = &group.tls else {
        return Ok((Conn::Plain(socket), false));
    };
    let name = server
        .tls_name
        .clone()
        .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
    let left = until.saturating_duration_since(Instant::now());
    match deadline::within(left, TlsStream::connect(socket, tls.client.clone(), name)).await {
        Ok(Ok(stream)) => Ok((Conn::Tls(Box::new(stream)), false)),
        Ok(Err(e)) => {
            // Usually a certificate that does not verify: worth the
            // operator's attention, unlike a refused connect.
            tracing::warn!(worker = ctx.id, %addr, group = %group.name, error = %e, "upstream TLS handshake failed");
            Err(ProxyError::upstream(ErrorKind::BadGateway))
        }
        Err(_) => {
            tracing::debug!(worker = ctx.id, %addr, "upstream TLS handshake timed out");
            Err(ProxyError::upstream(ErrorKind::GatewayTimeout))
        }
    }
}

/// Whether an idle connection can carry a request: the peer has not closed
/// it and sent nothing unasked.
fn idle_conn_usable(stream: &TcpStream) -> bool {
    crate::rt::conn::peek(stream.as_raw_fd()) == crate::rt::conn::Peek::Nothing
}
