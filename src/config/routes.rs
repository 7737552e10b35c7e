//! Reading `[[routes]]`: matchers, limits and the one action of each
//! route, with every reference (listener, upstream) checked against the
//! names in the file, so a listener or group with a problem of its own is
//! not reported again by every route naming it.

use std::path::Path;
use std::sync::Arc;

use super::cache::CacheZone;
use super::compile::each_table;
use super::suggest::did_you_mean;
use super::walk::{Problems, TableReader};
use crate::limit::RateLimit;
use crate::pipeline::{Chain, Filter, HeaderEdits, RateLimitRule, Template};

/// The compiled limits and every declared limit's name.
type Limits<'a> = (&'a [RateLimit], &'a [String]);
use crate::router::{
    Action, EscapedSlashes, HeaderMatch, HostMatch, PathMatch, PathRewrite, Redirect, Respond,
    Route, RouteTable,
};

pub(super) fn routes(
    root: &mut TableReader<'_>,
    p: &mut Problems,
    listeners: &[String],
    upstreams: &[String],
    (default_body_limit, base): (u64, &Path),
    (zones, limits): (&[CacheZone], Limits<'_>),
    filters: &super::filters::Filters,
) -> (RouteTable, Vec<Chain>) {
    let mut out = Vec::new();
    let mut chains = Vec::new();
    let escaped = escaped_slashes(root, p);
    let pages = super::pages::error_pages(root, p, base, &Arc::default());
    each_table(root, p, "routes", |t, p| {
        let index = out.len();
        if let Some((mut r, chain)) = route(
            t,
            p,
            index,
            (listeners, upstreams, zones),
            (default_body_limit, limits, base),
            filters,
        ) {
            r.escaped_slashes = escaped_slashes(t, p)
                .or(escaped)
                .unwrap_or_else(|| safe_escaped_slashes(&r, &chain));
            r.error_pages = super::pages::error_pages(t, p, base, &pages);
            out.push(r);
            chains.push(chain);
        }
    });
    let table = RouteTable {
        routes: out,
        escaped_slashes: escaped.unwrap_or_default(),
        error_pages: pages,
    };
    (table, chains)
}

/// `path_escaped_slashes = "reject" | "decode" | "keep"`, if set.
fn escaped_slashes(t: &mut TableReader<'_>, p: &mut Problems) -> Option<EscapedSlashes> {
    let value = t.str(p, "path_escaped_slashes")?;
    let mode = EscapedSlashes::parse(value);
    if mode.is_none() {
        p.add(
            t.key_path("path_escaped_slashes"),
            super::suggest::not_one_of(value, &EscapedSlashes::NAMES),
        );
    }
    mode
}

/// A route's `path_escaped_slashes` when none is configured: a route
/// that carries access rules (a fixed answer, which is how a path is
/// blocked, or request-phase filters) refuses `/admin%2Fsecret` rather
/// than let an upstream decode its way past them; others keep the path
/// as sent (APIs that carry `a%2Fb` in one segment keep working).
fn safe_escaped_slashes(route: &Route, chain: &Chain) -> EscapedSlashes {
    if matches!(route.action, Action::Respond(_)) || chain.guards_requests() {
        EscapedSlashes::Reject
    } else {
        EscapedSlashes::Keep
    }
}

/// Reads one `[[routes]]` entry: its matchers, filter chain, limits and
/// action; `None` when a reference or matcher is wrong or no action works
/// (the problems are in `p`).
fn route(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    index: usize,
    (listeners, upstreams, zones): (&[String], &[String], &[CacheZone]),
    (default_body_limit, limits, base): (u64, Limits<'_>, &Path),
    filters: &super::filters::Filters,
) -> Option<(Route, Chain)> {
    let name = t
        .str(p, "name")
        .map_or_else(|| format!("route{index}"), str::to_string);
    let listener_ids = listener_ids(t, p, listeners);
    let hosts = hosts(t, p);
    let path = path_match(t, p);
    let methods = methods(t, p);
    let headers = header_matches(t, p);
    let query = query_matches(t, p);
    let chain = chain(t, p, (zones, limits), base, (&name, filters));
    let max_body_size = t.size(p, "max_body_size").unwrap_or(default_body_limit);
    let access_log = t.bool(p, "access_log").unwrap_or(true);
    let action = action(t, p, path.as_ref(), upstreams);
    let (Some(listener_ids), Some(hosts), Some(path), Some(methods), Some(action)) =
        (listener_ids, hosts, path, methods, action)
    else {
        return None;
    };
    let route = Route {
        name,
        listeners: listener_ids,
        hosts,
        path,
        methods,
        headers,
        query,
        max_body_size,
        access_log,
        escaped_slashes: EscapedSlashes::Keep,
        error_pages: Arc::default(),
        action,
    };
    Some((route, chain))
}

/// `listeners`: the index of each listener named; `None` when one is not
/// defined (each such name is reported).
fn listener_ids(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    listeners: &[String],
) -> Option<Vec<usize>> {
    let mut ok = true;
    let mut ids = Vec::new();
    for l in t.strings(p, "listeners").unwrap_or_default() {
        match listeners.iter().position(|x| x == l) {
            Some(i) => ids.push(i),
            None => {
                p.add(t.key_path("listeners"), format!("no listener named `{l}`"));
                ok = false;
            }
        }
    }
    ok.then_some(ids)
}

/// `host`: the host patterns (any host when unset); `None` when one does
/// not parse (each is reported).
fn hosts(t: &mut TableReader<'_>, p: &mut Problems) -> Option<Vec<HostMatch>> {
    let mut ok = true;
    let mut hosts = Vec::new();
    for h in t.strings(p, "host").unwrap_or_else(|| vec!["*"]) {
        match HostMatch::parse(h) {
            Ok(m) => hosts.push(m),
            Err(m) => {
                p.add(t.key_path("host"), m);
                ok = false;
            }
        }
    }
    ok.then_some(hosts)
}

/// `path_prefix` or `path_exact` (at most one; `/` as a prefix when
/// neither is set).
fn path_match(t: &mut TableReader<'_>, p: &mut Problems) -> Option<PathMatch> {
    match (t.str(p, "path_prefix"), t.str(p, "path_exact")) {
        (Some(_), Some(_)) => {
            p.add(
                t.key_path("path_exact"),
                "set path_prefix or path_exact, not both",
            );
            None
        }
        (Some(s), None) => check_path(s, &t.key_path("path_prefix"), p).map(PathMatch::Prefix),
        (None, Some(s)) => check_path(s, &t.key_path("path_exact"), p).map(PathMatch::Exact),
        (None, None) => Some(PathMatch::Prefix(b"/".to_vec())),
    }
}

/// `methods`, upper-cased; `None` when one is not a method name (each is
/// reported).
fn methods(t: &mut TableReader<'_>, p: &mut Problems) -> Option<Vec<Vec<u8>>> {
    let mut ok = true;
    let mut methods = Vec::new();
    for m in t.strings(p, "methods").unwrap_or_default() {
        if m.is_empty() || !m.bytes().all(crate::http::fields::is_tchar) {
            p.add(t.key_path("methods"), format!("`{m}` is not a method name"));
            ok = false;
        }
        methods.push(m.to_ascii_uppercase().into_bytes());
    }
    ok.then_some(methods)
}

/// `headers = { NAME = VALUE }` then `header_present = [NAME]`: the request
/// fields a route matches on, names lower-cased.
fn header_matches(t: &mut TableReader<'_>, p: &mut Problems) -> Vec<HeaderMatch> {
    let mut headers = Vec::new();
    if let Some(mut h) = t.table(p, "headers") {
        for key in h.keys() {
            if key.is_empty() || !key.bytes().all(crate::http::fields::is_tchar) {
                p.add(h.key_path(&key), "is not a header field name");
            }
            let value = h.str(p, &key).map(|v| v.as_bytes().to_vec());
            headers.push(HeaderMatch {
                name: key.to_ascii_lowercase().into_bytes(),
                value,
            });
        }
        h.finish(p);
    }
    for name in t.strings(p, "header_present").unwrap_or_default() {
        headers.push(HeaderMatch {
            name: name.to_ascii_lowercase().into_bytes(),
            value: None,
        });
    }
    headers
}

/// `query = { NAME = VALUE }` then `query_present = [NAME]`: the query
/// parameters a route matches on, names as written.
fn query_matches(t: &mut TableReader<'_>, p: &mut Problems) -> Vec<HeaderMatch> {
    let mut query = Vec::new();
    if let Some(mut q) = t.table(p, "query") {
        for key in q.keys() {
            let value = q.str(p, &key).map(|v| v.as_bytes().to_vec());
            query.push(HeaderMatch {
                name: key.into_bytes(),
                value,
            });
        }
        q.finish(p);
    }
    for name in t.strings(p, "query_present").unwrap_or_default() {
        query.push(HeaderMatch {
            name: name.as_bytes().to_vec(),
            value: None,
        });
    }
    query
}

/// The route's filter chain, in phase order: the address list first (a
/// lookup), then the request filter rules, then the rate limits (a request
/// refused before them spends no tokens), then auth — as nginx runs
/// `limit_req` before `auth_basic`, so a flood of guessed passwords is
/// refused at the limit instead of costing a password hash each — then
/// the request's header edits, then the response's.
fn chain(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    (zones, limits): (&[CacheZone], Limits<'_>),
    base: &Path,
    (name, waf): (&str, &super::filters::Filters),
) -> Chain {
    let mut filters = Vec::new();
    let access = super::access::ip_access(t, p);
    if !access.is_empty() {
        filters.push(Filter::Access(access));
    }
    filters.extend(super::filters::route_filter(t, p, name, waf));
    let rate_limits = super::limits::route_limits(t, p, limits);
    if !rate_limits.is_empty() {
        filters.push(Filter::RateLimit(RateLimitRule::new(rate_limits)));
    }
    if let Some(rule) = super::auth::auth_rule(t, p, base) {
        filters.push(Filter::Auth(rule));
    }
    if let Some(rule) = super::cache::cache_rule(t, p, zones) {
        filters.push(Filter::Cache(rule));
    }
    if let Some(rule) = super::cache::compress_rule(t, p) {
        filters.push(Filter::Compress(rule));
    }
    let request = header_edits(t, p, "request_headers");
    if !request.is_empty() {
        filters.push(Filter::RequestHeaders(request));
    }
    let response = header_edits(t, p, "response_headers");
    if !response.is_empty() {
        filters.push(Filter::ResponseHeaders(response));
    }
    Chain::new(filters)
}

/// `request_headers` / `response_headers`: `{ set = { NAME = VALUE },
/// add = { NAME = VALUE }, remove = [NAME] }`. Framing and hop-by-hop
/// fields stay the proxy's to write.
fn header_edits(t: &mut TableReader<'_>, p: &mut Problems, key: &str) -> HeaderEdits {
    let mut edits = HeaderEdits::default();
    let Some(mut h) = t.table(p, key) else {
        return edits;
    };
    let check_name = |name: &str, path: String, p: &mut Problems| {
        let lower = name.to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(crate::http::fields::is_tchar) {
            p.add(path, "is not a header field name");
            false
        } else if crate::http::fields::is_hop_by_hop(lower.as_bytes())
            || ["content-length", "transfer-encoding", "host", "upgrade"].contains(&lower.as_str())
        {
            p.add(
                path,
                format!("`{name}` is managed by the proxy and cannot be edited"),
            );
            false
        } else {
            true
        }
    };
    for name in h.strings(p, "remove").unwrap_or_default() {
        if check_name(name, h.key_path("remove"), p) {
            edits.drop.push(name.to_ascii_lowercase().into_bytes());
        }
    }
    for (op, replaces) in [("set", true), ("add", false)] {
        let Some(mut fields) = h.table(p, op) else {
            continue;
        };
        for name in fields.keys() {
            let path = fields.key_path(&name);
            let Some(value) = fields.str(p, &name) else {
                continue;
            };
            if !check_name(&name, path.clone(), p) {
                continue;
            }
            if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                p.add(path, "must not contain control characters");
                continue;
            }
            match Template::parse(value.trim()) {
                Ok(parsed) => {
                    if let Some(warning) = stray_dollar(value) {
                        p.warn(path, warning);
                    }
                    edits.push(&name, &parsed, replaces)
                }
                Err(e) => p.add(path, e),
            }
        }
        fields.finish(p);
    }
    h.finish(p);
    edits
}

/// What is wrong with a `$` in a header value that the template keeps as
/// text: one that starts no variable name (`$5`, a trailing `$`, `${}`)
/// is more likely a typo than meant, and `$$` says a literal `$` plainly.
fn stray_dollar(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        let rest = &value[i + 1..];
        if rest.starts_with('$') {
            i += 2;
            continue;
        }
        let name = match rest.strip_prefix('{') {
            Some(braced) => braced.split('}').next().unwrap_or(""),
            None => rest,
        };
        if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            let what = if rest.starts_with('{') {
                format!("`${{{name}}}` is not a variable")
            } else if rest.is_empty() {
                "a `$` at the end is not a variable".to_string()
            } else {
                let next: String = rest.chars().take(1).collect();
                format!("`${next}` is not a variable")
            };
            return Some(format!(
                "{what}, so it is sent as written (variables start with a letter; write `$$` for a `$`)"
            ));
        }
        i += 1;
    }
    None
}

