//! Request path normalisation before routing (RFC 3986 §6.2.2): decode
//! percent-encoded unreserved characters, upper-case the rest, collapse
//! duplicate slashes and remove dot-segments, so `/public/../admin` routes
//! (and is forwarded) as `/admin`. Normal paths are returned borrowed.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadPath;

/// Normalises an origin-form path; anything not starting with '/' (the
/// asterisk-form "*") is returned unchanged.
pub fn normalize<'a>(path: &'a [u8], scratch: &'a mut Vec<u8>) -> Result<&'a [u8], BadPath> {
    if path.first() != Some(&b'/') || is_normal(path) {
        return Ok(path);
    }
    scratch.clear();
    let decoded = decode_unreserved(path, scratch)?;
    let mut out = Vec::with_capacity(decoded.len());
    remove_dot_segments(&decoded, &mut out)?;
    *scratch = out;
    Ok(scratch.as_slice())
}

/// True when no step of the normalisation would change `path`.
fn is_normal(path: &[u8]) -> bool {
    if memchr::memchr(b'%', path).is_some() {
        return false;
    }
    memchr::memchr_iter(b'/', path).all(|i| {
        let rest = &path[i + 1..];
        !(rest.starts_with(b"/")
            || rest == b"."
            || rest == b".."
            || rest.starts_with(b"./")
            || rest.starts_with(b"../")
            || rest.starts_with(b".;")
            || rest.starts_with(b"..;"))
    })
}

/// Whether a path holds an escaped separator: `%2F` (`/`) or `%5C` (`\`),
/// in either case. A route matched on the path as sent may not be the one
/// an upstream that decodes them would serve.
pub fn has_escaped_slash(path: &[u8]) -> bool {
    memchr::memchr_iter(b'%', path).any(|i| {
        matches!(
            path.get(i + 1..i + 3),
            Some([b'2', b'f' | b'F'] | [b'5', b'c' | b'C'])
        )
    })
}

/// The path an upstream that decodes escaped separators would see:
/// `%2F` and `%5C` become `/` (a backslash is a separator to Windows
/// servers), then dot-segments and duplicate slashes are removed again,
/// so `/public%2F..%2Fadmin` is `/admin`. Written into `out`.
pub fn decode_slashes(path: &[u8], out: &mut Vec<u8>) -> Result<(), BadPath> {
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' && has_escaped_slash(&path[i..(i + 3).min(path.len())]) {
            decoded.push(b'/');
            i += 3;
        } else {
            decoded.push(path[i]);
            i += 1;
        }
    }
    out.clear();
    remove_dot_segments(&decoded, out)
}

fn decode_unreserved(path: &[u8], out: &mut Vec<u8>) -> Result<Vec<u8>, BadPath> {
    out.reserve(path.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let (Some(&hi), Some(&lo)) = (path.get(i + 1), path.get(i + 2)) else {
            return Err(BadPath);
        };
        let (Some(h), Some(l)) = ((hi as char).to_digit(16), (lo as char).to_digit(16)) else {
            return Err(BadPath);
        };
        let decoded = (h * 16 + l) as u8;
        if decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded) {
            out.push(decoded);
        } else {
            out.extend_from_slice(&[b'%', hi.to_ascii_uppercase(), lo.to_ascii_uppercase()]);
        }
        i += 3;
    }
    Ok(std::mem::take(out))
}

fn remove_dot_segments(path: &[u8], out: &mut Vec<u8>) -> Result<(), BadPath> {
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = false;
    for segment in path[1..].split(|&b| b == b'/') {
        // `..;x` is a dot-segment to some servlet containers and a name to
        // us: refuse it rather than route it differently from them.
        if segment.starts_with(b".;") || segment.starts_with(b"..;") {
            return Err(BadPath);
        }
        trailing_slash = true;
        match segment {
            b"" => {}
            b"." => {}
            b".." => {
                segments.pop();
            }
            s => {
                segments.push(s);
                trailing_slash = false;
            }
        }
    }
    out.push(b'/');
    for (n, s) in segments.iter().enumerate() {
        if n > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(s);
    }
    if trailing_slash && !segments.is_empty() {
        out.push(b'/');
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, BadPath> {
        let mut scratch = Vec::new();
        normalize(p.as_bytes(), &mut scratch).map(|n| String::from_utf8(n.to_vec()).unwrap())
    }

    #[test]
    fn table() {
        for (input, want) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E/admin", "/admin"),
            ("/a/./b", "/a/b"),
            ("//a///b", "/a/b"),
            ("/../../etc", "/etc"),
            ("/a/..", "/"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/%7euser", "/~user"),
            ("/a%2fb", "/a%2Fb"),
            ("/a%20b", "/a%20b"),
            ("/.well-known/x", "/.well-known/x"),
            ("/a..b/c", "/a..b/c"),
            ("*", "*"),
        ] {
            assert_eq!(norm(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn bad_escapes() {
        assert_eq!(norm("/a%2"), Err(BadPath));
        assert_eq!(norm("/a%zz"), Err(BadPath));
    }

    #[test]
    fn servlet_dot_segments_refused() {
        assert_eq!(norm("/public/..;/admin"), Err(BadPath));
        assert_eq!(norm("/public/.;x/admin"), Err(BadPath));
        assert_eq!(norm("/public/%2e%2e;/admin"), Err(BadPath));
        assert_eq!(norm("/a;b/c").as_deref(), Ok("/a;b/c"));
        assert_eq!(norm("/a/..b;c").as_deref(), Ok("/a/..b;c"));
    }

    #[test]
    fn escaped_slashes_found_and_decoded() {
        for (path, has, decoded) in [
            ("/a/b", false, "/a/b"),
            ("/a%2Fb", true, "/a/b"),
            ("/a%2fb", true, "/a/b"),
            ("/a%5Cb", true, "/a/b"),
            ("/a%5cb", true, "/a/b"),
            ("/public%2F..%2Fadmin", true, "/admin"),
            ("/a%2F%2Fb%2F", true, "/a/b/"),
            ("/a%252Fb", false, "/a%252Fb"),
            ("/a%2", false, "/a%2"),
            ("/a%20b", false, "/a%20b"),
        ] {
            assert_eq!(has_escaped_slash(path.as_bytes()), has, "{path}");
            let mut out = Vec::new();
            decode_slashes(path.as_bytes(), &mut out).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), decoded, "{path}");
        }
        let mut out = Vec::new();
        assert_eq!(decode_slashes(b"/a%2F..;%2Fb", &mut out), Err(BadPath));
    }

    #[test]
    fn normal_paths_are_borrowed() {
        let mut scratch = Vec::new();
        let p = b"/api/v1/items";
        let n = normalize(p, &mut scratch).unwrap();
        assert_eq!(n.as_ptr(), p.as_ptr());
    }
}
