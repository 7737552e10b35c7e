//! Reading the request filters: the `[[filters]]` rules (or the
//! top-level `filters = "default" | "rules" | "off"` switch when there are
//! none), `filters_mode`, and a route's own `filters` / `filters_mode`,
//! into one compiled `FilterSet` and each route's selection of it.

use std::sync::Arc;

use super::compile::each_table;
use super::suggest::{did_you_mean, not_one_of};
use super::walk::{Problems, TableReader};
use crate::pipeline::{
    DEFAULT_FILTERS, Filter, FilterAction, FilterEntry, FilterSet, RuleSpec, ValueMatch, WafRule,
    check_regex,
};

/// Which filters a route runs (`filters = ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Selection {
    /// The `[[filters]]` rules and the default set (`"default"`, `"on"`).
    Default,
    /// Only the `[[filters]]` rules.
    Rules,
    /// None.
    Off,
}

const SELECTIONS: [&str; 4] = ["default", "on", "rules", "off"];

impl Selection {
    fn read(t: &mut TableReader<'_>, p: &mut Problems) -> Option<Selection> {
        let s = t.str(p, "filters")?;
        match s {
            "default" | "on" => Some(Selection::Default),
            "rules" => Some(Selection::Rules),
            "off" => Some(Selection::Off),
            other => {
                p.add(t.key_path("filters"), not_one_of(other, &SELECTIONS));
                None
            }
        }
    }
}

/// `filters_mode = "enforce" | "log"`: true for log only.
fn log_only(t: &mut TableReader<'_>, p: &mut Problems) -> Option<bool> {
    match t.str(p, "filters_mode")? {
        "enforce" => Some(false),
        "log" => Some(true),
        other => {
            p.add(
                t.key_path("filters_mode"),
                not_one_of(other, &["enforce", "log"]),
            );
            None
        }
    }
}

/// The compiled rules and the top-level defaults routes inherit.
pub(super) struct Filters {
    pub set: Arc<FilterSet>,
    selection: Selection,
    log_only: bool,
}

/// Reads the top-level `filters` (rules or a switch) and `filters_mode`.
/// `table`: the whole file, for the route names rules may refer to.
pub(super) fn filters(
    root: &mut TableReader<'_>,
    p: &mut Problems,
    table: &toml::Table,
) -> Filters {
    let log_only = log_only(root, p).unwrap_or(false);
    let mut entries = Vec::new();
    let mut selection = Selection::Rules;
    if table.get("filters").is_some_and(toml::Value::is_str) {
        selection = Selection::read(root, p).unwrap_or(Selection::Rules);
    } else {
        let routes = route_names(table);
        let mut ids: Vec<String> = Vec::new();
        each_table(root, p, "filters", |t, p| {
            if t.has("include") {
                if include(t, p) {
                    selection = Selection::Default;
                    entries.push(FilterEntry::Defaults);
                }
            } else if let Some(rule) = rule(t, p, &routes, &mut ids) {
                entries.push(FilterEntry::Rule(Box::new(rule)));
            }
        });
    }
    let set = FilterSet::build(entries).unwrap_or_else(|e| {
        p.add(
            "filters",
            format!("the rules' regexes do not compile together: {e}"),
        );
        FilterSet::default()
    });
    Filters {
        set: Arc::new(set),
        selection,
        log_only,
    }
}

/// `[[filters]] include = "default"`: the default set, at this place in
/// the order.
fn include(t: &mut TableReader<'_>, p: &mut Problems) -> bool {
    match t.str(p, "include") {
        Some("default") => {}
        Some(other) => {
            p.add(t.key_path("include"), not_one_of(other, &["default"]));
            return false;
        }
        None => return false,
    }
    if t.keys().len() > 1 {
        p.add(&t.path, "an `include` entry has no other keys");
    }
    for key in t.keys() {
        // Read, so the walker does not report them again as unknown.
        let _ = t.raw(&key);
    }
    true
}