fn check_path(s: &str, key: &str, p: &mut Problems) -> Option<Vec<u8>> {
    let mut scratch = Vec::new();
    match crate::http::path::normalize(s.as_bytes(), &mut scratch) {
        Ok(n) if s.starts_with('/') && n == s.as_bytes() => Some(n.to_vec()),
        _ => {
            p.add(
                key,
                format!("`{s}` must be a normalised path starting with `/`"),
            );
            None
        }
    }
}

/// `rewrite = { regex = "^/old/(.*)$", to = "/new/$1" }`.
fn regex_rewrite(t: &mut TableReader<'_>, p: &mut Problems) -> Option<PathRewrite> {
    let mut r = t.table(p, "rewrite")?;
    let regex = r.str(p, "regex").and_then(|re| {
        match regex::bytes::RegexBuilder::new(re)
            .size_limit(1 << 20)
            .build()
        {
            Ok(re) => Some(re),
            Err(e) => {
                p.add(r.key_path("regex"), format!("bad regex: {e}"));
                None
            }
        }
    });
    let to = r.str(p, "to");
    if to.is_some_and(|to| {
        to.bytes()
            .any(|b| b <= b' ' || b == 0x7f || b == b'#' || b == b'?')
    }) {
        p.add(
            r.key_path("to"),
            "must be a path without spaces, `?` or `#`",
        );
    }
    for key in ["regex", "to"] {
        if !r.has(key) {
            p.add(r.key_path(key), "missing");
        }
    }
    r.finish(p);
    Some(PathRewrite::Regex {
        regex: regex?,
        to: to?.as_bytes().to_vec(),
    })
}

