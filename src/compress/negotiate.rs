//! `Accept-Encoding` negotiation (RFC 9110 12.5.3): picks one of the route's
//! codings from the request's field lines without allocating.

use super::Algorithm;

/// A weight in thousandths: `q=0.5` is 500, no `q` is 1000.
type Weight = u16;

/// What the request said about each coding, folded over all its elements.
#[derive(Default)]
struct Weights {
    /// Indexed by [`slot`]; `None` = not named.
    named: [Option<Weight>; 3],
    star: Option<Weight>,
    identity: Option<Weight>,
}

fn slot(alg: Algorithm) -> usize {
    match alg {
        Algorithm::Zstd => 0,
        Algorithm::Brotli => 1,
        Algorithm::Gzip => 2,
    }
}

/// Picks the coding for a response: `accept` are the request's
/// Accept-Encoding field values (several lines possible), `offered` is the
/// route's list in preference order. Highest q wins, the route's order breaks
/// ties; `q=0` refuses; `*` stands for any coding the request does not name.
/// `None`: send identity.
///
/// Choices where the RFC leaves room, all on the side of sending what the
/// client surely decodes:
/// * no field at all → `None`: the RFC allows any coding, but clients that
///   omit the field (scripts, probes) often cannot decode one;
/// * identity competes only when named: `gzip;q=0.5, identity` → `None`,
///   `gzip;q=0.5` alone → gzip; on a tie with identity the coding wins;
/// * `identity;q=0` with nothing acceptable offered still gives `None` (the
///   caller sends identity rather than a 406, as servers commonly do);
/// * an element with a malformed `q` is ignored, as if absent;
/// * a coding named twice takes its highest weight.
pub fn negotiate<'a>(
    accept: impl Iterator<Item = &'a [u8]> + Clone,
    offered: &[Algorithm],
) -> Option<Algorithm> {
    let weights = collect(accept);
    let mut best: Option<(Algorithm, Weight)> = None;
    for &alg in offered {
        let q = weights.named[slot(alg)].or(weights.star).unwrap_or(0);
        if q > 0 && best.is_none_or(|(_, b)| q > b) {
            best = Some((alg, q));
        }
    }
    let (alg, q) = best?;
    (q >= weights.identity.unwrap_or(0)).then_some(alg)
}

fn collect<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Weights {
    let mut w = Weights::default();
    for element in lines.flat_map(|line| line.split(|&b| b == b',')) {
        let Some((coding, q)) = parse_element(element) else {
            continue;
        };
        let entry = if coding == b"*" {
            &mut w.star
        } else if coding.eq_ignore_ascii_case(b"identity") {
            &mut w.identity
        } else if let Some(alg) = Algorithm::from_token_bytes(coding) {
            &mut w.named[slot(alg)]
        } else {
            continue;
        };
        *entry = Some(entry.map_or(q, |old| old.max(q)));
    }
    w
}

/// `coding *( OWS ";" OWS param )` → the coding and its weight; `None` for an
/// empty element (`a,,b` is allowed by the list syntax) or a malformed `q`.
fn parse_element(element: &[u8]) -> Option<(&[u8], Weight)> {
    let mut parts = element.split(|&b| b == b';');
    let coding = trim(parts.next()?);
    if coding.is_empty() {
        return None;
    }
    let mut q = 1000;
    for param in parts.map(trim) {
        if let Some(value) = param.strip_prefix(b"q=").or(param.strip_prefix(b"Q=")) {
            q = parse_qvalue(value)?;
        }
    }
    Some((coding, q))
}

/// `qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )`.
fn parse_qvalue(v: &[u8]) -> Option<Weight> {
    let (int, frac) = match v.split_first()? {
        (b'0', rest) => (0, rest),
        (b'1', rest) => (1000, rest),
        _ => return None,
    };
    let digits = match frac {
        [] => return Some(int),
        [b'.', digits @ ..] if digits.len() <= 3 => digits,
        _ => return None,
    };
    let mut thousandths = 0;
    for (i, &d) in digits.iter().enumerate() {
        if !d.is_ascii_digit() || (int == 1000 && d != b'0') {
            return None;
        }
        thousandths += Weight::from(d - b'0') * [100, 10, 1][i];
    }
    Some(int + thousandths)
}

