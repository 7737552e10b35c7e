//! The auth filter: a route's `auth` (basic, api_key or jwt) checked in
//! the request phase, before the route's rate limits. A request without
//! valid credentials ends in a 401 whose `WWW-Authenticate` says how to
//! authenticate (rendered here). A verified identity goes upstream only
//! in the configured header(s), which are always removed from what the
//! client sent first; the credentials themselves are removed unless
//! `forward_credentials = true`. Pure policy: the files were read with
//! the config, and the worker owns the cache of verified credentials.

mod api_key;
mod basic;
mod cache;
mod jwt;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

pub use api_key::ApiKeys;
pub use basic::Users;
pub use cache::AuthCache;
pub use jwt::{ALGORITHMS, JwtOptions, JwtVerifier};

use crate::error::{ErrorKind, ProxyError};
use crate::http::RequestHead;
use crate::http::encode::{FieldEdits, write_field};

/// How long a verified user name or key is reused without checking the
/// file's hash again (a reload starts over: the generation is part of the
/// cache key).
const VERIFIED_TTL_S: u64 = 300;

/// Key files with more keys than this are checked once per key and then
/// found in the cache: every key is compared with, so a check costs in
/// proportion to the file.
const CACHE_KEYS_FROM: usize = 64;

/// One of the three ways to authenticate.
#[derive(Debug, Clone)]
enum AuthMethod {
    /// `basic = { users, realm, identity_header }`.
    Basic {
        users: Arc<Users>,
        identity_header: Option<Box<str>>,
    },
    /// `api_key = { header, keys, name_header }`.
    ApiKey {
        keys: Arc<ApiKeys>,
        name_header: Option<Box<str>>,
    },
    /// `jwt = { jwks, issuer, audience, algorithms, leeway, claims_to_headers }`.
    Jwt(Arc<JwtVerifier>),
}

/// A route's `auth`, compiled.
#[derive(Debug, Clone)]
pub struct AuthRule {
    method: AuthMethod,
    /// The field that carries the credentials (lower case).
    credential: Box<[u8]>,
    /// Fields left out of the upstream head (lower case): the identity
    /// headers, and the credentials unless forwarded.
    drop: Vec<Box<[u8]>>,
    /// `WWW-Authenticate` values: without credentials, with bad ones.
    missing: Box<str>,
    invalid: Box<str>,
}