/// Every route's name as written (`route<N>` for one without), so a rule
/// can name a route that has a problem of its own without being reported
/// too.
fn route_names(table: &toml::Table) -> Vec<String> {
    let Some(routes) = table.get("routes").and_then(toml::Value::as_array) else {
        return Vec::new();
    };
    routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            r.get("name")
                .and_then(toml::Value::as_str)
                .map_or_else(|| format!("route{i}"), str::to_string)
        })
        .collect()
}

fn rule(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    routes: &[String],
    ids: &mut Vec<String>,
) -> Option<RuleSpec> {
    let errors = p.errors.len();
    let id = match t.str(p, "id") {
        Some(id) => check_id(t, p, id, ids),
        None => {
            if !t.has("id") {
                p.add(
                    t.key_path("id"),
                    "is required: the rule's name in the access log and metrics",
                );
            }
            None
        }
    };
    let action = match t.str(p, "action") {
        None => FilterAction::Deny,
        Some(s) => FilterAction::parse(s).unwrap_or_else(|| {
            p.add(t.key_path("action"), not_one_of(s, &FilterAction::NAMES));
            FilterAction::Deny
        }),
    };
    let status = t.int(p, "status", 400, 599).unwrap_or(403) as u16;
    if t.has("status") && action != FilterAction::Deny {
        p.add(t.key_path("status"), "only a `deny` rule answers");
    }
    let mut methods = Vec::new();
    for m in t.strings(p, "methods").unwrap_or_default() {
        if m.is_empty() || !m.bytes().all(crate::http::fields::is_tchar) {
            p.add(t.key_path("methods"), format!("`{m}` is not a method name"));
        }
        methods.push(m.to_ascii_uppercase().into_bytes());
    }
    let path = field(t, p, "path");
    let query = field(t, p, "query");
    let header = header(t, p);
    let body_over = t.table(p, "body_size").and_then(|mut b| {
        let over = b.size(p, "over");
        if !b.has("over") {
            p.add(b.key_path("over"), "missing: a size like \"1MiB\"");
        }
        b.finish(p);
        over
    });
    let rule_routes = rule_routes(t, p, routes);
    let conditions = !methods.is_empty()
        || path.is_some()
        || query.is_some()
        || header.is_some()
        || body_over.is_some();
    if !conditions && p.errors.len() == errors {
        p.add(
            &t.path,
            "a rule needs a condition: methods, path, query, header or body_size \
             (to refuse a whole route, give it `respond`)",
        );
    }
    (p.errors.len() == errors).then(|| RuleSpec {
        id: id.unwrap_or_default(),
        action,
        status,
        methods,
        path,
        query,
        header,
        body_over,
        routes: rule_routes,
    })
}

/// A rule id: unique, not one of the default set's, and plain enough for
/// a log field and a metric label.
fn check_id(
    t: &TableReader<'_>,
    p: &mut Problems,
    id: &str,
    ids: &mut Vec<String>,
) -> Option<String> {
    let path = t.key_path("id");
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:".contains(&b))
    {
        p.add(
            path,
            format!("`{id}` must be letters, digits and `-_./:` only"),
        );
        None
    } else if DEFAULT_FILTERS.iter().any(|(d, _)| *d == id) || id.starts_with("default/") {
        p.add(
            path,
            format!("`{id}`: ids starting with `default/` name the default set"),
        );
        None
    } else if ids.iter().any(|i| i == id) {
        p.add(path, format!("duplicate id `{id}`"));
        None
    } else {
        ids.push(id.to_string());
        Some(id.to_string())
    }
}

/// `path` / `query = { exact | prefix | regex = "..." }`.
fn field(t: &mut TableReader<'_>, p: &mut Problems, key: &str) -> Option<ValueMatch> {
    let mut f = t.table(p, key)?;
    let m = value_match(&mut f, p);
    if m.is_none() && !["exact", "prefix", "regex"].iter().any(|k| f.has(k)) {
        p.add(&f.path, "needs one of exact, prefix, regex");
    }
    f.finish(p);
    m
}

