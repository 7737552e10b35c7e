//! Field-level rules shared by requests and responses: Connection tokens,
//! hop-by-hop names, Content-Length and Transfer-Encoding validation.

/// The most Connection options one message may carry; more is refused.
pub const MAX_CONNECTION_TOKENS: usize = 16;

/// Options listed in the Connection header(s) of one message.
#[derive(Debug, Default, Clone, Copy)]
pub struct ConnectionOptions<'b> {
    tokens: [&'b [u8]; MAX_CONNECTION_TOKENS],
    len: usize,
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
}

impl<'b> ConnectionOptions<'b> {
    /// Adds the comma-separated tokens of one Connection field value.
    /// Returns false when a token is malformed or there are too many.
    pub fn add_value(&mut self, value: &'b [u8]) -> bool {
        for raw in value.split(|&b| b == b',') {
            let token = trim_ows(raw);
            if token.is_empty() {
                continue;
            }
            if !token.iter().all(|&b| is_tchar(b)) || self.len == MAX_CONNECTION_TOKENS {
                return false;
            }
            if token.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            }
            self.tokens[self.len] = token;
            self.len += 1;
        }
        true
    }

    /// Whether `name` is listed as a connection option (so is hop-by-hop).
    pub fn names(&self, name: &[u8]) -> bool {
        self.tokens[..self.len]
            .iter()
            .any(|t| t.eq_ignore_ascii_case(name))
    }
}

/// Fields that never cross the proxy as they are (RFC 9110 §7.6.1), plus
/// the framing fields the proxy always writes itself.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    // By length first, then one comparison with each name of that length
    // written out (a loop over a table of candidates compiles to more
    // instructions than the eight comparisons it saves).
    match name.len() {
        2 => name.eq_ignore_ascii_case(b"te"),
        7 => name.eq_ignore_ascii_case(b"trailer") || name.eq_ignore_ascii_case(b"upgrade"),
        10 => token_is(name, b"connection") || token_is(name, b"keep-alive"),
        14 => token_is(name, b"content-length"),
        16 => token_is(name, b"proxy-connection"),
        17 => token_is(name, b"transfer-encoding"),
        _ => false,
    }
}

/// `name` is `lower` (8 to 24 bytes of lower-case letters and `-`)
/// ignoring ASCII case, eight bytes at a time where `eq_ignore_ascii_case`
/// goes byte by byte. Setting bit 0x20 lower-cases a letter; the only
/// other byte it maps to a letter or `-` is 0x0D (to `-`), which the
/// second test refuses: where `lower` has no letter, `name` must have bit
/// 0x20 set already.
fn token_is(name: &[u8], lower: &[u8]) -> bool {
    let n = lower.len();
    if name.len() != n || !(8..=24).contains(&n) {
        return name.eq_ignore_ascii_case(lower);
    }
    const CASE: u64 = 0x2020_2020_2020_2020;
    let word = |s: &[u8], at: usize| {
        let bytes: [u8; 8] = s[at..at + 8].try_into().unwrap_or([0; 8]);
        u64::from_le_bytes(bytes)
    };
    let same = |at: usize| {
        let (got, want) = (word(name, at), word(lower, at));
        // Bit 0x20 where `want` has a non-letter (bit 0x40 clear).
        let fixed = (!want & (CASE << 1)) >> 1;
        got | CASE == want && got & fixed == fixed
    };
    same(0) && same(n - 8) && (n <= 16 || same(8))
}

/// Parses one Content-Length value: digits only, no sign, no list.
pub fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        value
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
    )
}

/// What a Transfer-Encoding field list asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferCoding {
    /// Exactly `chunked`.
    Chunked,
    /// A coding we do not implement (answer 501).
    Unsupported,
    /// Malformed, empty, `chunked` twice or not last (answer 400).
    Invalid,
}

/// Accumulates Transfer-Encoding values across repeated fields.
#[derive(Debug, Default, Clone, Copy)]
pub struct TransferEncoding {
    pub present: bool,
    chunked_count: u8,
    other: bool,
    last_is_chunked: bool,
    malformed: bool,
}

