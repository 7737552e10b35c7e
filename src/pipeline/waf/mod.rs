//! The request filter (WAF-lite): the `[[filters]]` rules and the
//! default set, compiled once per config into one `FilterSet`, and a
//! route's selection of them (`WafRule`) checked in the request phase.
//! Pure policy: no I/O. A worker lends its `FilterScratch` (regex caches
//! and match sets), so a warm check allocates nothing and takes no lock.
//!
//! Regex conditions are grouped by the field they look at (the path, the
//! query, each header name): one multi-pattern regex per field, run at
//! most once per request and only when a rule that needs it is reached
//! with its other conditions matched.

mod defaults;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use regex_automata::meta::{self, Regex};
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, PatternID, PatternSet};

pub use defaults::{Builtin, DEFAULTS};

use super::{Record, RequestPhase};
use crate::error::{ErrorKind, ProxyError};
use crate::http::fields::trim_ows;
use crate::http::{Framing, RequestHead};

/// What a matching rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FilterAction {
    /// Answer with the rule's status; nothing goes upstream.
    #[default]
    Deny,
    /// Let the request through without looking at later rules.
    Allow,
    /// Note the match (log, metric) and go on.
    Log,
}

impl FilterAction {
    pub const NAMES: [&'static str; 3] = ["deny", "allow", "log"];

    pub fn parse(s: &str) -> Option<FilterAction> {
        match s {
            "deny" => Some(FilterAction::Deny),
            "allow" => Some(FilterAction::Allow),
            "log" => Some(FilterAction::Log),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// How a value is compared, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueMatch {
    Exact(Vec<u8>),
    Prefix(Vec<u8>),
    /// Unanchored, on bytes (`(?i)` for case-insensitive).
    Regex(String),
}

/// The field a regex group runs over.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    /// The normalised path the request was routed by.
    Path,
    /// The query as sent, without its `?`.
    Query,
    /// Every value of this header (lowercase name), trimmed.
    Header(Box<[u8]>),
}

/// A compiled comparison.
#[derive(Debug, Clone)]
enum Cond {
    Exact(Box<[u8]>),
    Prefix(Box<[u8]>),
    /// Pattern `pattern` of regex group `group`.
    Regex {
        group: usize,
        pattern: usize,
    },
    /// The header is there (any value).
    Present,
}

/// One `[[filters]]` entry as read from the config.
#[derive(Debug, Clone, Default)]
pub struct RuleSpec {
    pub id: String,
    pub action: FilterAction,
    pub status: u16,
    /// Uppercase; empty: any method.
    pub methods: Vec<Vec<u8>>,
    pub path: Option<ValueMatch>,
    pub query: Option<ValueMatch>,
    /// Lowercase name, and how its value is compared (None: present).
    pub header: Option<(Vec<u8>, Option<ValueMatch>)>,
    /// Matches a declared `Content-Length` over this.
    pub body_over: Option<u64>,
    /// Route names the rule is limited to; None: every route.
    pub routes: Option<Vec<String>>,
}

/// A rule of the compiled set.
#[derive(Debug, Clone)]
pub struct Rule {
    pub id: Box<str>,
    pub action: FilterAction,
    pub status: u16,
    pub routes: Option<Box<[Box<str>]>>,
    /// One of the default set.
    pub builtin: Option<Builtin>,
    methods: Box<[Box<[u8]>]>,
    path: Option<Cond>,
    query: Option<Cond>,
    header: Option<(Box<[u8]>, Cond)>,
    body_over: Option<u64>,
}

#[derive(Debug)]
struct RegexGroup {
    field: Field,
    regex: Regex,
}

/// Every rule of a config (the `[[filters]]` entries in file order, the
/// default set where it was included or else after them), compiled.
#[derive(Debug)]
pub struct FilterSet {
    /// Tells worker scratch built for another set apart.
    id: u64,
    pub rules: Vec<Rule>,
    groups: Vec<RegexGroup>,
}

impl Default for FilterSet {
    fn default() -> FilterSet {
        FilterSet::build(Vec::new()).expect("an empty set compiles")
    }
}

/// One entry of the set being built.
pub enum Entry {
    Rule(Box<RuleSpec>),
    /// The default set, at this place in the order.
    Defaults,
}

/// NFA bytes a regex may compile to alone (as a route's `rewrite`), and
/// a field's regexes together.
const REGEX_SIZE: usize = 1 << 20;
const GROUP_SIZE: usize = 16 << 20;

/// A regex as the filters compile it: bytes, unanchored, all matches
/// reported (overlapping), at most `size` bytes of NFA.
fn regex_builder(size: usize) -> meta::Builder {
    let mut b = Regex::builder();
    b.syntax(syntax::Config::new().utf8(false)).configure(
        Regex::config()
            .match_kind(MatchKind::All)
            .utf8_empty(false)
            .nfa_size_limit(Some(size)),
    );
    b
}

/// Checks one regex alone, for the config's message (the `regex`
/// crate's, which shows where the pattern goes wrong).
pub fn check_regex(pattern: &str) -> Result<(), String> {
    regex::bytes::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE)
        .build()
        .map(drop)
        .map_err(|e| e.to_string())?;
    regex_builder(REGEX_SIZE)
        .build(pattern)
        .map(drop)
        .map_err(|e| e.to_string())
}

impl FilterSet {
    /// Compiles `entries`; the default set goes last unless placed. Err:
    /// a regex group that does not compile (each regex was checked alone
    /// with `check_regex` first, so: too large together).
    pub fn build(entries: Vec<Entry>) -> Result<FilterSet, String> {
        static IDS: AtomicU64 = AtomicU64::new(1);
        let mut patterns: Vec<(Field, Vec<String>)> = Vec::new();
        let mut cond = |field: Field, m: ValueMatch| match m {
            ValueMatch::Exact(v) => Cond::Exact(v.into()),
            ValueMatch::Prefix(v) => Cond::Prefix(v.into()),
            ValueMatch::Regex(re) => {
                let group = match patterns.iter().position(|(f, _)| *f == field) {
                    Some(g) => g,
                    None => {
                        patterns.push((field, Vec::new()));
                        patterns.len() - 1
                    }
                };
                patterns[group].1.push(re);
                Cond::Regex {
                    group,
                    pattern: patterns[group].1.len() - 1,
                }
            }
        };
        let mut rules = Vec::new();
        let with_defaults = entries.iter().any(|e| matches!(e, Entry::Defaults));
        let tail = (!with_defaults).then_some(Entry::Defaults);
        for entry in entries.into_iter().chain(tail) {
            let spec = match entry {
                Entry::Defaults => {
                    rules.extend(DEFAULTS.iter().map(|&(id, b)| builtin(id, b)));
                    continue;
                }
                Entry::Rule(spec) => *spec,
            };
            let header = spec.header.map(|(name, m)| {
                let c = m.map_or(Cond::Present, |m| {
                    cond(Field::Header(name.clone().into()), m)
                });
                (name.into_boxed_slice(), c)
            });
            rules.push(Rule {
                id: spec.id.into(),
                action: spec.action,
                status: spec.status,
                routes: spec
                    .routes
                    .map(|r| r.into_iter().map(String::into_boxed_str).collect()),
                builtin: None,
                methods: spec
                    .methods
                    .into_iter()
                    .map(Vec::into_boxed_slice)
                    .collect(),
                path: spec.path.map(|m| cond(Field::Path, m)),
                query: spec.query.map(|m| cond(Field::Query, m)),
                header,
                body_over: spec.body_over,
            });
        }
        let groups = patterns
            .into_iter()
            .map(|(field, pats)| {
                let regex = regex_builder(GROUP_SIZE)
                    .build_many(&pats)
                    .map_err(|e| e.to_string())?;
                Ok(RegexGroup { field, regex })
            })
            .collect::<Result<_, String>>()?;
        Ok(FilterSet {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            rules,
            groups,
        })
    }

