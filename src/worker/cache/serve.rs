//! Answering from a stored object: the head rendered from its fields with
//! the route's edits, `Age` and `Cache-Status`, then the shared body. A
//! client's conditional request that the object satisfies gets a 304.

use std::rc::Rc;

use super::super::downstream::Downstream;
use super::super::reqstate::ReqState;
use super::{CacheReq, LocalObject, now_secs};
use crate::cache::policy::{self, CacheStatus};
use crate::config::Config;
use crate::error::ProxyError;
use crate::http::encode::{FieldEdits, OriginHiding, StoredHead, write_field};
use crate::http::response::status_has_body;
use crate::pipeline::{Exit, NO_FILTERS, Prerendered};

/// The cache's name in `Cache-Status`.
pub(crate) const CACHE_NAME: &str = "ringress";

/// Sends `object` as the answer. False when the client is gone.
pub(crate) async fn serve<D: Downstream>(
    c: &mut D,
    req: &mut ReqState,
    config: &Config,
    object: &Rc<LocalObject>,
    (status, now): (CacheStatus, u64),
    close: bool,
) -> bool {
    let not_modified = client_has_it(&req.cache, object);
    render(
        c,
        req,
        config,
        object,
        (&status, now),
        (close, not_modified),
    );
    let head_only = not_modified || req.cache.is_head || !status_has_body(object.object.status);
    let record = c.record();
    record.exit = Exit::Cached;
    record.status = if not_modified {
        304
    } else {
        object.object.status
    };
    let body = (!head_only).then_some(&object.body);
    c.send_stored(body, config.timeouts.io).await
}

/// Answers a failed upstream exchange with the stale object kept for it,
/// when its `stale-if-error` allows. None when it does not apply.
pub(crate) async fn serve_stale_on_error<D: Downstream>(
    c: &mut D,
    req: &mut ReqState,
    config: &Config,
    error: &ProxyError,
    close: bool,
) -> Option<bool> {
    if error.side == crate::error::Side::Downstream || !stale_usable(&req.cache) {
        return None;
    }
    let stale = req.cache.stale.clone()?;
    c.record().fail(*error);
    c.record().cache = crate::pipeline::CacheResult::Stale;
    let now = now_secs();
    let ttl = stale.object.ttl(now);
    let status = CacheStatus::StaleIfError { ttl };
    Some(serve(c, req, config, &stale, (status, now), close).await)
}

/// Whether the object kept for this request may stand in for a failed
/// upstream (its stale-if-error window, the request's directives).
pub(crate) fn stale_usable(c: &CacheReq) -> bool {
    c.stale.as_ref().is_some_and(|s| {
        let age = s.object.age(now_secs());
        s.object.is_alive() && policy::usable_on_error(age, &s.object.life, &c.control)
    })
}

/// Whether the client's conditional request is satisfied by `object`.
fn client_has_it(c: &CacheReq, object: &LocalObject) -> bool {
    let o = &object.object;
    if o.status != 200 {
        return false;
    }
    let inm = c.noted(c.if_none_match);
    let ims = c.noted(c.if_modified_since);
    (inm.is_some() || ims.is_some())
        && policy::not_modified(inm, ims, o.etag.as_deref(), o.last_modified)
}

/// Has the client side render the stored head with the route's edits,
/// `Age` (as of `now`, Unix seconds) and `Cache-Status`.
fn render<D: Downstream>(
    c: &mut D,
    req: &mut ReqState,
    config: &Config,
    object: &LocalObject,
    (status, now): (&CacheStatus, u64),
    (close, not_modified): (bool, bool),
) {
    let o = &object.object;
    let route = c.record().route.unwrap_or(usize::MAX);
    let chain = config.chains.get(route).unwrap_or(&NO_FILTERS);
    let mut lines = std::mem::take(&mut req.rewrite_buf);
    lines.clear();
    let edits_heads = chain.edits_heads();
    if edits_heads {
        let client_ip = c.record().client_ip;
        let values = c.vars(config, route, client_ip, &req.host_buf);
        chain.response(&values).0.append(&mut lines);
    }
    let head = StoredHead {
        status: if not_modified { 304 } else { o.status },
        reason: if not_modified {
            b"Not Modified"
        } else {
            &o.reason
        },
        fields: &o.fields,
        length: (!not_modified && status_has_body(o.status)).then_some(o.body.len() as u64),
    };
    // The origin's own fields (`Server`, ...) are left out as the head is
    // written (`StoredEdits::drops`), so objects stored before a change of
    // `hide_headers` follow it.
    let text = std::mem::take(&mut c.record().text);
    let edits = StoredEdits {
        hiding: &config.origin_hiding,
        route: edits_heads.then(|| chain.response_with(&lines)),
        not_modified,
        age: o.age(now),
        status,
        request_id: (text.return_id && !text.request_id().is_empty()).then(|| text.request_id()),
    };
    c.render_stored(&head, close, &edits);
    c.record().text = text;
    req.rewrite_buf = lines;
}

/// The edits of an answer from the cache: the route's response edits,
/// the fields a 304 leaves out, `Age`, `Cache-Status` and the request id.
struct StoredEdits<'a> {
    hiding: &'a OriginHiding,
    route: Option<Prerendered<'a>>,
    not_modified: bool,
    age: u64,
    status: &'a CacheStatus,
    request_id: Option<&'a [u8]>,
}

impl FieldEdits for StoredEdits<'_> {
    fn drops(&self, name: &[u8]) -> bool {
        self.hiding.hides(name)
            || self.route.drops(name)
            || (self.not_modified && drop_on_304(name))
    }

    fn append(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"Age: ");
        out.extend_from_slice(itoa::Buffer::new().format(self.age).as_bytes());
        out.extend_from_slice(b"\r\n");
        policy::write_cache_status(out, CACHE_NAME, self.status);
        if !self.route.drops(b"server") {
            self.hiding.append_server(out);
        }
        self.route.append(out);
        if let Some(id) = self.request_id {
            write_field(out, b"X-Request-Id", id);
        }
    }
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

/// Writes the `Cache-Status` line of a request the cache refused, with
/// `detail` (a field line of a generated answer, see
/// `render_answer_with`).
pub(crate) fn write_refusal_status(out: &mut Vec<u8>, detail: &'static str) {
    let status = CacheStatus::Forward {
        fwd: crate::cache::policy::Fwd::Miss,
        status: None,
        stored: false,
        collapsed: false,
        detail: Some(detail),
    };
    policy::write_cache_status(out, CACHE_NAME, &status);
}
