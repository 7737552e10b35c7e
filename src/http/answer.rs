//! Pre-rendered answers the proxy generates itself. Bodies are small and
//! fixed and never name an upstream. Each comes in a keep-alive and a
//! closing form so the connection decision costs no formatting.

macro_rules! answers {
    ($($code:literal $reason:literal $body_len:literal;)*) => {
        /// The full answer for `status`, ending the connection or not.
        pub fn error_answer(status: u16, close: bool) -> &'static [u8] {
            match (status, close) {
                $(
                    ($code, false) => concat!(
                        "HTTP/1.1 ", $code, " ", $reason, "\r\n",
                        "Content-Type: text/plain; charset=utf-8\r\n",
                        "Content-Length: ", $body_len, "\r\n",
                        "\r\n", $reason, "\n"
                    ).as_bytes(),
                    ($code, true) => concat!(
                        "HTTP/1.1 ", $code, " ", $reason, "\r\n",
                        "Content-Type: text/plain; charset=utf-8\r\n",
                        "Content-Length: ", $body_len, "\r\n",
                        "Connection: close\r\n",
                        "\r\n", $reason, "\n"
                    ).as_bytes(),
                )*
                (_, close) => error_answer(500, close),
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
                let raw = std::str::from_utf8(error_answer(code, close)).unwrap();
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
            }
        }
    }
}