    /// Position of the rule with this id.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.rules.iter().position(|r| &*r.id == id)
    }
}

fn builtin(id: &str, b: Builtin) -> Rule {
    Rule {
        id: id.into(),
        action: FilterAction::Deny,
        status: 403,
        routes: None,
        builtin: Some(b),
        methods: Box::default(),
        path: None,
        query: None,
        header: None,
        body_over: None,
    }
}

/// A route's filters: positions in its snapshot's `FilterSet`, in order.
#[derive(Debug, Clone)]
pub struct WafRule {
    set: Arc<FilterSet>,
    rules: Box<[u16]>,
    /// `filters_mode = "log"`: a deny only logs.
    log_only: bool,
}

impl PartialEq for WafRule {
    fn eq(&self, other: &WafRule) -> bool {
        Arc::ptr_eq(&self.set, &other.set)
            && self.rules == other.rules
            && self.log_only == other.log_only
    }
}

impl Eq for WafRule {}

impl WafRule {
    pub fn new(set: Arc<FilterSet>, rules: Vec<u16>, log_only: bool) -> WafRule {
        WafRule {
            set,
            rules: rules.into(),
            log_only,
        }
    }

    /// Whether a request can be refused (a deny rule, enforced).
    pub fn denies(&self) -> bool {
        !self.log_only
            && self
                .rules
                .iter()
                .any(|&i| self.set.rules[i as usize].action == FilterAction::Deny)
    }

