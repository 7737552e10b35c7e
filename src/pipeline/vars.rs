//! Variables in configured values (`"$client_ip"`, `"${host}:8443"`):
//! parsed once when the config loads into a template of fixed text and
//! variable references, rendered per request straight into the caller's
//! buffer. A template without variables is one piece of text, written
//! with one copy.

use std::net::SocketAddr;

use crate::http::encode::write_ip;

/// A value known per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// The client's address (after PROXY protocol and trusted
    /// X-Forwarded-For).
    ClientIp,
    ClientPort,
    /// The request's host, without port (as nginx's `$host`).
    Host,
    /// `http` or `https`.
    Scheme,
    /// A 32-hex-digit id unique to the request.
    RequestId,
    /// The route's name.
    Route,
    /// The listener's name.
    Listener,
    /// `TLSv1.2`, `TLSv1.3`; empty on plain connections.
    TlsVersion,
    /// The server name the client sent in TLS; empty if none.
    Sni,
    /// The verified client certificate's subject; empty if none.
    ClientSubject,
}

const NAMES: &[(&str, Var)] = &[
    ("client_ip", Var::ClientIp),
    ("client_port", Var::ClientPort),
    ("host", Var::Host),
    ("scheme", Var::Scheme),
    ("request_id", Var::RequestId),
    ("route", Var::Route),
    ("listener", Var::Listener),
    ("tls_version", Var::TlsVersion),
    ("sni", Var::Sni),
    ("client_subject", Var::ClientSubject),
];

/// Names other proxies use, and ours for them.
const ALIASES: &[(&str, &str)] = &[
    ("remote_addr", "client_ip"),
    ("remote_port", "client_port"),
    ("http_host", "host"),
    ("ssl_protocol", "tls_version"),
    ("ssl_server_name", "sni"),
    ("ssl_client_s_dn", "client_subject"),
    ("proxy_add_x_forwarded_for", "client_ip"),
];

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(Box<[u8]>),
    Var(Var),
}

/// A configured value with variables, parsed once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `$name` and `${name}` references; `$$` is a literal `$`,
    /// and so is a `$` not followed by a name (`"$5"`). An unknown name
    /// is an error naming the variables there are.
    pub fn parse(value: &str) -> Result<Template, String> {
        let mut t = Template::default();
        let mut text = Vec::new();
        let bytes = value.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b != b'$' {
                text.push(b);
                i += 1;
                continue;
            }
            let (name, next) = match bytes.get(i + 1) {
                Some(b'$') => {
                    text.push(b'$');
                    i += 2;
                    continue;
                }
                Some(b'{') => {
                    let Some(end) = value[i + 2..].find('}') else {
                        return Err(format!("`${{` at byte {i} has no closing `}}`"));
                    };
                    (&value[i + 2..i + 2 + end], i + 3 + end)
                }
                _ => {
                    let len = bytes[i + 1..]
                        .iter()
                        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                        .count();
                    (&value[i + 1..i + 1 + len], i + 1 + len)
                }
            };
            if name.is_empty() || !name.as_bytes()[0].is_ascii_alphabetic() {
                text.push(b'$');
                i += 1;
                continue;
            }
            let var = lookup(name)?;
            t.push_text(&mut text);
            t.parts.push(Part::Var(var));
            i = next;
        }
        t.push_text(&mut text);
        Ok(t)
    }

    /// A template that is this text alone.
    pub fn text(bytes: &[u8]) -> Template {
        let mut t = Template::default();
        t.push_text(&mut bytes.to_vec());
        t
    }

    fn push_text(&mut self, text: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        if let Some(Part::Text(last)) = self.parts.last_mut() {
            let mut joined = last.to_vec();
            joined.append(text);
            *last = joined.into_boxed_slice();
        } else {
            self.parts
                .push(Part::Text(std::mem::take(text).into_boxed_slice()));
        }
    }

    /// Appends another template (adjacent text merged).
    pub fn append(&mut self, other: &Template) {
        for part in &other.parts {
            match part {
                Part::Text(t) => self.push_text(&mut t.to_vec()),
                Part::Var(v) => self.parts.push(Part::Var(*v)),
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Whether rendering needs the request's values.
    pub fn has_vars(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Var(_)))
    }

    pub fn render(&self, out: &mut Vec<u8>, vars: &Vars<'_>) {
        for part in &self.parts {
            match part {
                Part::Text(t) => out.extend_from_slice(t),
                Part::Var(v) => vars.write(*v, out),
            }
        }
    }
}

fn lookup(name: &str) -> Result<Var, String> {
    if let Some(&(_, var)) = NAMES.iter().find(|(n, _)| *n == name) {
        return Ok(var);
    }
    let known = NAMES
        .iter()
        .map(|(n, _)| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ");
    match ALIASES.iter().find(|(alias, _)| *alias == name) {
        Some((_, ours)) => Err(format!(
            "unknown variable `${name}`: ringress calls it `${ours}` (variables: {known})"
        )),
        None => Err(format!("unknown variable `${name}` (variables: {known})")),
    }
}

/// The values of one request, for rendering.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    pub client: SocketAddr,
    pub host: &'a [u8],
    pub tls: bool,
    /// The request's id (see `RequestText::request_id`).
    pub request_id: &'a [u8],
    pub route: &'a str,
    pub listener: &'a str,
    pub tls_version: &'static str,
    pub sni: &'a [u8],
    pub client_subject: &'a [u8],
}