impl TransferEncoding {
    pub fn add_value(&mut self, value: &[u8]) {
        self.present = true;
        for raw in value.split(|&b| b == b',') {
            let coding = trim_ows(raw);
            if coding.is_empty() {
                continue;
            }
            // Parameters (";q=") are not allowed on the codings we know.
            if !coding.iter().all(|&b| is_tchar(b)) {
                self.malformed = true;
            }
            if coding.eq_ignore_ascii_case(b"chunked") {
                self.chunked_count = self.chunked_count.saturating_add(1);
                self.last_is_chunked = true;
            } else {
                self.other = true;
                self.last_is_chunked = false;
            }
        }
    }

    pub fn verdict(&self) -> TransferCoding {
        if self.malformed
            || self.chunked_count > 1
            || (self.chunked_count == 1 && !self.last_is_chunked)
        {
            TransferCoding::Invalid
        } else if self.other {
            TransferCoding::Unsupported
        } else if self.chunked_count == 1 && self.last_is_chunked {
            TransferCoding::Chunked
        } else {
            TransferCoding::Invalid
        }
    }
}

/// Optional whitespace trimmed from both ends.
pub fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &s[start..end]
}

/// RFC 9110 token character.
pub fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// Validates a Host value (uri-host [":" port]) and returns the host part,
/// lowercased comparison left to the caller. None when malformed.
pub fn split_host(value: &[u8]) -> Option<&[u8]> {
    if value.first() == Some(&b'[') {
        let close = memchr::memchr(b']', value)?;
        let literal = &value[1..close];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        let rest = &value[close + 1..];
        if !rest.is_empty() && !valid_port(rest.strip_prefix(b":")?) {
            return None;
        }
        return Some(&value[..=close]);
    }
    let (host, port) = match memchr::memrchr(b':', value) {
        Some(i) => (&value[..i], Some(&value[i + 1..])),
        None => (value, None),
    };
    if let Some(port) = port
        && !valid_port(port)
    {
        return None;
    }
    let reg_name_ok = host.iter().all(|&b| REG_NAME[usize::from(b)]);
    reg_name_ok.then_some(host)
}

/// The bytes of a host name or IPv4 address (RFC 3986 reg-name:
/// unreserved, sub-delims and the `%` of percent-encoding).
static REG_NAME: [bool; 256] = alnum_and(b"-._~!$&'()*+,;=%");

/// The bytes of an RFC 9110 token (field names, Connection options,
/// codings).
static TCHAR: [bool; 256] = alnum_and(b"!#$%&'*+-.^_`|~");

/// A byte set as a table: ASCII letters and digits plus `extra`. These
/// checks run over every request's Host field and Connection tokens, and
/// one lookup per byte is cheaper than searching a punctuation list for
/// each dot or dash.
const fn alnum_and(extra: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}

