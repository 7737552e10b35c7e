//! The RFC 9111 policy of a shared response cache: Cache-Control
//! directives, whether a response may be stored and for how long, age,
//! whether a stored response may be used, conditional requests,
//! `Cache-Status` (RFC 9211) and the cache key. Pure: borrowed bytes in,
//! values or bytes appended to the caller's buffer out; nothing allocates.

use crate::http::fields::trim_ows;

/// RFC 9111 1.2.2: a delta-seconds too large to represent is taken as 2^31.
const DELTA_MAX: u32 = 1 << 31;

/// One `name[=value]` member of a Cache-Control or Pragma list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Directive<'a> {
    name: &'a [u8],
    /// Without the surrounding quotes; escapes are left in place because
    /// no value this cache reads may contain one.
    value: Option<&'a [u8]>,
}

/// The members of one field value, split on commas outside quoted strings
/// (`no-cache="a, b"` is one member).
struct Directives<'a> {
    rest: &'a [u8],
}

impl<'a> Directives<'a> {
    fn new(value: &'a [u8]) -> Self {
        Directives { rest: value }
    }
}

impl<'a> Iterator for Directives<'a> {
    type Item = Directive<'a>;

    fn next(&mut self) -> Option<Directive<'a>> {
        while !self.rest.is_empty() {
            let (member, rest) = self.rest.split_at(member_end(self.rest));
            self.rest = rest.get(1..).unwrap_or_default();
            let member = trim_ows(member);
            if !member.is_empty() {
                return Some(split_directive(member));
            }
        }
        None
    }
}

/// Index of the comma that ends the first member, or the length.
fn member_end(s: &[u8]) -> usize {
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in s.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => return i,
            _ => {}
        }
    }
    s.len()
}

fn split_directive(member: &[u8]) -> Directive<'_> {
    match member.iter().position(|&b| b == b'=') {
        None => Directive {
            name: member,
            value: None,
        },
        Some(i) => Directive {
            name: trim_ows(&member[..i]),
            value: Some(unquote(trim_ows(&member[i + 1..]))),
        },
    }
}

fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

/// delta-seconds (RFC 9111 1.2.2), saturated at 2^31; None unless digits.
fn delta_seconds(v: &[u8]) -> Option<u32> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u32, |acc, &b| {
        acc.saturating_mul(10)
            .saturating_add(u32::from(b - b'0'))
            .min(DELTA_MAX)
    }))
}

/// The directives this cache acts on; anything else is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    NoStore,
    NoCache,
    MaxAge,
    MaxStale,
    MinFresh,
    OnlyIfCached,
    Private,
    Public,
    SMaxage,
    MustRevalidate,
    ProxyRevalidate,
    StaleWhileRevalidate,
    StaleIfError,
    NoTransform,
    Immutable,
}

const NAMES: [(&[u8], Name); 15] = [
    (b"no-store", Name::NoStore),
    (b"no-cache", Name::NoCache),
    (b"max-age", Name::MaxAge),
    (b"max-stale", Name::MaxStale),
    (b"min-fresh", Name::MinFresh),
    (b"only-if-cached", Name::OnlyIfCached),
    (b"private", Name::Private),
    (b"public", Name::Public),
    (b"s-maxage", Name::SMaxage),
    (b"must-revalidate", Name::MustRevalidate),
    (b"proxy-revalidate", Name::ProxyRevalidate),
    (b"stale-while-revalidate", Name::StaleWhileRevalidate),
    (b"stale-if-error", Name::StaleIfError),
    (b"no-transform", Name::NoTransform),
    (b"immutable", Name::Immutable),
];

fn lookup(name: &[u8]) -> Option<Name> {
    NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, id)| id)
}

/// Cache-Control directives of a request (RFC 9111 5.2.1).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestControl {
    pub no_store: bool,
    pub no_cache: bool,
    pub max_age: Option<u32>,
    /// `u32::MAX` when given without a value: any staleness is accepted.
    pub max_stale: Option<u32>,
    pub min_fresh: Option<u32>,
    pub only_if_cached: bool,
}