/// Rules are compared by what they check: the same files read once.
impl PartialEq for AuthRule {
    fn eq(&self, other: &Self) -> bool {
        let same_method = match (&self.method, &other.method) {
            (
                AuthMethod::Basic {
                    users: a,
                    identity_header: x,
                },
                AuthMethod::Basic {
                    users: b,
                    identity_header: y,
                },
            ) => Arc::ptr_eq(a, b) && x == y,
            (
                AuthMethod::ApiKey {
                    keys: a,
                    name_header: x,
                },
                AuthMethod::ApiKey {
                    keys: b,
                    name_header: y,
                },
            ) => Arc::ptr_eq(a, b) && x == y,
            (AuthMethod::Jwt(a), AuthMethod::Jwt(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same_method
            && self.credential == other.credential
            && self.drop == other.drop
            && self.missing == other.missing
            && self.invalid == other.invalid
    }
}

impl Eq for AuthRule {}

/// Why a request was refused, for its challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Refusal {
    /// No credentials (of the route's kind) were sent.
    #[default]
    Missing,
    /// Credentials were sent and are not valid.
    Invalid,
}

impl AuthRule {
    /// `identity`: the header names the identity may be sent in.
    fn new(
        method: AuthMethod,
        credential: &str,
        (forward_credentials, identity): (bool, &[&str]),
        (missing, invalid): (String, String),
    ) -> AuthRule {
        let mut drop: Vec<Box<[u8]>> = identity
            .iter()
            .map(|n| n.to_ascii_lowercase().into_bytes().into())
            .collect();
        let credential: Box<[u8]> = credential.to_ascii_lowercase().into_bytes().into();
        if !forward_credentials {
            drop.push(credential.clone());
        }
        AuthRule {
            method,
            credential,
            drop,
            missing: missing.into(),
            invalid: invalid.into(),
        }
    }

    /// `basic`: `WWW-Authenticate: Basic realm="REALM"`.
    pub fn basic(
        users: Users,
        realm: &str,
        identity_header: Option<&str>,
        forward_credentials: bool,
    ) -> AuthRule {
        let challenge = format!("Basic realm=\"{realm}\"");
        AuthRule::new(
            AuthMethod::Basic {
                users: Arc::new(users),
                identity_header: identity_header.map(Into::into),
            },
            "authorization",
            (forward_credentials, identity_header.as_slice()),
            (challenge.clone(), challenge),
        )
    }

    /// `api_key`: `WWW-Authenticate: ApiKey header="HEADER"`.
    pub fn api_key(
        keys: ApiKeys,
        header: &str,
        name_header: Option<&str>,
        forward_credentials: bool,
    ) -> AuthRule {
        let challenge = format!("ApiKey header=\"{header}\"");
        AuthRule::new(
            AuthMethod::ApiKey {
                keys: Arc::new(keys),
                name_header: name_header.map(Into::into),
            },
            header,
            (forward_credentials, name_header.as_slice()),
            (challenge.clone(), challenge),
        )
    }

    /// `jwt`: `WWW-Authenticate: Bearer` without a token, `Bearer
    /// error="invalid_token"` with a bad one (RFC 6750 3.1).
    pub fn jwt(verifier: JwtVerifier, headers: &[&str], forward_credentials: bool) -> AuthRule {
        AuthRule::new(
            AuthMethod::Jwt(Arc::new(verifier)),
            "authorization",
            (forward_credentials, headers),
            ("Bearer".into(), "Bearer error=\"invalid_token\"".into()),
        )
    }

    /// The `WWW-Authenticate` value for a refusal.
    pub fn challenge(&self, refusal: Refusal) -> &str {
        match refusal {
            Refusal::Missing => &self.missing,
            Refusal::Invalid => &self.invalid,
        }
    }

    /// Whether the upstream head leaves out a field of this name.
    pub fn drops(&self, name: &[u8]) -> bool {
        self.drop.iter().any(|d| name.eq_ignore_ascii_case(d))
    }
}

/// A worker's auth state: its cache of verified credentials, and why the
/// last refused request was refused (for its challenge).
#[derive(Debug, Default)]
pub struct AuthState {
    pub cache: AuthCache,
    pub last: Refusal,
}

/// What the request phase needs to check a route's auth.
pub struct RequestAuth<'a> {
    pub state: &'a mut AuthState,
    /// The snapshot's generation and the route's position (so a cached
    /// credential counts for this route of this config only).
    pub generation: u64,
    pub route: usize,
}

impl RequestAuth<'_> {
    /// Checks the request's credentials; on success appends the identity
    /// lines to `identity`.
    pub(super) fn check(
        &mut self,
        rule: &AuthRule,
        req: &RequestHead<'_, '_>,
        identity: &mut Vec<u8>,
    ) -> Result<(), ProxyError> {
        let value = req
            .headers
            .iter()
            .find(|h| h.name.as_bytes().eq_ignore_ascii_case(&rule.credential))
            .map(|h| crate::http::fields::trim_ows(h.value))
            .filter(|v| !v.is_empty());
        let result = match value {
            None => Err(Refusal::Missing),
            Some(value) => self.verify(rule, value, identity),
        };
        result.map_err(|refusal| {
            self.state.last = refusal;
            ProxyError::downstream(ErrorKind::Unauthorized)
        })
    }