/// Reads the route's one action (`upstream`, `redirect` or `respond`) and
/// the path rewrite that goes with `upstream`; `None` unless exactly one
/// action is set and it is valid.
fn action(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    path: Option<&PathMatch>,
    upstreams: &[String],
) -> Option<Action> {
    let chosen = action_count(t, p);
    let rewrite = path_rewrite(t, p, path);
    let proxy = proxy_action(t, p, path, upstreams, rewrite);
    let redirect = redirect_action(t, p);
    let respond = respond_action(t, p);
    // At most one of these is `Some` when exactly one action key is set.
    if chosen == 1 {
        respond.or(redirect).or(proxy)
    } else {
        None
    }
}

/// How many of the action keys are set; anything but one is reported
/// unless a misspelt action key will be.
fn action_count(t: &TableReader<'_>, p: &mut Problems) -> usize {
    const ACTIONS: [&str; 3] = ["upstream", "redirect", "respond"];
    let chosen = ACTIONS.into_iter().filter(|k| t.has(k)).count();
    // A misspelt action is reported as an unknown key with the action
    // suggested; "needs an action" would say the same thing again.
    let misspelt = t
        .keys()
        .iter()
        .any(|k| !ACTIONS.contains(&k.as_str()) && did_you_mean(k, ACTIONS.into_iter()).is_some());
    if chosen > 1 || (chosen == 0 && !misspelt) {
        p.add(
            &t.path,
            "needs exactly one action: upstream, redirect or respond",
        );
    }
    chosen
}