/// `header = { name = "User-Agent", exact | prefix | regex = "..." }`;
/// with only `name`, the header being there matches.
fn header(t: &mut TableReader<'_>, p: &mut Problems) -> Option<(Vec<u8>, Option<ValueMatch>)> {
    let mut h = t.table(p, "header")?;
    let name = h.str(p, "name");
    if !h.has("name") {
        p.add(h.key_path("name"), "missing: the header's name");
    }
    if let Some(n) = name
        && (n.is_empty() || !n.bytes().all(crate::http::fields::is_tchar))
    {
        p.add(h.key_path("name"), "is not a header field name");
    }
    let m = value_match(&mut h, p);
    h.finish(p);
    Some((name?.to_ascii_lowercase().into_bytes(), m))
}

/// The one comparison of a field table, if it has one.
fn value_match(f: &mut TableReader<'_>, p: &mut Problems) -> Option<ValueMatch> {
    let set: Vec<&str> = ["exact", "prefix", "regex"]
        .into_iter()
        .filter(|k| f.has(k))
        .collect();
    if set.len() > 1 {
        p.add(&f.path, "set one of exact, prefix, regex");
    }
    let exact = f.str(p, "exact").map(|s| ValueMatch::Exact(s.into()));
    let prefix = f.str(p, "prefix").map(|s| ValueMatch::Prefix(s.into()));
    let regex = f.str(p, "regex").and_then(|re| match check_regex(re) {
        Ok(()) => Some(ValueMatch::Regex(re.to_string())),
        Err(e) => {
            p.add(f.key_path("regex"), format!("bad regex: {e}"));
            None
        }
    });
    exact.or(prefix).or(regex)
}

/// A rule's `routes`: names of `[[routes]]` entries.
fn rule_routes(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    routes: &[String],
) -> Option<Vec<String>> {
    let names = t.strings(p, "routes")?;
    let path = t.key_path("routes");
    let mut out = Vec::new();
    for name in names {
        if routes.iter().any(|r| r == name) {
            out.push(name.to_string());
            continue;
        }
        let near = did_you_mean(name, routes.iter().map(String::as_str));
        p.add(
            path.clone(),
            match near {
                Some(near) => format!("no route named `{name}` (did you mean `{near}`?)"),
                None => format!("no route named `{name}`"),
            },
        );
    }
    Some(out)
}

/// A route's filter: the rules that apply to it (by its `filters`, the
/// top-level default, and each rule's `routes`), or None when none do.
pub(super) fn route_filter(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    route: &str,
    f: &Filters,
) -> Option<Filter> {
    let selection = Selection::read(t, p).unwrap_or(f.selection);
    let log_only = log_only(t, p).unwrap_or(f.log_only);
    if selection == Selection::Off {
        return None;
    }
    let rules: Vec<u16> = (f.set.rules.iter().enumerate())
        .filter(|(_, r)| match (&r.builtin, &r.routes) {
            (Some(_), _) => selection == Selection::Default,
            (None, Some(names)) => names.iter().any(|n| &**n == route),
            (None, None) => true,
        })
        .filter_map(|(i, _)| u16::try_from(i).ok())
        .collect();
    (!rules.is_empty()).then(|| Filter::Waf(WafRule::new(f.set.clone(), rules, log_only)))
}

/// A rule no route runs (its `routes` all have `filters = "off"`, or
/// every route does) is most likely a mistake.
pub(super) fn warn_unused(p: &mut Problems, set: &FilterSet, chains: &[crate::pipeline::Chain]) {
    let mut builtins = 0;
    for (i, rule) in set.rules.iter().enumerate() {
        if rule.builtin.is_some() {
            builtins += 1;
            continue;
        }
        if !chains.iter().any(|c| c.waf().is_some_and(|w| w.runs(i))) {
            // Its entry: the default set's five rules stand for one.
            let entry = i - builtins + usize::from(builtins > 0);
            p.warn(format!("filters[{entry}]"), "no route runs this rule");
        }
    }
}

#[cfg(test)]
#[path = "filters_tests.rs"]
mod tests;
