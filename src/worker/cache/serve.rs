//! Answering from a stored object: the head rendered from its fields with
//! the route's edits, `Age` and `Cache-Status`, then the shared body. A
//! client's conditional request that the object satisfies gets a 304.

use std::rc::Rc;

use super::super::client::Client;
use super::super::plan::vars;
use super::{LocalObject, now_secs};
use crate::cache::policy::{self, CacheStatus};
use crate::config::Config;
use crate::error::ProxyError;
use crate::http::Version;
use crate::http::encode::{FieldEdits, insert_head_lines, write_content_length, write_field};
use crate::http::response::status_has_body;
use crate::pipeline::{Exit, NO_FILTERS};
use crate::rt::buffer::{flush_vec, write_all};

/// Bodies up to this size go in the same write as the head.
const COPY_BODY: usize = 16 * 1024;

/// The cache's name in `Cache-Status`.
pub(crate) const CACHE_NAME: &str = "ringress";

/// Sends `object` as the answer. False when the client is gone.
pub(crate) async fn serve(
    c: &mut Client,
    config: &Config,
    object: &Rc<LocalObject>,
    status: CacheStatus,
    close: bool,
) -> bool {
    let not_modified = client_has_it(c, object);
    render(c, config, object, &status, close, not_modified);
    let head_only = not_modified || c.cache.is_head || !status_has_body(object.object.status);
    let body = &object.body;
    let timeout = config.timeouts.io;
    c.record.exit = Exit::Cached;
    c.record.status = if not_modified {
        304
    } else {
        object.object.status
    };
    if head_only || body.len() <= COPY_BODY {
        if !head_only {
            c.out.extend_from_slice(body.as_slice());
        }
        c.record.bytes_out += c.out.len() as u64;
        let sent = flush_vec(&mut c.stream, &mut c.out, timeout).await.is_ok();
        return c.sent(sent);
    }
    c.record.bytes_out += (c.out.len() + body.len()) as u64;
    let head = flush_vec(&mut c.stream, &mut c.out, timeout).await.is_ok();
    let sent = head
        && write_all(&mut c.stream, body.clone(), timeout)
            .await
            .is_ok();
    c.sent(sent)
}

/// Answers a failed upstream exchange with the stale object kept for it,
/// when its `stale-if-error` allows. None when it does not apply.
pub(crate) async fn serve_stale_on_error(
    c: &mut Client,
    config: &Config,
    error: &ProxyError,
    close: bool,
) -> Option<bool> {
    if error.side == crate::error::Side::Downstream || !stale_usable(c) {
        return None;
    }
    let stale = c.cache.stale.clone()?;
    c.record.fail(*error);
    c.record.cache = crate::pipeline::CacheResult::Stale;
    let ttl = stale.object.ttl(now_secs());
    let status = CacheStatus::StaleIfError { ttl };
    Some(serve(c, config, &stale, status, close).await)
}

/// Whether the object kept for this request may stand in for a failed
/// upstream (its stale-if-error window, the request's directives).
pub(crate) fn stale_usable(c: &Client) -> bool {
    c.cache.stale.as_ref().is_some_and(|s| {
        let age = s.object.age(now_secs());
        s.object.is_alive() && policy::usable_on_error(age, &s.object.life, &c.cache.control)
    })
}

/// Whether the client's conditional request is satisfied by `object`.
fn client_has_it(c: &Client, object: &LocalObject) -> bool {
    let o = &object.object;
    if o.status != 200 {
        return false;
    }
    let inm = c.cache.noted(c.cache.if_none_match);
    let ims = c.cache.noted(c.cache.if_modified_since);
    (inm.is_some() || ims.is_some())
        && policy::not_modified(inm, ims, o.etag.as_deref(), o.last_modified)
}

/// Renders the head into `c.out`.
fn render(
    c: &mut Client,
    config: &Config,
    object: &LocalObject,
    status: &CacheStatus,
    close: bool,
    not_modified: bool,
) {
    let o = &object.object;
    let route = c.record.route.unwrap_or(usize::MAX);
    let chain = config.chains.get(route).unwrap_or(&NO_FILTERS);
    let mut out = std::mem::take(&mut c.out);
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    if not_modified {
        out.extend_from_slice(b"304 Not Modified\r\n");
    } else {
        out.extend_from_slice(itoa::Buffer::new().format(o.status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(&o.reason);
        out.extend_from_slice(b"\r\n");
    }
    let edits = chain.edits_heads().then(|| {
        let mut lines = std::mem::take(&mut c.rewrite_buf);
        lines.clear();
        let values = vars(c, config, route, c.record.client_ip, &c.host_buf);
        chain.response(&values).0.append(&mut lines);
        lines
    });
    let prerendered = edits.as_ref().map(|lines| chain.response_with(lines));
    if prerendered.is_none() && !not_modified {
        // Nothing to leave out: the stored lines in one copy.
        out.extend_from_slice(&o.fields);
    } else {
        for line in o.fields.split_inclusive(|&b| b == b'\n') {
            let name = line.split(|&b| b == b':').next().unwrap_or(b"");
            if !(prerendered.drops(name) || (not_modified && drop_on_304(name))) {
                out.extend_from_slice(line);
            }
        }
    }
    out.extend_from_slice(b"Age: ");
    out.extend_from_slice(itoa::Buffer::new().format(o.age(now_secs())).as_bytes());
    out.extend_from_slice(b"\r\n");
    policy::write_cache_status(&mut out, CACHE_NAME, status);
    if !not_modified && status_has_body(o.status) {
        write_content_length(&mut out, o.body.len() as u64);
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if c.version == Version::Http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    prerendered.append(&mut out);
    if let Some(lines) = edits {
        c.rewrite_buf = lines;
    }
    let text = &c.record.text;
    if text.return_id && !text.request_id().is_empty() {
        write_field(&mut out, b"X-Request-Id", text.request_id());
    }
    out.extend_from_slice(b"\r\n");
    c.out = out;
}

/// Fields a 304 leaves out (RFC 9110 15.4.5: it carries the validators
/// and caching fields, not the representation's metadata).
fn drop_on_304(name: &[u8]) -> bool {
    [
        &b"content-type"[..],
        b"content-length",
        b"content-language",
        b"content-range",
    ]
    .iter()
    .any(|n| name.eq_ignore_ascii_case(n))
}

/// Puts a `Cache-Status` line into an answer rendered whole (a request
/// the cache refused), with `detail`.
pub(crate) fn add_status_line(out: &mut Vec<u8>, detail: &'static str) {
    let status = CacheStatus::Forward {
        fwd: crate::cache::policy::Fwd::Miss,
        status: None,
        stored: false,
        collapsed: false,
        detail: Some(detail),
    };
    insert_head_lines(out, |out| {
        policy::write_cache_status(out, CACHE_NAME, &status);
    });
}