/// The path-rewrite keys of a route, as read (checked by `path_rewrite`).
struct RewriteKeys<'a> {
    /// `strip_prefix`.
    strip: bool,
    /// `rewrite_prefix`.
    prefix: Option<&'a str>,
    /// `rewrite = { regex, to }`.
    regex: Option<PathRewrite>,
}

/// Reads `strip_prefix`, `rewrite_prefix` and `rewrite`, and checks that
/// at most one is set, on an upstream route, with what it needs.
fn path_rewrite<'a>(
    t: &mut TableReader<'a>,
    p: &mut Problems,
    path: Option<&PathMatch>,
) -> RewriteKeys<'a> {
    let strip = t.bool(p, "strip_prefix").unwrap_or(false);
    let rewrite = t.str(p, "rewrite_prefix");
    let regex_rewrite = regex_rewrite(t, p);
    if regex_rewrite.is_some() && (strip || rewrite.is_some()) {
        p.add(
            t.key_path("rewrite"),
            "set one of strip_prefix, rewrite_prefix, rewrite",
        );
    }
    if regex_rewrite.is_some() && !t.has("upstream") {
        p.add(
            t.key_path("rewrite"),
            "path rewrites only apply to upstream routes",
        );
    }
    if let Some(r) = rewrite
        && (!r.starts_with('/')
            || !r
                .bytes()
                .all(|b| (0x21..0x7f).contains(&b) && !b"?#\\".contains(&b)))
    {
        p.add(
            t.key_path("rewrite_prefix"),
            "must be a path starting with `/`, without spaces, `?` or `#`",
        );
    }
    if (strip || rewrite.is_some()) && !matches!(path, Some(PathMatch::Prefix(_))) {
        p.add(
            t.key_path("strip_prefix"),
            "strip_prefix and rewrite_prefix need path_prefix",
        );
    }
    if strip && rewrite.is_some() {
        p.add(
            t.key_path("rewrite_prefix"),
            "set strip_prefix or rewrite_prefix, not both",
        );
    }
    if (strip || rewrite.is_some()) && !t.has("upstream") {
        p.add(
            t.key_path("strip_prefix"),
            "path rewrites only apply to upstream routes",
        );
    }
    RewriteKeys {
        strip,
        prefix: rewrite,
        regex: regex_rewrite,
    }
}

