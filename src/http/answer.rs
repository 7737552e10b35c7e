//! Pre-rendered answers the proxy generates itself. Bodies are small and
//! fixed and never name an upstream. Each comes in a keep-alive and a
//! closing form so the connection decision costs no formatting.

macro_rules! answers {
    ($($code:literal $reason:literal $body_len:literal;)*) => {
        /// The pre-rendered answer for `status`, ending the connection or
        /// not; None for a status without one (see `render_answer`).
        pub fn prerendered(status: u16, close: bool) -> Option<&'static [u8]> {
            match (status, close) {
                $(
                    ($code, false) => Some(concat!(
                        "HTTP/1.1 ", $code, " ", $reason, "\r\n",
                        "Content-Type: text/plain; charset=utf-8\r\n",
                        "Content-Length: ", $body_len, "\r\n",
                        "\r\n", $reason, "\n"
                    ).as_bytes()),
                    ($code, true) => Some(concat!(
                        "HTTP/1.1 ", $code, " ", $reason, "\r\n",
                        "Content-Type: text/plain; charset=utf-8\r\n",
                        "Content-Length: ", $body_len, "\r\n",
                        "Connection: close\r\n",
                        "\r\n", $reason, "\n"
                    ).as_bytes()),
                )*
                _ => None,
            }
        }

        /// The reason phrase for a status (standard ones; empty if unknown).
        pub fn reason(status: u16) -> &'static str {
            match status {
                $($code => $reason,)*
                _ => other_reason(status),
            }
        }

        #[cfg(test)]
        const GENERATED: &[u16] = &[$($code),*];
    };
}

// Body length is the reason plus its newline; a test checks each one.
answers! {
    400 "Bad Request" "12";
    403 "Forbidden" "10";
    404 "Not Found" "10";
    405 "Method Not Allowed" "19";
    408 "Request Timeout" "16";
    413 "Content Too Large" "18";
    414 "URI Too Long" "13";
    417 "Expectation Failed" "19";
    429 "Too Many Requests" "18";
    431 "Request Header Fields Too Large" "32";
    500 "Internal Server Error" "22";
    501 "Not Implemented" "16";
    502 "Bad Gateway" "12";
    503 "Service Unavailable" "20";
    504 "Gateway Timeout" "16";
}

/// The head of a rendered response, without its body (for a HEAD
/// request); all of it when no head end is found.
pub fn head_of(response: &[u8]) -> &[u8] {
    memchr::memmem::find(response, b"\r\n\r\n").map_or(response, |i| &response[..i + 4])
}

/// Renders a generated answer for a status without a pre-rendered one
/// (an upstream status passed on after its response was dropped for a
/// retry that could not happen): same shape, the reason as its body.
pub fn render_answer(out: &mut Vec<u8>, status: u16, close: bool) {
    render_answer_with(out, status, |_| {}, (close, false));
}

/// `render_answer` with the field lines `fields` writes after the content
/// type (a 429's `Retry-After`, a 401's `WWW-Authenticate`); `head`: a
/// HEAD request, so the length and no body.
pub fn render_answer_with(
    out: &mut Vec<u8>,
    status: u16,
    fields: impl FnOnce(&mut Vec<u8>),
    (close, head): (bool, bool),
) {
    let reason = reason(status);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\nContent-Type: text/plain; charset=utf-8\r\n");
    fields(out);
    super::encode::write_content_length(out, reason.len() as u64 + 1);
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head {
        out.extend_from_slice(reason.as_bytes());
        out.push(b'\n');
    }
}

fn other_reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        401 => "Unauthorized",
        402 => "Payment Required",
        406 => "Not Acceptable",
        409 => "Conflict",
        410 => "Gone",
        415 => "Unsupported Media Type",
        418 => "I'm a teapot",
        451 => "Unavailable For Legal Reasons",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        _ => "",
    }
}

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_lengths_match_bodies() {
        for &code in GENERATED {
            for close in [false, true] {
                let raw = std::str::from_utf8(prerendered(code, close).unwrap()).unwrap();
                let (head, body) = raw.split_once("\r\n\r\n").unwrap();
                assert!(head.starts_with(&format!("HTTP/1.1 {code} ")));
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .unwrap()
                    .parse()
                    .unwrap();
                assert_eq!(len, body.len(), "{code}");
                assert_eq!(head.contains("Connection: close"), close);
                // A rendered answer is byte for byte the pre-rendered one.
                let mut rendered = Vec::new();
                render_answer(&mut rendered, code, close);
                assert_eq!(rendered, raw.as_bytes(), "{code}");
            }
        }
    }

    #[test]
    fn other_statuses_are_rendered_not_turned_into_500() {
        assert_eq!(prerendered(507, false), None);
        let mut out = Vec::new();
        render_answer(&mut out, 507, true);
        assert_eq!(
            out,
            b"HTTP/1.1 507 Insufficient Storage\r\nContent-Type: text/plain; charset=utf-8\r\n\
              Content-Length: 21\r\nConnection: close\r\n\r\nInsufficient Storage\n"
        );
    }
}