fn trim(s: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = s.iter().position(|b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &s[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use Algorithm::{Brotli as Br, Gzip, Zstd};

    const ALL: &[Algorithm] = &[Zstd, Br, Gzip];

    fn pick(lines: &[&str], offered: &[Algorithm]) -> Option<Algorithm> {
        negotiate(lines.iter().map(|l| l.as_bytes()), offered)
    }

    #[test]
    fn negotiation_table() {
        let table: &[(&[&str], &[Algorithm], Option<Algorithm>)] = &[
            // Plain lists: the route's order decides among equals.
            (&["gzip, deflate, br, zstd"], ALL, Some(Zstd)),
            (&["gzip, deflate, br"], ALL, Some(Br)),
            (&["gzip"], ALL, Some(Gzip)),
            (&["gzip, br"], &[Gzip, Br], Some(Gzip)),
            (&["deflate"], ALL, None),
            // q-values beat the route's order.
            (&["zstd;q=0.5, gzip"], ALL, Some(Gzip)),
            (&["br;q=0.9, gzip;q=0.8"], &[Gzip, Br], Some(Br)),
            (&["br;q=0.001"], ALL, Some(Br)),
            // Refusals.
            (&["gzip;q=0"], ALL, None),
            (&["gzip;q=0.000, br"], &[Gzip], None),
            (&["*;q=0"], ALL, None),
            // `*` covers what is not named; a named weight wins over it.
            (&["*"], ALL, Some(Zstd)),
            (&["*;q=0.5, zstd;q=0"], ALL, Some(Br)),
            (&["*;q=0.1, gzip;q=0.8"], ALL, Some(Gzip)),
            // identity competes only when named.
            (&["gzip;q=0.5, identity"], ALL, None),
            (&["gzip;q=0.5"], ALL, Some(Gzip)),
            (&["gzip, identity"], ALL, Some(Gzip)),
            (&["identity;q=0, deflate"], ALL, None),
            (&["identity;q=0, gzip"], ALL, Some(Gzip)),
            // Case, whitespace, aliases, empty elements, several lines.
            (&["GZIP;Q=1.0"], ALL, Some(Gzip)),
            (&[" \tbr \t; q=0.5 ,, x-gzip ;q=0.4"], ALL, Some(Br)),
            (&["x-gzip"], ALL, Some(Gzip)),
            (&["gzip;q=0.2", "br;q=0.3"], ALL, Some(Br)),
            (&["", ","], ALL, None),
            (&[], ALL, None),
            // Malformed q: the element is ignored.
            (&["br;q=2, gzip"], ALL, Some(Gzip)),
            (&["br;q=1.5, gzip;q=0.1"], ALL, Some(Gzip)),
            (&["br;q=0.1234, gzip;q=0.1"], ALL, Some(Gzip)),
            (&["br;q=, gzip;q=0.1"], ALL, Some(Gzip)),
            (&["br;q=abc"], ALL, None),
            (&["br;q=-1"], ALL, None),
            // Other parameters are ignored; a coding named twice keeps its best.
            (&["br;level=3"], ALL, Some(Br)),
            (&["gzip;q=0, gzip;q=0.5"], ALL, Some(Gzip)),
            // Nothing offered.
            (&["gzip"], &[], None),
        ];
        for (lines, offered, want) in table {
            assert_eq!(pick(lines, offered), *want, "{lines:?} offered {offered:?}");
        }
    }

    #[test]
    fn qvalues() {
        let table: &[(&str, Option<Weight>)] = &[
            ("1", Some(1000)),
            ("1.", Some(1000)),
            ("1.000", Some(1000)),
            ("1.001", None),
            ("0", Some(0)),
            ("0.5", Some(500)),
            ("0.05", Some(50)),
            ("0.123", Some(123)),
            ("0.1234", None),
            ("0.x", None),
            ("2", None),
            ("", None),
            (".5", None),
        ];
        for &(s, want) in table {
            assert_eq!(parse_qvalue(s.as_bytes()), want, "{s:?}");
        }
    }
}
