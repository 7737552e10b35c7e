//! The default rule set (`filters = "default"`): checks written by hand
//! over the raw request target, the method, the query and the normalised
//! path, for what scanners and exploit kits send first. No regex and no
//! allocation: a handful of byte scans per request.

use crate::http::RequestHead;

/// One rule of the default set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// `../` or `..\` written in an encoded form anywhere in the raw
    /// target: `%2e%2e`, `%2e.`, `.%2e`, `%252e`, overlong `%c0%ae`,
    /// `..%2f`, `..%5c`, `%2f..`, ...
    Traversal,
    /// NUL and other control bytes in the target, raw or `%00`–`%1f`,
    /// `%7f`.
    CtlBytes,
    /// `TRACE` and `TRACK` (cross-site tracing).
    TraceMethod,
    /// A query longer than `LONG_QUERY` bytes.
    LongQuery,
    /// Paths that only scanners ask for: `/.env`, `/.git/`, `/wp-admin`...
    ScannerPaths,
}

/// Query bytes (without the `?`) above which `default/long-query` matches.
pub const LONG_QUERY: usize = 2048;

/// The default set in evaluation order, with the ids the log shows.
pub const DEFAULTS: [(&str, Builtin); 5] = [
    ("default/traversal", Builtin::Traversal),
    ("default/ctl-bytes", Builtin::CtlBytes),
    ("default/trace-method", Builtin::TraceMethod),
    ("default/long-query", Builtin::LongQuery),
    ("default/scanner-paths", Builtin::ScannerPaths),
];

/// Path segments scanners probe for, lowercase; a path matches when one
/// of them starts a segment and ends one (or the path), wherever it is
/// (`/blog/wp-login.php` too). `.env` also matches `.env.local` and the
/// like.
const SCANNER_SEGMENTS: [&[u8]; 16] = [
    b".env",
    b".git",
    b".svn",
    b".hg",
    b".aws",
    b".ssh",
    b".ds_store",
    b".htaccess",
    b".htpasswd",
    b"wp-admin",
    b"wp-login.php",
    b"xmlrpc.php",
    b"phpmyadmin",
    b"cgi-bin",
    b"vendor/phpunit",
    b"server-status",
];

/// The first bytes of `SCANNER_SEGMENTS`.
const SCANNER_FIRST: &[u8] = b".wxpcvs";

impl Builtin {
    pub fn matches(self, req: &RequestHead<'_, '_>, norm_path: &[u8]) -> bool {
        match self {
            Builtin::Traversal => traversal(req.target),
            Builtin::CtlBytes => ctl_bytes(req.target),
            Builtin::TraceMethod => matches!(req.method, b"TRACE" | b"TRACK"),
            Builtin::LongQuery => req.query.len().saturating_sub(1) > LONG_QUERY,
            Builtin::ScannerPaths => scanner_path(norm_path),
        }
    }
}