    /// Whether rule `rule` of the set is one of the route's.
    pub fn runs(&self, rule: usize) -> bool {
        self.rules.iter().any(|&i| usize::from(i) == rule)
    }

    /// Rule ids in order (for tests and `/config`).
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|&i| &*self.set.rules[i as usize].id)
    }

    /// Phase 1: the rules in order. The record keeps the deny that
    /// refused the request, else the first rule that matched.
    pub(super) fn check(
        &self,
        record: &mut Record,
        phase: &mut RequestPhase<'_>,
    ) -> Result<(), ProxyError> {
        let denied = self.evaluate(phase.req, phase.norm_path, phase.filters);
        let events = &phase.filters.events;
        // A deny is the last match.
        let noted = if denied.is_some() {
            events.last()
        } else {
            events.first()
        };
        if let Some(&(i, action)) = noted {
            record.filter = Some((u32::from(i), action));
        }
        match denied {
            Some(status) => Err(ProxyError::downstream(ErrorKind::Filtered(status))),
            None => Ok(()),
        }
    }

    /// Runs the rules in order: the first deny or allow that matches
    /// decides, log rules note and go on. Every match is pushed to the
    /// scratch's `events` with what it did. Some(status): refused.
    pub fn evaluate(
        &self,
        head: &RequestHead<'_, '_>,
        norm_path: &[u8],
        scratch: &mut FilterScratch,
    ) -> Option<u16> {
        scratch.prepare(&self.set);
        let req = Request {
            head,
            path: norm_path,
            query: head.query.get(1..).unwrap_or_default(),
        };
        for &i in self.rules.iter() {
            let rule = &self.set.rules[i as usize];
            if !self.set.matches(rule, &req, scratch) {
                continue;
            }
            let action = match rule.action {
                FilterAction::Deny if self.log_only => FilterAction::Log,
                a => a,
            };
            scratch.events.push((i, action));
            match action {
                FilterAction::Deny => return Some(rule.status),
                FilterAction::Allow => return None,
                FilterAction::Log => {}
            }
        }
        None
    }
}

/// What the rules look at.
struct Request<'r, 'a, 'b> {
    head: &'r RequestHead<'a, 'b>,
    path: &'r [u8],
    query: &'r [u8],
}

