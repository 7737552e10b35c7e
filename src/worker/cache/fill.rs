//! Storing on the way back: the upstream's final head decides whether the
//! response is stored (RFC 9111 section 3, `policy::storable`), a 304 to
//! a revalidation refreshes the stored object, and the body relay keeps a
//! copy that becomes the object once the body is complete — or is let go
//! when it grows past the zone's `max_object`.

use std::rc::Rc;
use std::sync::Arc;

use super::super::coding::CodingEdits;
use super::{CacheReq, LocalObject, now_secs, request_value, zone_of};
use crate::cache::object::{Object, ObjectParts, VaryValue};
use crate::cache::policy::{
    self, CacheStatus, Fwd, Lifetime, NotStored, RequestFacts, ResponseFacts, Verdict, ZonePolicy,
};
use crate::cache::zone::Zone;
use crate::config::Config;
use crate::http::ResponseHead;
use crate::http::encode::{FieldLines, write_field};
use crate::http::fields::{is_hop_by_hop, trim_ows};
use crate::pipeline::{CacheResult, CacheRule};

use super::serve::CACHE_NAME;

/// A response to store once its body is complete.
pub(crate) struct Pending {
    status: u16,
    reason: Box<[u8]>,
    fields: Vec<u8>,
    vary: Vec<VaryValue>,
    etag: Option<Box<[u8]>>,
    last_modified: Option<u64>,
    response_time: u64,
    initial_age: u64,
    life: Lifetime,
    /// The zone's largest object.
    pub max_body: u64,
    /// Where it goes.
    zone: Arc<Zone>,
}

/// What the upstream's head means for the cache.
pub(crate) enum HeadOutcome {
    /// Relay it (stored or not, as `CacheReq::pending` says).
    Relay,
    /// A 304 to our revalidation: answer from the refreshed object.
    Refreshed(Rc<LocalObject>),
}

/// Decides on a final head: stores, refreshes, or lets it pass, and
/// writes its `Cache-Status` line into `lines`, which holds the coding's
/// lines (stored with the object) when `coding` is set.
pub(crate) fn on_response_head(
    c: &mut CacheReq,
    config: &Config,
    rule: &CacheRule,
    resp: &ResponseHead<'_, '_>,
    coding: Option<&CodingEdits>,
    lines: &mut Vec<u8>,
) -> HeadOutcome {
    let coding = coding.map(|edits| (edits, &lines[..]));
    let now = now_secs();
    let Some(zone_config) = config.caches.get(rule.zone) else {
        return HeadOutcome::Relay;
    };
    let facts = ResponseFacts::from_headers(resp.status, resp.headers);
    if resp.status == 304
        && let Some(stale) = c.stale.take()
    {
        return refresh(c, config, &stale, &facts, resp, now);
    }
    if !c.background {
        c.result = if c.stale.is_some() {
            CacheResult::Expired
        } else {
            CacheResult::Miss
        };
    }
    let request = RequestFacts {
        method_get: !c.is_head,
        control: c.control,
        authorization: c.authorization,
    };
    let zone = ZonePolicy {
        default_ttl: zone_config.default_ttl,
        ttl: &rule.ttl,
        store_set_cookie: zone_config.store_set_cookie,
    };
    let verdict = policy::storable(&request, &facts, &zone, now);
    let stored = match verdict {
        Verdict::Store(life) if fits(resp, zone_config.max_object) => {
            match zone_of(config, c.zone) {
                Some(zone) => {
                    let initial_age = policy::initial_age(&facts, c.request_time, now);
                    let mut p = pending(c, resp, &facts, coding, life, (now, initial_age), zone);
                    p.max_body = zone_config.max_object;
                    c.pending = Some(p);
                    true
                }
                None => false,
            }
        }
        _ => false,
    };
    // A response that says it cannot be stored makes the key pass, so
    // the next requests for it do not queue behind one another; what
    // depends on this request alone (its method, its no-store, its
    // credentials) does not.
    c.uncacheable = matches!(
        verdict,
        Verdict::Skip(
            NotStored::NoStore
                | NotStored::Private
                | NotStored::SetCookie
                | NotStored::VaryStar
                | NotStored::NoFreshness
                | NotStored::Status
        )
    );
    let detail = match verdict {
        Verdict::Skip(why) => Some(why.as_str()),
        Verdict::Store(_) if !stored => Some("too-large"),
        Verdict::Store(_) => None,
    };
    let status = CacheStatus::Forward {
        fwd: c.fwd,
        status: (c.fwd != Fwd::Miss).then_some(resp.status),
        stored,
        collapsed: false,
        detail,
    };
    policy::write_cache_status(lines, CACHE_NAME, &status);
    HeadOutcome::Relay
}

/// A body known to be larger than the zone's objects is not kept.
fn fits(resp: &ResponseHead<'_, '_>, max_object: u64) -> bool {
    resp.content_length.is_none_or(|n| n <= max_object)
}