/// `prefix` at the start of `s`, ASCII case ignored.
fn starts_with_ci(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// The length of a dot at the start of `s`, and whether it is encoded.
fn dot(s: &[u8]) -> Option<(usize, bool)> {
    const ENCODED: [&[u8]; 5] = [b"%2e", b"%252e", b"%c0%ae", b"%e0%80%ae", b"%u002e"];
    match s.first() {
        Some(b'.') => return Some((1, false)),
        Some(b'%') => {}
        _ => return None,
    }
    ENCODED
        .iter()
        .find(|e| starts_with_ci(s, e))
        .map(|e| (e.len(), true))
}

/// Separators other than a plain `/`: a backslash, or `/` and `\`
/// encoded (once, twice, or as overlong UTF-8).
const ODD_SEPARATORS: [&[u8]; 9] = [
    b"\\", b"%2f", b"%5c", b"%252f", b"%255c", b"%c0%af", b"%c1%9c", b"%c0%5c", b"%u2215",
];

/// Two dots, one of them encoded, or `..` next to a separator that is
/// not a plain `/`.
fn traversal(target: &[u8]) -> bool {
    let mut i = 0;
    while i < target.len() {
        // Every encoded form starts with `.` or `%`.
        let Some(at) = memchr::memchr2(b'.', b'%', &target[i..]) else {
            return false;
        };
        i += at;
        if let Some((l1, e1)) = dot(&target[i..])
            && let Some((l2, e2)) = dot(&target[i + l1..])
        {
            let after = &target[i + l1 + l2..];
            let before = &target[..i];
            if e1
                || e2
                || ODD_SEPARATORS.iter().any(|s| starts_with_ci(after, s))
                || ODD_SEPARATORS.iter().any(|s| {
                    before.len() >= s.len()
                        && before[before.len() - s.len()..].eq_ignore_ascii_case(s)
                })
            {
                return true;
            }
        }
        i += 1;
    }
    false
}

/// A control byte, raw or percent-encoded (`%00`–`%1f`, `%7f`).
fn ctl_bytes(target: &[u8]) -> bool {
    let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
    target.iter().any(|&b| b < 0x20 || b == 0x7f)
        || memchr::memchr_iter(b'%', target).any(|i| {
            match (hex(target.get(i + 1)), hex(target.get(i + 2))) {
                (Some(h), Some(l)) => h < 2 || (h == 7 && l == 15),
                _ => false,
            }
        })
}

fn scanner_path(path: &[u8]) -> bool {
    for slash in memchr::memchr_iter(b'/', path) {
        let rest = &path[slash + 1..];
        // Most segments start with a letter none of the names does.
        let Some(first) = rest.first().map(u8::to_ascii_lowercase) else {
            continue;
        };
        if !SCANNER_FIRST.contains(&first) {
            continue;
        }
        for seg in SCANNER_SEGMENTS {
            if !starts_with_ci(rest, seg) {
                continue;
            }
            match rest.get(seg.len()) {
                None | Some(b'/') => return true,
                Some(b'.') if seg == b".env" => return true,
                _ => {}
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_in_encoded_forms() {
        for hit in [
            &b"/a/%2e%2e/etc/passwd"[..],
            b"/a/%2E%2E/x",
            b"/a/%2e./x",
            b"/a/.%2e/x",
            b"/a/%252e%252e/x",
            b"/a/%c0%ae%c0%ae/x",
            b"/a/..%2fetc",
            b"/a/..%5Cwin",
            b"/a/..\\win",
            b"/a%2f../b",
            b"/q?file=..%2f..%2fetc%2fpasswd",
            b"/q?file=%2e%2e/etc",
        ] {
            assert!(traversal(hit), "{}", String::from_utf8_lossy(hit));
        }
        for miss in [
            &b"/a/../b"[..],
            b"/a..b/c",
            b"/file.tar.gz",
            b"/a/%2fb",
            b"/q?x=1.2",
            b"/%",
            b"/.",
        ] {
            assert!(!traversal(miss), "{}", String::from_utf8_lossy(miss));
        }
    }

    #[test]
    fn control_bytes_raw_or_encoded() {
        for hit in [
            &b"/x%00y"[..],
            b"/x%0a",
            b"/x?a=%0D%0A",
            b"/x%7F",
            b"/x\x01",
        ] {
            assert!(ctl_bytes(hit), "{}", String::from_utf8_lossy(hit));
        }
        for miss in [&b"/x%20y"[..], b"/x%", b"/x%0", b"/x%zz", b"/a?b=%41"] {
            assert!(!ctl_bytes(miss), "{}", String::from_utf8_lossy(miss));
        }
    }

    #[test]
    fn scanner_first_bytes_cover_every_segment() {
        for seg in SCANNER_SEGMENTS {
            assert!(
                SCANNER_FIRST.contains(&seg[0]),
                "{}",
                String::from_utf8_lossy(seg)
            );
        }
    }

    #[test]
    fn scanner_paths_as_whole_segments() {
        for hit in [
            &b"/.env"[..],
            b"/.env.local",
            b"/app/.ENV",
            b"/.git/config",
            b"/.git",
            b"/wp-admin/setup.php",
            b"/blog/wp-login.php",
            b"/phpMyAdmin/",
            b"/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
            b"/.DS_Store",
            b"/cgi-bin/test.cgi",
        ] {
            assert!(scanner_path(hit), "{}", String::from_utf8_lossy(hit));
        }
        for miss in [
            &b"/"[..],
            b"/environment",
            b"/.envoy",
            b"/gitlab/.github",
            b"/docs/wp-admin-guide",
            b"/xmlrpc.phpx",
        ] {
            assert!(!scanner_path(miss), "{}", String::from_utf8_lossy(miss));
        }
    }
}