impl FilterSet {
    fn matches(&self, rule: &Rule, req: &Request<'_, '_, '_>, scratch: &mut FilterScratch) -> bool {
        if let Some(b) = rule.builtin {
            return b.matches(req.head, req.path);
        }
        // The cheap conditions first: a regex runs only for a rule whose
        // other conditions hold.
        if !rule.methods.is_empty() && !rule.methods.iter().any(|m| **m == *req.head.method) {
            return false;
        }
        if let Some(over) = rule.body_over
            && !matches!(req.head.framing, Framing::Length(n) if n > over)
        {
            return false;
        }
        let plain = |c: &Option<Cond>, v: &[u8]| match c {
            Some(Cond::Exact(x)) => **x == *v,
            Some(Cond::Prefix(x)) => v.starts_with(x),
            _ => true,
        };
        if !plain(&rule.path, req.path) || !plain(&rule.query, req.query) {
            return false;
        }
        if let Some((name, cond)) = &rule.header {
            let mut values = req
                .head
                .headers
                .iter()
                .filter(|h| h.name.as_bytes().eq_ignore_ascii_case(name))
                .map(|h| trim_ows(h.value));
            let found = match cond {
                Cond::Present | Cond::Regex { .. } => values.next().is_some(),
                Cond::Exact(x) => values.any(|v| **x == *v),
                Cond::Prefix(x) => values.any(|v| v.starts_with(x)),
            };
            if !found {
                return false;
            }
        }
        [
            rule.path.as_ref(),
            rule.query.as_ref(),
            rule.header.as_ref().map(|(_, c)| c),
        ]
        .into_iter()
        .all(|c| match c {
            Some(&Cond::Regex { group, pattern }) => self.regex_hit(group, pattern, req, scratch),
            _ => true,
        })
    }

    /// Whether pattern `pattern` of group `group` matched: the group's
    /// regex runs over its field on first use in the request.
    fn regex_hit(
        &self,
        group: usize,
        pattern: usize,
        req: &Request<'_, '_, '_>,
        scratch: &mut FilterScratch,
    ) -> bool {
        let (g, s) = (&self.groups[group], &mut scratch.groups[group]);
        if !s.done {
            s.done = true;
            s.matched.clear();
            let mut run = |hay: &[u8]| {
                g.regex.which_overlapping_matches_with(
                    &mut s.cache,
                    &Input::new(hay),
                    &mut s.matched,
                )
            };
            match &g.field {
                Field::Path => run(req.path),
                Field::Query => run(req.query),
                Field::Header(name) => req
                    .head
                    .headers
                    .iter()
                    .filter(|h| h.name.as_bytes().eq_ignore_ascii_case(name))
                    .for_each(|h| run(trim_ows(h.value))),
            }
        }
        s.matched.contains(PatternID::new_unchecked(pattern))
    }
}

/// A worker's working memory for the filters: one regex cache and match
/// set per field group of the set it was last used with, and the matches
/// of the request being checked (read by the worker for its metrics).
#[derive(Debug, Default)]
pub struct FilterScratch {
    /// `FilterSet::id` the groups were made for.
    set: u64,
    groups: Vec<GroupScratch>,
    /// (rule position, action taken) per match, in order.
    pub events: Vec<(u16, FilterAction)>,
}

#[derive(Debug)]
struct GroupScratch {
    cache: meta::Cache,
    matched: PatternSet,
    /// The regex has run for the current request.
    done: bool,
}

impl FilterScratch {
    /// Ready for a request on `set`: made again after a reload (the only
    /// allocation), otherwise only the groups' flags are cleared.
    fn prepare(&mut self, set: &FilterSet) {
        if self.set != set.id {
            self.set = set.id;
            self.groups = set
                .groups
                .iter()
                .map(|g| GroupScratch {
                    cache: g.regex.create_cache(),
                    matched: PatternSet::new(g.regex.pattern_len()),
                    done: false,
                })
                .collect();
        }
        for g in &mut self.groups {
            g.done = false;
        }
    }
}