impl RequestControl {
    /// Reads every Cache-Control field line, and Pragma only when there is
    /// no Cache-Control field (RFC 9111 5.4).
    pub fn parse<'a>(
        cache_control: impl Iterator<Item = &'a [u8]>,
        pragma: impl Iterator<Item = &'a [u8]>,
    ) -> RequestControl {
        let mut c = RequestControl::default();
        let mut has_cache_control = false;
        for value in cache_control {
            has_cache_control = true;
            Directives::new(value).for_each(|d| c.apply(d));
        }
        if !has_cache_control {
            c.no_cache = pragma
                .flat_map(Directives::new)
                .any(|d| d.name.eq_ignore_ascii_case(b"no-cache"));
        }
        c
    }

    /// The first occurrence of a valued directive wins. A malformed
    /// max-age asks for revalidation (the cautious reading); a malformed
    /// max-stale or min-fresh is ignored, so junk never buys staleness.
    fn apply(&mut self, d: Directive<'_>) {
        let delta = d.value.and_then(delta_seconds);
        match lookup(d.name) {
            Some(Name::NoStore) => self.no_store = true,
            Some(Name::NoCache) => self.no_cache = true,
            Some(Name::OnlyIfCached) => self.only_if_cached = true,
            Some(Name::MaxAge) => self.max_age = self.max_age.or(Some(delta.unwrap_or(0))),
            Some(Name::MaxStale) if d.value.is_none() => {
                self.max_stale = self.max_stale.or(Some(u32::MAX));
            }
            Some(Name::MaxStale) => self.max_stale = self.max_stale.or(delta),
            Some(Name::MinFresh) => self.min_fresh = self.min_fresh.or(delta),
            _ => {}
        }
    }
}

/// Cache-Control directives of a response (RFC 9111 5.2.2, RFC 5861,
/// RFC 8246).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ResponseControl {
    /// Also set by the qualified `no-cache="field"`: a shared cache may
    /// treat it as unqualified, which is simpler and never less safe.
    pub no_store: bool,
    pub no_cache: bool,
    /// Also set by the qualified `private="field"`, for the same reason.
    pub private: bool,
    pub public: bool,
    pub max_age: Option<u32>,
    pub s_maxage: Option<u32>,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub stale_while_revalidate: Option<u32>,
    pub stale_if_error: Option<u32>,
    pub no_transform: bool,
    pub immutable: bool,
}

impl ResponseControl {
    /// Reads every Cache-Control field line of a response.
    pub fn parse<'a>(values: impl Iterator<Item = &'a [u8]>) -> ResponseControl {
        let mut c = ResponseControl::default();
        values.flat_map(Directives::new).for_each(|d| c.apply(d));
        c
    }

    fn apply(&mut self, d: Directive<'_>) {
        let delta = d.value.and_then(delta_seconds);
        match lookup(d.name) {
            Some(Name::NoStore) => self.no_store = true,
            Some(Name::NoCache) => self.no_cache = true,
            Some(Name::Private) => self.private = true,
            Some(Name::Public) => self.public = true,
            Some(Name::MustRevalidate) => self.must_revalidate = true,
            Some(Name::ProxyRevalidate) => self.proxy_revalidate = true,
            Some(Name::NoTransform) => self.no_transform = true,
            Some(Name::Immutable) => self.immutable = true,
            Some(Name::MaxAge) => self.max_age = Some(freshness(self.max_age, delta)),
            Some(Name::SMaxage) => self.s_maxage = Some(freshness(self.s_maxage, delta)),
            Some(Name::StaleWhileRevalidate) => {
                self.stale_while_revalidate = stale_window(self.stale_while_revalidate, delta);
            }
            Some(Name::StaleIfError) => {
                self.stale_if_error = stale_window(self.stale_if_error, delta);
            }
            _ => {}
        }
    }
}

/// RFC 9111 4.2.1: invalid freshness (`max-age=abc`) and conflicting
/// repeats (`max-age=60, max-age=600`) both make the response stale.
fn freshness(before: Option<u32>, now: Option<u32>) -> u32 {
    match (before, now) {
        (_, None) => 0,
        (Some(b), Some(n)) if b != n => 0,
        (_, Some(n)) => n,
    }
}