    fn verify(
        &mut self,
        rule: &AuthRule,
        value: &[u8],
        identity: &mut Vec<u8>,
    ) -> Result<(), Refusal> {
        let credential = match &rule.method {
            // With a few keys, comparing with each is cheaper than a
            // cache look-up (two hashes of the key).
            AuthMethod::ApiKey { keys, name_header } if keys.len() <= CACHE_KEYS_FROM => {
                return api_key(keys, name_header.as_deref(), value, identity);
            }
            AuthMethod::ApiKey { .. } => value,
            AuthMethod::Basic { .. } if basic::is_basic(value) => value,
            AuthMethod::Basic { .. } => return Err(Refusal::Invalid),
            // Another scheme is no bearer token (RFC 6750 3.1).
            AuthMethod::Jwt(_) => jwt::bearer(value).ok_or(Refusal::Missing)?,
        };
        let now = unix_now();
        let tag = self
            .state
            .cache
            .tag(self.generation, self.route, credential);
        if let Some(lines) = self.state.cache.get(tag, now) {
            identity.extend_from_slice(lines);
            return Ok(());
        }
        let start = identity.len();
        let expires = match &rule.method {
            AuthMethod::Basic {
                users,
                identity_header,
            } => {
                let name = users.verify(credential).ok_or(Refusal::Invalid)?;
                if let Some(header) = identity_header {
                    write_field(identity, header.as_bytes(), name.as_bytes());
                }
                now + VERIFIED_TTL_S
            }
            AuthMethod::Jwt(verifier) => {
                let verified = verifier.verify(credential).ok_or(Refusal::Invalid)?;
                identity.extend_from_slice(&verified.lines);
                // Never past the token's own expiry.
                verified
                    .exp
                    .map_or(now + VERIFIED_TTL_S, |exp| exp.min(now + VERIFIED_TTL_S))
            }
            AuthMethod::ApiKey { keys, name_header } => {
                api_key(keys, name_header.as_deref(), credential, identity)?;
                now + VERIFIED_TTL_S
            }
        };
        self.state.cache.put(tag, expires, &identity[start..]);
        Ok(())
    }
}

/// Checks an API key; on success appends the key's name line.
fn api_key(
    keys: &ApiKeys,
    name_header: Option<&str>,
    value: &[u8],
    identity: &mut Vec<u8>,
) -> Result<(), Refusal> {
    let name = keys.verify(value).ok_or(Refusal::Invalid)?;
    if let Some(header) = name_header.filter(|_| !name.is_empty()) {
        write_field(identity, header.as_bytes(), name.as_bytes());
    }
    Ok(())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The upstream request's edits with the auth filter's: its fields left
/// out (credentials, forged identities) and the verified identity lines
/// appended.
pub struct WithIdentity<'a, E> {
    pub rule: Option<&'a AuthRule>,
    pub lines: &'a [u8],
    pub inner: &'a E,
}

impl<E: FieldEdits> FieldEdits for WithIdentity<'_, E> {
    fn drops(&self, name: &[u8]) -> bool {
        self.rule.is_some_and(|r| r.drops(name)) || self.inner.drops(name)
    }

    fn append(&self, out: &mut Vec<u8>) {
        self.inner.append(out);
        out.extend_from_slice(self.lines);
    }
}

/// Renders the 401 to a request `rule` refused (`head`: a HEAD request,
/// the length and no body).
pub fn render_unauthorized(
    out: &mut Vec<u8>,
    (error, challenge): (&ProxyError, &str),
    (close, head): (bool, bool),
) {
    let status = error.status().unwrap_or(401);
    let fields = |out: &mut Vec<u8>| write_field(out, b"WWW-Authenticate", challenge.as_bytes());
    crate::http::answer::render_answer_with(out, status, fields, (close, head));
}