impl Vars<'_> {
    fn write(&self, var: Var, out: &mut Vec<u8>) {
        match var {
            Var::ClientIp => write_ip(out, self.client.ip()),
            Var::ClientPort => {
                out.extend_from_slice(itoa::Buffer::new().format(self.client.port()).as_bytes())
            }
            Var::Host => out.extend_from_slice(self.host),
            Var::Scheme => out.extend_from_slice(if self.tls { b"https" } else { b"http" }),
            Var::RequestId => out.extend_from_slice(self.request_id),
            Var::Route => out.extend_from_slice(self.route.as_bytes()),
            Var::Listener => out.extend_from_slice(self.listener.as_bytes()),
            Var::TlsVersion => out.extend_from_slice(self.tls_version.as_bytes()),
            Var::Sni => out.extend_from_slice(self.sni),
            Var::ClientSubject => out.extend_from_slice(self.client_subject),
        }
    }
}

/// A request's id: the worker's random start value and a count of its
/// requests, written as 32 hex digits (the shape of nginx's
/// `$request_id`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestId {
    pub seed: u64,
    pub seq: u64,
}

impl RequestId {
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut id = [0u8; 32];
        let (seed, seq) = id.split_at_mut(16);
        hex16(self.seed, seed);
        hex16(self.seq, seq);
        out.extend_from_slice(&id);
    }
}

/// `word` as 16 lower-case hex digits, most significant first: each
/// nibble spread into a byte of its own, then all eight of a half turned
/// into digits at once (no table, no loop over digits).
fn hex16(word: u64, out: &mut [u8]) {
    for (half, chunk) in [(word >> 32) as u32, word as u32]
        .into_iter()
        .zip(out.chunks_exact_mut(8))
    {
        let mut x = u64::from(half);
        x = ((x & 0xffff_0000) << 16) | (x & 0xffff);
        x = ((x & 0x0000_ff00_0000_ff00) << 8) | (x & 0x0000_00ff_0000_00ff);
        x = ((x & 0x00f0_00f0_00f0_00f0) << 4) | (x & 0x000f_000f_000f_000f);
        // One nibble per byte, the most significant in the top byte:
        // '0' + n for 0-9, 'a' + n - 10 for 10-15.
        let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
        let digits = x + 0x3030_3030_3030_3030 + letters * u64::from(b'a' - b'0' - 10);
        chunk.copy_from_slice(&digits.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars<'static> {
        Vars {
            client: "192.0.2.7:51234".parse().unwrap(),
            host: b"example.com",
            tls: true,
            request_id: b"0000000000000abc000000000000002a",
            route: "api",
            listener: "main",
            tls_version: "TLSv1.3",
            sni: b"example.com",
            client_subject: b"CN=alice",
        }
    }

    fn render(value: &str) -> String {
        let mut out = Vec::new();
        Template::parse(value).unwrap().render(&mut out, &vars());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn renders_each_variable() {
        assert_eq!(render("$client_ip"), "192.0.2.7");
        assert_eq!(render("$client_port"), "51234");
        assert_eq!(render("$host"), "example.com");
        assert_eq!(render("$scheme"), "https");
        assert_eq!(render("$request_id"), "0000000000000abc000000000000002a");
        assert_eq!(render("$route@$listener"), "api@main");
        assert_eq!(render("$tls_version $sni"), "TLSv1.3 example.com");
        assert_eq!(render("$client_subject"), "CN=alice");
    }

    #[test]
    fn hex_digits_of_every_nibble() {
        for word in [
            0u64,
            u64::MAX,
            0x0123_4567_89ab_cdef,
            0xfedc_ba98_7654_3210,
            1 << 63,
        ] {
            let mut out = [0u8; 16];
            hex16(word, &mut out);
            assert_eq!(std::str::from_utf8(&out).unwrap(), format!("{word:016x}"));
        }
    }

    #[test]
    fn generated_request_ids() {
        let mut out = Vec::new();
        RequestId {
            seed: 0xabc,
            seq: 42,
        }
        .write(&mut out);
        assert_eq!(out, b"0000000000000abc000000000000002a");
    }

    #[test]
    fn braces_dollars_and_plain_text() {
        assert_eq!(render("${host}x"), "example.comx");
        assert_eq!(render("$$host"), "$host");
        assert_eq!(render("costs $5 or $"), "costs $5 or $");
        assert_eq!(render("no variables"), "no variables");
        let fixed = Template::parse("a $$ b").unwrap();
        assert!(!fixed.has_vars());
        assert_eq!(fixed, Template::text(b"a $ b"));
    }

    #[test]
    fn unknown_names_are_errors_with_a_hint() {
        let e = Template::parse("$remote_addr").unwrap_err();
        assert!(e.contains("`$client_ip`"), "{e}");
        let e = Template::parse("${nope}").unwrap_err();
        assert!(e.contains("unknown variable `$nope`"), "{e}");
        assert!(Template::parse("${host").is_err());
    }

    #[test]
    fn ipv6_clients() {
        let mut v = vars();
        v.client = "[2001:db8::1]:443".parse().unwrap();
        let mut out = Vec::new();
        Template::parse("$client_ip").unwrap().render(&mut out, &v);
        assert_eq!(out, b"2001:db8::1");
    }
}
