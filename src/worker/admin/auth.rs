//! The admin token: `Authorization: Bearer <token>`, compared in time
//! that does not depend on where the given token first differs.

/// Whether the request's Authorization field carries `token`.
pub(super) fn bearer_matches(token: &str, authorization: Option<&[u8]>) -> bool {
    let Some(value) = authorization else {
        return false;
    };
    let value = crate::http::fields::trim_ows(value);
    // The scheme is case-insensitive (RFC 9110 §11.1); one space follows.
    let Some((scheme, given)) = value.split_at_checked(7) else {
        return false;
    };
    scheme.eq_ignore_ascii_case(b"Bearer ")
        && constant_time_eq(crate::http::fields::trim_ows(given), token.as_bytes())
}

/// Equal bytes, looking at every byte of `expected` whatever `given` is.
/// The length of the secret is not hidden (a Bearer token's length is
/// not what protects it).
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, &e) in expected.iter().enumerate() {
        // Past the end of `given` compare with a byte that still costs
        // the same.
        let g = given.get(i).copied().unwrap_or(!e);
        diff |= g ^ e;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        let ok = |h: &str| bearer_matches("s3cret", Some(h.as_bytes()));
        assert!(ok("Bearer s3cret"));
        assert!(ok("bearer s3cret "));
        assert!(!ok("Bearer s3cre"));
        assert!(!ok("Bearer s3cretx"));
        assert!(!ok("Bearer S3cret"));
        assert!(!ok("Basic s3cret"));
        assert!(!ok("Bearer"));
        assert!(!ok(""));
        assert!(!bearer_matches("s3cret", None));
    }
}