/// The parts of the object-to-be that the head gives.
fn pending(
    c: &CacheReq,
    resp: &ResponseHead<'_, '_>,
    facts: &ResponseFacts<'_>,
    coding: Option<(&CodingEdits, &[u8])>,
    life: Lifetime,
    (now, initial_age): (u64, u64),
    zone: &Arc<Zone>,
) -> Pending {
    let mut fields = Vec::with_capacity(resp.head_len);
    for h in resp.headers {
        let name = h.name.as_bytes();
        let replaced = coding.is_some_and(|(e, _)| {
            (e.drop_etag && name.eq_ignore_ascii_case(b"etag"))
                || (e.drop_vary && name.eq_ignore_ascii_case(b"vary"))
        });
        if is_hop_by_hop(name)
            || resp.connection.names(name)
            || replaced
            || name.eq_ignore_ascii_case(b"age")
        {
            continue;
        }
        write_field(&mut fields, name, trim_ows(h.value));
    }
    if let Some((_, lines)) = coding {
        fields.extend_from_slice(lines);
    }
    let mut vary = Vec::new();
    for name in policy::vary_names(resp.headers) {
        let name = name.to_ascii_lowercase();
        if !vary.iter().any(|(n, _): &VaryValue| n[..] == name[..]) {
            let value = request_value(c, &name).into();
            vary.push((name.into_boxed_slice(), value));
        }
    }
    if c.varies_on_coding
        && !vary.iter().any(|(n, _)| &n[..] == b"accept-encoding")
        && coding.is_some()
    {
        vary.push((
            b"accept-encoding"[..].into(),
            request_value(c, b"accept-encoding").into(),
        ));
    }
    Pending {
        status: resp.status,
        reason: resp.reason.into(),
        fields,
        vary,
        etag: facts
            .etag
            .map(|e| weak_if(coding.is_some_and(|(e, _)| e.drop_etag), e)),
        last_modified: facts.last_modified,
        response_time: now,
        initial_age,
        life,
        max_body: u64::MAX,
        zone: zone.clone(),
    }
}

fn weak_if(weak: bool, tag: &[u8]) -> Box<[u8]> {
    if weak {
        [&b"W/"[..], tag].concat().into_boxed_slice()
    } else {
        tag.into()
    }
}

/// A 304 answered our revalidation: the stored object, with the 304's
/// caching fields and a new age, stored again and served.
fn refresh(
    c: &mut CacheReq,
    config: &Config,
    stale: &Rc<LocalObject>,
    facts: &ResponseFacts<'_>,
    resp: &ResponseHead<'_, '_>,
    now: u64,
) -> HeadOutcome {
    let old = &stale.object;
    const UPDATED: [&[u8]; 5] = [
        b"cache-control",
        b"expires",
        b"date",
        b"etag",
        b"last-modified",
    ];
    let mut fields = Vec::with_capacity(old.fields.text().len());
    let updated = |name: &[u8]| {
        UPDATED.iter().any(|u| u.eq_ignore_ascii_case(name))
            && resp
                .headers
                .iter()
                .any(|h| h.name.as_bytes().eq_ignore_ascii_case(name))
    };
    for (name, line) in old.fields.lines() {
        if !updated(name) {
            fields.extend_from_slice(line);
        }
    }
    for h in resp.headers.iter().filter(|h| updated(h.name.as_bytes())) {
        write_field(&mut fields, h.name.as_bytes(), trim_ows(h.value));
    }
    let life = policy::explicit_lifetime(facts, now).unwrap_or(old.life);
    let object = Arc::new(Object::new(ObjectParts {
        status: old.status,
        reason: old.reason.clone(),
        fields: FieldLines::new(fields),
        body: old.body.clone(),
        vary: old.vary.clone(),
        etag: facts.etag.map(Into::into).or_else(|| old.etag.clone()),
        last_modified: facts.last_modified.or(old.last_modified),
        response_time: now,
        initial_age: policy::initial_age(facts, c.request_time, now),
        life,
    }));
    let Some(zone) = zone_of(config, c.zone) else {
        return HeadOutcome::Relay;
    };
    if c.filling {
        c.filling = false;
        zone.complete(c.hash, &c.key, Some(object.clone()), None);
    } else {
        zone.put(c.hash, &c.key, object.clone());
    }
    let local = Rc::new(LocalObject::new(object));
    HeadOutcome::Refreshed(local)
}

/// Keeps a piece of the body as the client gets it; past the zone's
/// largest object the copy is let go (the client does not notice).
pub(crate) fn keep(c: &mut CacheReq, data: &[u8]) {
    let Some(p) = &c.pending else {
        return;
    };
    if (c.body.len() + data.len()) as u64 > p.max_body {
        c.pending = None;
        c.body = Vec::new();
        return;
    }
    c.body.extend_from_slice(data);
}

/// The body is complete: the object is stored and the waiters woken —
/// before the body's last bytes are written, so a request the client
/// sends once it has them finds the object.
pub(crate) fn finish_body(c: &mut CacheReq) {
    let Some(p) = c.pending.take() else {
        return;
    };
    let body = std::mem::take(&mut c.body);
    let object = Arc::new(Object::new(ObjectParts {
        status: p.status,
        reason: p.reason,
        fields: FieldLines::new(p.fields),
        body: Arc::new(body),
        vary: p.vary.into_boxed_slice(),
        etag: p.etag,
        last_modified: p.last_modified,
        response_time: p.response_time,
        initial_age: p.initial_age,
        life: p.life,
    }));
    let zone = p.zone;
    if c.filling {
        c.filling = false;
        zone.complete(c.hash, &c.key, Some(object), None);
    } else {
        zone.put(c.hash, &c.key, object);
    }
}

/// A stored response without a body (204, HEAD-less 304s are not stored).
pub(crate) fn store_empty(c: &mut CacheReq) {
    c.body.clear();
    finish_body(c);
}