/// `upstream = "NAME"`: proxy to that group, with the route's rewrite.
fn proxy_action(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    path: Option<&PathMatch>,
    upstreams: &[String],
    rewrite: RewriteKeys<'_>,
) -> Option<Action> {
    let name = t.str(p, "upstream")?;
    let Some(upstream) = upstreams.iter().position(|u| u == name) else {
        p.add(
            t.key_path("upstream"),
            format!("no upstream named `{name}` (define [upstreams.{name}])"),
        );
        return None;
    };
    let rewrite = match (path, rewrite.strip, rewrite.prefix) {
        (Some(PathMatch::Prefix(m)), true, _) => PathRewrite::Prefix {
            matched: m.clone(),
            replacement: Vec::new(),
        },
        (Some(PathMatch::Prefix(m)), _, Some(r)) => PathRewrite::Prefix {
            matched: m.clone(),
            replacement: r.as_bytes().to_vec(),
        },
        _ => rewrite.regex.unwrap_or(PathRewrite::None),
    };
    Some(Action::Proxy { upstream, rewrite })
}

/// `redirect = { status, to }`.
fn redirect_action(t: &mut TableReader<'_>, p: &mut Problems) -> Option<Action> {
    let mut r = t.table(p, "redirect")?;
    let status = r.int(p, "status", 0, 999).unwrap_or(302) as u16;
    if ![301, 302, 303, 307, 308].contains(&status) {
        p.add(
            r.key_path("status"),
            format!("{status} is not a redirect status (301, 302, 303, 307, 308)"),
        );
    }
    let mut action = None;
    match r.str(p, "to") {
        Some(to) if !to.is_empty() && !to.bytes().any(|b| b.is_ascii_control() || b == b' ') => {
            action = Some(Action::Redirect(Redirect {
                status,
                to: to.as_bytes().to_vec(),
            }));
        }
        _ => p.add(
            r.key_path("to"),
            "needs a target URL without spaces or control characters",
        ),
    }
    r.finish(p);
    action
}

/// `respond = { status, body, content_type }`: a fixed answer.
fn respond_action(t: &mut TableReader<'_>, p: &mut Problems) -> Option<Action> {
    let mut r = t.table(p, "respond")?;
    let status = r.int(p, "status", 200, 599).unwrap_or(200) as u16;
    let body = r.str(p, "body").unwrap_or("");
    if (status == 204 || status == 304) && !body.is_empty() {
        p.add(
            r.key_path("body"),
            format!("a {status} response has no body"),
        );
    }
    let content_type = r
        .str(p, "content_type")
        .unwrap_or("text/plain; charset=utf-8");
    if content_type.bytes().any(|b| b.is_ascii_control()) {
        p.add(
            r.key_path("content_type"),
            "must not contain control characters",
        );
    }
    let action = Action::Respond(Respond::new(status, body.as_bytes(), content_type));
    r.finish(p);
    Some(action)
}
