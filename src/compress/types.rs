//! Content-type patterns from route config ("text/*", "application/json")
//! and matching them against a response's `Content-Type` without allocating.

/// A `type/subtype` pattern; `*` as the subtype (or as both) matches any.
/// Stored lower-case; matching is case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypePattern {
    ty: String,
    /// `None` for `type/*`.
    subtype: Option<String>,
}

impl TypePattern {
    /// Accepts `type/subtype`, `type/*` and `*/*`; no parameters, no spaces.
    pub fn parse(s: &str) -> Result<TypePattern, String> {
        let bad = || format!("content type pattern {s:?}: expected type/subtype or type/*");
        let (ty, subtype) = s.split_once('/').ok_or_else(bad)?;
        if !is_token(ty) || !is_token(subtype) || (ty == "*" && subtype != "*") {
            return Err(bad());
        }
        Ok(TypePattern {
            ty: ty.to_ascii_lowercase(),
            subtype: (subtype != "*").then(|| subtype.to_ascii_lowercase()),
        })
    }

    fn matches(&self, ty: &[u8], subtype: &[u8]) -> bool {
        let type_ok = self.ty == "*" || self.ty.as_bytes().eq_ignore_ascii_case(ty);
        let sub_ok = self
            .subtype
            .as_ref()
            .is_none_or(|s| s.as_bytes().eq_ignore_ascii_case(subtype));
        type_ok && sub_ok
    }
}

/// RFC 9110 token characters, which media type names are made of.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether a response's `Content-Type` value matches one of `types`;
/// parameters (`; charset=utf-8`) and surrounding spaces are ignored. A value
/// that is not `type/subtype` matches nothing.
pub fn type_matches(content_type: &[u8], types: &[TypePattern]) -> bool {
    let essence = content_type.split(|&b| b == b';').next().unwrap_or(&[]);
    let essence = essence.trim_ascii();
    let Some(slash) = essence.iter().position(|&b| b == b'/') else {
        return false;
    };
    let (ty, subtype) = (&essence[..slash], &essence[slash + 1..]);
    if ty.is_empty() || subtype.is_empty() {
        return false;
    }
    types.iter().any(|p| p.matches(ty, subtype))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Vec<TypePattern> {
        list.iter()
            .map(|s| TypePattern::parse(s).unwrap())
            .collect()
    }

    #[test]
    fn parse_accepts_and_rejects() {
        for ok in [
            "text/*",
            "application/json",
            "image/svg+xml",
            "*/*",
            "Text/HTML",
        ] {
            assert!(TypePattern::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "text",
            "text/",
            "/json",
            "*/json",
            "text/html; charset=utf-8",
            "te xt/html",
            "a/b/c",
        ] {
            assert!(TypePattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching_table() {
        let config = patterns(&[
            "text/*",
            "application/json",
            "application/javascript",
            "image/svg+xml",
        ]);
        let table: &[(&str, bool)] = &[
            ("text/html", true),
            ("text/html; charset=utf-8", true),
            ("TEXT/CSS", true),
            ("  text/plain ;charset=us-ascii", true),
            ("application/json", true),
            ("Application/JSON;charset=UTF-8", true),
            ("image/svg+xml", true),
            ("image/png", false),
            ("application/octet-stream", false),
            ("application/jsonx", false),
            ("text", false),
            ("text/", false),
            ("/html", false),
            ("", false),
        ];
        for &(ct, want) in table {
            assert_eq!(type_matches(ct.as_bytes(), &config), want, "{ct:?}");
        }
        assert!(type_matches(b"video/mp4", &patterns(&["*/*"])));
        assert!(!type_matches(b"text/html", &[]));
    }
}