/// A malformed stale window is ignored and repeats keep the smaller one:
/// serving stale is a permission, so doubt takes it away.
fn stale_window(before: Option<u32>, now: Option<u32>) -> Option<u32> {
    match (before, now) {
        (Some(b), Some(n)) => Some(b.min(n)),
        (b, n) => b.or(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cc: &[&str], pragma: &[&str]) -> RequestControl {
        RequestControl::parse(
            cc.iter().map(|s| s.as_bytes()),
            pragma.iter().map(|s| s.as_bytes()),
        )
    }

    fn resp(cc: &[&str]) -> ResponseControl {
        ResponseControl::parse(cc.iter().map(|s| s.as_bytes()))
    }

    #[test]
    fn splits_members_outside_quotes() {
        let got: Vec<_> = Directives::new(br#" a, b=1 ,c="x, y",, D = "2" ,e="q\",r""#)
            .map(|d| (d.name, d.value))
            .collect();
        let want: Vec<(&[u8], Option<&[u8]>)> = vec![
            (b"a", None),
            (b"b", Some(b"1")),
            (b"c", Some(b"x, y")),
            (b"D", Some(b"2")),
            (b"e", Some(br#"q\",r"#)),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn delta_seconds_saturates_and_rejects_junk() {
        let cases: &[(&str, Option<u32>)] = &[
            ("0", Some(0)),
            ("60", Some(60)),
            ("2147483647", Some(2_147_483_647)),
            ("2147483648", Some(DELTA_MAX)),
            ("99999999999999999999999", Some(DELTA_MAX)),
            ("", None),
            ("-1", None),
            ("1.5", None),
            ("abc", None),
            ("+5", None),
        ];
        for &(v, want) in cases {
            assert_eq!(delta_seconds(v.as_bytes()), want, "{v}");
        }
    }

    #[test]
    fn request_directives() {
        let cases: &[(&[&str], &[&str], RequestControl)] = &[
            (&[], &[], RequestControl::default()),
            (
                &["No-Store, NO-CACHE", "only-if-cached"],
                &[],
                RequestControl {
                    no_store: true,
                    no_cache: true,
                    only_if_cached: true,
                    ..Default::default()
                },
            ),
            (
                &["max-age=\"30\", max-age=10", "min-fresh=5, max-stale=7"],
                &[],
                RequestControl {
                    max_age: Some(30),
                    min_fresh: Some(5),
                    max_stale: Some(7),
                    ..Default::default()
                },
            ),
            (
                &["max-stale"],
                &[],
                RequestControl {
                    max_stale: Some(u32::MAX),
                    ..Default::default()
                },
            ),
            (
                &["max-age=abc, max-stale=x, min-fresh="],
                &[],
                RequestControl {
                    max_age: Some(0),
                    ..Default::default()
                },
            ),
            (&["x-foo=1, bar"], &[], RequestControl::default()),
            (
                &[],
                &["no-cache"],
                RequestControl {
                    no_cache: true,
                    ..Default::default()
                },
            ),
            (
                &[],
                &["x, No-Cache"],
                RequestControl {
                    no_cache: true,
                    ..Default::default()
                },
            ),
            (
                &["max-age=5"],
                &["no-cache"],
                RequestControl {
                    max_age: Some(5),
                    ..Default::default()
                },
            ),
            (&[""], &["no-cache"], RequestControl::default()),
        ];
        for (cc, pragma, want) in cases {
            assert_eq!(req(cc, pragma), *want, "{cc:?} {pragma:?}");
        }
    }

    #[test]
    fn response_directives() {
        let all = resp(&[
            "public, private, no-store, no-cache, must-revalidate",
            "proxy-revalidate, no-transform, immutable, max-age=1, s-maxage=2",
            "stale-while-revalidate=3, stale-if-error=4, x-unknown=\"5\"",
        ]);
        let want = ResponseControl {
            no_store: true,
            no_cache: true,
            private: true,
            public: true,
            max_age: Some(1),
            s_maxage: Some(2),
            must_revalidate: true,
            proxy_revalidate: true,
            stale_while_revalidate: Some(3),
            stale_if_error: Some(4),
            no_transform: true,
            immutable: true,
        };
        assert_eq!(all, want);
    }

    #[test]
    fn response_values_malformed_quoted_and_repeated() {
        let cases: &[(&[&str], ResponseControl)] = &[
            (
                &["MAX-AGE=\"60\""],
                ResponseControl {
                    max_age: Some(60),
                    ..Default::default()
                },
            ),
            (
                &["max-age=abc"],
                ResponseControl {
                    max_age: Some(0),
                    ..Default::default()
                },
            ),
            (
                &["s-maxage"],
                ResponseControl {
                    s_maxage: Some(0),
                    ..Default::default()
                },
            ),
            (
                &["max-age=60", "max-age=60"],
                ResponseControl {
                    max_age: Some(60),
                    ..Default::default()
                },
            ),
            (
                &["max-age=60, max-age=600"],
                ResponseControl {
                    max_age: Some(0),
                    ..Default::default()
                },
            ),
            (
                &["max-age=99999999999"],
                ResponseControl {
                    max_age: Some(DELTA_MAX),
                    ..Default::default()
                },
            ),
            (
                &["stale-if-error=x, stale-while-revalidate"],
                ResponseControl::default(),
            ),
            (
                &["stale-if-error=60, stale-if-error=30"],
                ResponseControl {
                    stale_if_error: Some(30),
                    ..Default::default()
                },
            ),
            (
                &["no-cache=\"Set-Cookie, X-Id\", private=\"X\""],
                ResponseControl {
                    no_cache: true,
                    private: true,
                    ..Default::default()
                },
            ),
            (
                &["nocache, max-age-x=5, public-x"],
                ResponseControl::default(),
            ),
        ];
        for (cc, want) in cases {
            assert_eq!(resp(cc), *want, "{cc:?}");
        }
    }
}