/// The entries of a users or keys file: each line trimmed, with its
/// number from 1, blank lines and `#` comments left out.
fn file_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_401_carries_its_challenge() {
        let e = ProxyError::downstream(ErrorKind::Unauthorized);
        let mut out = Vec::new();
        render_unauthorized(&mut out, (&e, "Bearer"), (false, false));
        let get = "HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain; charset=utf-8\r\n\
                   WWW-Authenticate: Bearer\r\nContent-Length: 13\r\n\r\nUnauthorized\n";
        assert_eq!(String::from_utf8(out).unwrap(), get);
        let mut out = Vec::new();
        render_unauthorized(&mut out, (&e, "Bearer"), (true, true));
        let head = get.replace("\r\n\r\nUnauthorized\n", "\r\nConnection: close\r\n\r\n");
        assert_eq!(String::from_utf8(out).unwrap(), head);
    }

    /// Runs `rule` on a request with `header`: the identity lines, or why
    /// it was refused.
    fn check(rule: &AuthRule, state: &mut AuthState, header: &str) -> Result<Vec<u8>, Refusal> {
        let raw = format!("GET / HTTP/1.1\r\nHost: x\r\n{header}\r\n");
        let mut headers = crate::http::empty_headers();
        let limits = crate::http::HeadLimits::default();
        let req = crate::http::parse_request(raw.as_bytes(), &mut headers, &limits)
            .unwrap()
            .unwrap();
        let mut identity = Vec::new();
        let mut auth = RequestAuth {
            state,
            generation: 1,
            route: 0,
        };
        match auth.check(rule, &req, &mut identity) {
            Ok(()) => Ok(identity),
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::Unauthorized);
                Err(auth.state.last)
            }
        }
    }

    #[test]
    fn a_large_key_file_is_checked_once_per_key() {
        let text: String = (0..200).map(|i| format!("key-{i} name-{i}\n")).collect();
        let rule = AuthRule::api_key(
            ApiKeys::parse(&text).unwrap(),
            "X-Api-Key",
            Some("X-Name"),
            false,
        );
        let mut state = AuthState::default();
        for _ in 0..2 {
            let lines = check(&rule, &mut state, "X-Api-Key: key-150\r\n").unwrap();
            assert_eq!(lines, b"X-Name: name-150\r\n");
        }
        let tag = state.cache.tag(1, 0, b"key-150");
        assert_eq!(
            state.cache.get(tag, unix_now()),
            Some(&b"X-Name: name-150\r\n"[..])
        );
        assert_eq!(
            check(&rule, &mut state, "X-Api-Key: key-200\r\n"),
            Err(Refusal::Invalid)
        );
        assert_eq!(check(&rule, &mut state, ""), Err(Refusal::Missing));
        // A small file is compared with directly, nothing cached.
        let small = AuthRule::api_key(ApiKeys::parse("k1\n").unwrap(), "X-Api-Key", None, false);
        let mut state = AuthState::default();
        assert_eq!(
            check(&small, &mut state, "X-Api-Key: k1\r\n"),
            Ok(Vec::new())
        );
        assert_eq!(
            state.cache.get(state.cache.tag(1, 0, b"k1"), unix_now()),
            None
        );
    }

    #[test]
    fn a_bearer_route_refuses_other_schemes_as_missing() {
        let jwks = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"Uh9olnaO8kv8m8pdcCYrnb7VEN2M6lFjINEa_iBhUpA"}]}"#;
        let options = JwtOptions {
            algorithms: vec![jsonwebtoken::Algorithm::EdDSA],
            ..JwtOptions::default()
        };
        let rule = AuthRule::jwt(JwtVerifier::parse(jwks, &options).unwrap(), &[], false);
        let mut state = AuthState::default();
        let basic = "Authorization: Basic YTpi\r\n";
        assert_eq!(check(&rule, &mut state, basic), Err(Refusal::Missing));
        assert_eq!(rule.challenge(Refusal::Missing), "Bearer");
        let bad = "Authorization: Bearer a.b.c\r\n";
        assert_eq!(check(&rule, &mut state, bad), Err(Refusal::Invalid));
        assert_eq!(
            rule.challenge(Refusal::Invalid),
            "Bearer error=\"invalid_token\""
        );
    }

    #[test]
    fn drops_credentials_unless_forwarded_and_identities_always() {
        let keys = ApiKeys::parse("k1 svc\n").unwrap();
        let rule = AuthRule::api_key(keys.clone(), "X-Api-Key", Some("X-Key-Name"), false);
        assert!(rule.drops(b"x-api-key") && rule.drops(b"X-Key-Name"));
        assert!(!rule.drops(b"authorization"));
        assert_eq!(
            rule.challenge(Refusal::Missing),
            "ApiKey header=\"X-Api-Key\""
        );
        let kept = AuthRule::api_key(keys, "X-Api-Key", Some("X-Key-Name"), true);
        assert!(!kept.drops(b"x-api-key") && kept.drops(b"x-key-name"));
    }
}
