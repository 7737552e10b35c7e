//! `auth.jwt`: `Authorization: Bearer` tokens verified by `jsonwebtoken`
//! against the public keys of a JWKS file: the key named by the token's
//! `kid` (or the only key), an algorithm from the configured list that
//! fits the key's type, `exp`/`nbf` with leeway, `iss`/`aud` when
//! configured. The verified claims named in `claims_to_headers` become
//! the identity lines sent upstream.

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// The algorithms a JWKS key may verify (public keys only: an HMAC
/// secret in the file would be a shared secret, and accepting `HS256`
/// next to public keys is how tokens get forged with a public key).
pub const ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// What a verifier is built from, besides the JWKS file.
#[derive(Debug, Clone, Default)]
pub struct JwtOptions {
    pub algorithms: Vec<Algorithm>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_s: u64,
    /// `claims_to_headers`: (claim, header name), in order.
    pub claims_to_headers: Vec<(String, String)>,
}

struct Key {
    kid: Option<String>,
    key: DecodingKey,
    /// The configured algorithms that fit this key's type.
    validation: Validation,
}

/// The keys of a JWKS file and the checks to make.
pub struct JwtVerifier {
    keys: Vec<Key>,
    claims_to_headers: Vec<(String, String)>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<_> = self.keys.iter().map(|k| &k.kid).collect();
        f.debug_struct("JwtVerifier")
            .field("kids", &kids)
            .field("claims_to_headers", &self.claims_to_headers)
            .finish()
    }
}

/// A verified token: its identity lines and when it expires (unix
/// seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub lines: Vec<u8>,
    pub exp: Option<u64>,
}

impl JwtVerifier {
    /// Reads a JWKS document (`{"keys": [...]}`).
    pub fn parse(jwks: &str, options: &JwtOptions) -> Result<JwtVerifier, String> {
        let set: JwkSet = serde_json::from_str(jwks).map_err(|e| format!("not a JWKS: {e}"))?;
        if set.keys.is_empty() {
            return Err("holds no key".into());
        }
        let mut keys = Vec::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            let kid = jwk.common.key_id.clone();
            let which = kid
                .as_deref()
                .map_or_else(|| format!("key {i}"), |k| format!("key `{k}`"));
            if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                return Err(format!("{which}: a symmetric (oct) key is not accepted"));
            }
            let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("{which}: {e}"))?;
            let algorithms: Vec<Algorithm> = options
                .algorithms
                .iter()
                .copied()
                .filter(|a| fits(&jwk.algorithm, *a))
                .collect();
            if algorithms.is_empty() {
                return Err(format!("{which}: fits none of the configured algorithms"));
            }
            let mut validation = Validation::new(algorithms[0]);
            validation.algorithms = algorithms;
            validation.leeway = options.leeway_s;
            validation.validate_nbf = true;
            validation.validate_aud = options.audience.is_some();
            if let Some(aud) = &options.audience {
                validation.set_audience(&[aud]);
            }
            if let Some(iss) = &options.issuer {
                validation.set_issuer(&[iss]);
            }
            // A configured issuer or audience must be in the token, not
            // merely not contradicted by it (the library skips a check
            // whose claim is absent).
            let mut required = vec!["exp"];
            required.extend(options.issuer.as_ref().map(|_| "iss"));
            required.extend(options.audience.as_ref().map(|_| "aud"));
            validation.set_required_spec_claims(&required);
            keys.push(Key {
                kid,
                key,
                validation,
            });
        }
        Ok(JwtVerifier {
            keys,
            claims_to_headers: options.claims_to_headers.clone(),
        })
    }

    /// Verifies `token` (the value after `Bearer `).
    pub fn verify(&self, token: &[u8]) -> Option<Verified> {
        let token = std::str::from_utf8(token).ok()?;
        let header = jsonwebtoken::decode_header(token).ok()?;
        let key = match &header.kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_ref() == Some(kid))?,
            None if self.keys.len() == 1 => &self.keys[0],
            None => return None,
        };
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key.key,
            &key.validation,
        )
        .ok()?;
        let claims = data.claims;
        let mut lines = Vec::new();
        for (claim, header) in &self.claims_to_headers {
            let value = match claims.get(claim) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                    v.to_string()
                }
                _ => continue,
            };
            // A value that would break the head is not sent.
            if value.chars().any(char::is_control) {
                continue;
            }
            lines.extend_from_slice(header.as_bytes());
            lines.extend_from_slice(b": ");
            lines.extend_from_slice(value.as_bytes());
            lines.extend_from_slice(b"\r\n");
        }
        let exp = claims.get("exp").and_then(|v| v.as_u64());
        Some(Verified { lines, exp })
    }
}

/// Whether algorithm `alg` can verify with a key of this type.
fn fits(key: &AlgorithmParameters, alg: Algorithm) -> bool {
    use Algorithm::*;
    match key {
        AlgorithmParameters::RSA(_) => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
        AlgorithmParameters::EllipticCurve(_) => matches!(alg, ES256 | ES384),
        AlgorithmParameters::OctetKeyPair(_) => alg == EdDSA,
        AlgorithmParameters::OctetKey(_) => false,
    }
}

/// The token of an `Authorization: Bearer` value.
pub fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = crate::http::fields::trim_ows(value);
    (value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer "))
        .then(|| crate::http::fields::trim_ows(&value[7..]))
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC_JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1",
        "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

    fn options(algs: &[Algorithm]) -> JwtOptions {
        JwtOptions {
            algorithms: algs.to_vec(),
            ..JwtOptions::default()
        }
    }

    #[test]
    fn reads_a_jwks() {
        let v = JwtVerifier::parse(EC_JWKS, &options(&[Algorithm::ES256])).unwrap();
        assert_eq!(v.keys.len(), 1);
        assert_eq!(v.keys[0].kid.as_deref(), Some("k1"));
        assert_eq!(v.verify(b"not.a.token"), None);
    }

    #[test]
    fn a_key_no_algorithm_fits_is_refused() {
        let e = JwtVerifier::parse(EC_JWKS, &options(&[Algorithm::RS256])).unwrap_err();
        assert_eq!(e, "key `k1`: fits none of the configured algorithms");
        let oct = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#;
        let e = JwtVerifier::parse(oct, &options(&[Algorithm::ES256])).unwrap_err();
        assert_eq!(e, "key 0: a symmetric (oct) key is not accepted");
        assert!(
            JwtVerifier::parse("{", &options(&[]))
                .unwrap_err()
                .starts_with("not a JWKS")
        );
        let none = JwtVerifier::parse(r#"{"keys":[]}"#, &options(&[])).unwrap_err();
        assert_eq!(none, "holds no key");
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Basic abc"), None);
    }
}