fn valid_port(port: &[u8]) -> bool {
    // An empty port is allowed by the URI grammar ("host:").
    port.len() <= 5 && port.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {

    #[test]
    fn token_is_matches_eq_ignore_ascii_case() {
        let names: [&[u8]; 4] = [
            b"connection",
            b"content-length",
            b"proxy-connection",
            b"transfer-encoding",
        ];
        for lower in names {
            let upper = lower.to_ascii_uppercase();
            assert!(token_is(lower, lower) && token_is(&upper, lower));
            for i in 0..lower.len() {
                // Every byte value in every position: the same answer as
                // the byte-wise comparison.
                for b in 0..=255u8 {
                    let mut name = lower.to_vec();
                    name[i] = b;
                    assert_eq!(
                        token_is(&name, lower),
                        name.eq_ignore_ascii_case(lower),
                        "{:?} at {i}",
                        String::from_utf8_lossy(&name)
                    );
                }
            }
            assert!(!token_is(&lower[1..], lower));
        }
    }
    use super::*;

    #[test]
    fn hop_by_hop_names_in_any_case() {
        for name in [
            "connection",
            "Keep-Alive",
            "PROXY-CONNECTION",
            "te",
            "Trailer",
            "transfer-encoding",
            "Upgrade",
            "content-length",
        ] {
            assert!(is_hop_by_hop(name.as_bytes()), "{name}");
        }
        for name in [
            "",
            "t",
            "tE-x",
            "trailers",
            "connections",
            "content-type",
            "x-upgrade",
        ] {
            assert!(!is_hop_by_hop(name.as_bytes()), "{name}");
        }
    }

    #[test]
    fn content_length_values() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b"1234"), Some(1234));
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b"1 ",
            b" 1",
            b"1,1",
            b"0x10",
            b"1234567890123456789",
        ] {
            assert_eq!(parse_content_length(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn transfer_encoding_verdicts() {
        let verdict = |values: &[&[u8]]| {
            let mut te = TransferEncoding::default();
            values.iter().for_each(|v| te.add_value(v));
            te.verdict()
        };
        assert_eq!(verdict(&[b"chunked"]), TransferCoding::Chunked);
        assert_eq!(verdict(&[b"Chunked"]), TransferCoding::Chunked);
        assert_eq!(verdict(&[b"gzip, chunked"]), TransferCoding::Unsupported);
        assert_eq!(verdict(&[b"gzip"]), TransferCoding::Unsupported);
        assert_eq!(verdict(&[b"chunked, gzip"]), TransferCoding::Invalid);
        assert_eq!(verdict(&[b"chunked", b"chunked"]), TransferCoding::Invalid);
        assert_eq!(verdict(&[b""]), TransferCoding::Invalid);
        assert_eq!(verdict(&[b"chunked;q=1"]), TransferCoding::Invalid);
    }

    #[test]
    fn connection_tokens() {
        let mut c = ConnectionOptions::default();
        assert!(c.add_value(b"Keep-Alive, X-Secret"));
        assert!(c.keep_alive && !c.close);
        assert!(c.names(b"x-secret"));
        assert!(!c.names(b"x-other"));
        assert!(!ConnectionOptions::default().add_value(b"bad token"));
    }

    #[test]
    fn hosts() {
        assert_eq!(split_host(b"example.com"), Some(&b"example.com"[..]));
        assert_eq!(split_host(b"example.com:8080"), Some(&b"example.com"[..]));
        assert_eq!(split_host(b"[::1]:80"), Some(&b"[::1]"[..]));
        assert_eq!(split_host(b""), Some(&b""[..]));
        for bad in [
            &b"a b"[..],
            b"a/b",
            b"a@b",
            b"host:99999x",
            b"[zz]",
            b"[::1]x",
        ] {
            assert_eq!(split_host(bad), None, "{:?}", bad);
        }
    }

    #[test]
    fn hop_by_hop_names() {
        for name in [
            &b"Connection"[..],
            b"keep-alive",
            b"Proxy-Connection",
            b"TE",
            b"trailer",
            b"Transfer-Encoding",
            b"UPGRADE",
            b"content-length",
        ] {
            assert!(is_hop_by_hop(name), "{:?}", name);
        }
        for name in [
            &b"t"[..],
            b"tf",
            b"trailers",
            b"upgrad",
            b"connectio",
            b"content-type",
            b"host",
            b"",
        ] {
            assert!(!is_hop_by_hop(name), "{:?}", name);
        }
    }

    /// Every byte: exactly RFC 9110's tchar set.
    #[test]
    fn token_bytes() {
        let allowed = b"!#$%&'*+-.^_`|~";
        for b in 0..=255u8 {
            let expect = b.is_ascii_alphanumeric() || allowed.contains(&b);
            assert_eq!(is_tchar(b), expect, "byte {b:#04x}");
        }
    }

    /// Every byte, in the middle of a host name: exactly RFC 3986's
    /// reg-name set (ALPHA DIGIT "-._~" "!$&'()*+,;=" "%") is accepted.
    #[test]
    fn host_bytes() {
        let allowed = b"-._~!$&'()*+,;=%";
        for b in 0..=255u8 {
            let name = [b'a', b, b'z'];
            let expect = b.is_ascii_alphanumeric() || allowed.contains(&b);
            // ':' is the port separator: "a:z" is host "a" with a bad port.
            if b == b':' {
                assert_eq!(split_host(&name), None);
                continue;
            }
            assert_eq!(split_host(&name).is_some(), expect, "byte {b:#04x}");
        }
    }
}
