//! Reading a route's `auth`: exactly one of `basic`, `api_key`, `jwt`,
//! and `forward_credentials`. The users, keys and JWKS files are read
//! here, relative to the config's directory, so `--check` and a reload
//! read them again; a file that cannot be read or parsed is a problem of
//! its key (`routes[0].auth.basic.users: ...: line 3: ...`).

use std::path::Path;

use super::suggest::did_you_mean;
use super::walk::{Problems, TableReader};
use crate::pipeline::{ALGORITHMS, ApiKeys, AuthRule, JwtOptions, JwtVerifier, Users};

/// A credentials file larger than this is more likely a wrong path.
const MAX_FILE: u64 = 16 << 20;

const METHODS: [&str; 3] = ["basic", "api_key", "jwt"];

/// The route's `auth`, if it has one without problems.
pub(super) fn auth_rule(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    base: &Path,
) -> Option<AuthRule> {
    let mut a = t.table(p, "auth")?;
    let forward = a.bool(p, "forward_credentials").unwrap_or(false);
    let chosen = METHODS.iter().filter(|k| a.has(k)).count();
    let misspelt = a
        .keys()
        .iter()
        .any(|k| !METHODS.contains(&k.as_str()) && did_you_mean(k, METHODS.into_iter()).is_some());
    if chosen > 1 || (chosen == 0 && !misspelt) {
        p.add(&a.path, "needs exactly one of basic, api_key, jwt");
    }
    let mut rules = Vec::new();
    if let Some(mut b) = a.table(p, "basic") {
        rules.extend(basic(&mut b, p, base, forward));
        b.finish(p);
    }
    if let Some(mut k) = a.table(p, "api_key") {
        rules.extend(api_key(&mut k, p, base, forward));
        k.finish(p);
    }
    if let Some(mut j) = a.table(p, "jwt") {
        rules.extend(jwt(&mut j, p, base, forward));
        j.finish(p);
    }
    a.finish(p);
    if chosen == 1 { rules.pop() } else { None }
}

fn basic(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    base: &Path,
    forward: bool,
) -> Option<AuthRule> {
    let users = parsed_file(t, p, base, "users", Users::parse);
    let realm = t.str(p, "realm").unwrap_or("ringress");
    let identity = header_name(t, p, "identity_header");
    if realm
        .chars()
        .any(|c| c.is_control() || c == '"' || c == '\\')
    {
        p.add(
            t.key_path("realm"),
            "must not contain `\"`, `\\` or control characters",
        );
        return None;
    }
    Some(AuthRule::basic(users?, realm, identity?, forward))
}

fn api_key(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    base: &Path,
    forward: bool,
) -> Option<AuthRule> {
    let keys = parsed_file(t, p, base, "keys", ApiKeys::parse);
    let header = header_name(t, p, "header");
    let name_header = header_name(t, p, "name_header");
    Some(AuthRule::api_key(
        keys?,
        header?.unwrap_or("X-Api-Key"),
        name_header?,
        forward,
    ))
}

fn jwt(t: &mut TableReader<'_>, p: &mut Problems, base: &Path, forward: bool) -> Option<AuthRule> {
    let jwks = file(t, p, base, "jwks");
    let mut ok = true;
    let mut algorithms = Vec::new();
    let path = t.key_path("algorithms");
    match t.strings(p, "algorithms") {
        Some(names) => {
            for name in names {
                match name.parse::<jsonwebtoken::Algorithm>() {
                    Ok(a) if ALGORITHMS.contains(&name) => algorithms.push(a),
                    _ => {
                        ok = false;
                        p.add(path.clone(), super::suggest::not_one_of(name, &ALGORITHMS));
                    }
                }
            }
            if algorithms.is_empty() && ok {
                ok = false;
                p.add(path, "names no algorithm");
            }
        }
        None => {
            ok = false;
            if !t.has("algorithms") {
                p.add(
                    path,
                    "is required: the algorithms tokens may be signed with, like [\"ES256\"]",
                );
            }
        }
    }
    let issuer = t.str(p, "issuer").map(str::to_string);
    let audience = t.str(p, "audience").map(str::to_string);
    let leeway_s = t.duration(p, "leeway").map_or(30, |d| d.as_secs());
    let mut claims_to_headers = Vec::new();
    if let Some(mut c) = t.table(p, "claims_to_headers") {
        for claim in c.keys() {
            let Some(Some(header)) = header_name(&mut c, p, &claim) else {
                ok = false;
                continue;
            };
            claims_to_headers.push((claim, header.to_string()));
        }
        c.finish(p);
    }
    let options = JwtOptions {
        algorithms,
        issuer,
        audience,
        leeway_s,
        claims_to_headers,
    };
    let (file_path, text) = jwks?;
    let verifier = JwtVerifier::parse(&text, &options)
        .map_err(|m| p.add(t.key_path("jwks"), format!("{file_path}: {m}")))
        .ok()?;
    let headers: Vec<&str> = options
        .claims_to_headers
        .iter()
        .map(|(_, h)| h.as_str())
        .collect();
    ok.then(|| AuthRule::jwt(verifier, &headers, forward))
}

/// A header name at `key`: Some(None) when not set, None after a problem.
fn header_name<'a>(
    t: &mut TableReader<'a>,
    p: &mut Problems,
    key: &str,
) -> Option<Option<&'a str>> {
    let Some(name) = t.str(p, key) else {
        return if t.has(key) { None } else { Some(None) };
    };
    let lower = name.to_ascii_lowercase();
    if name.is_empty() || !name.bytes().all(crate::http::fields::is_tchar) {
        p.add(t.key_path(key), "is not a header field name");
        return None;
    }
    if crate::http::fields::is_hop_by_hop(lower.as_bytes())
        || ["content-length", "transfer-encoding", "host", "upgrade"].contains(&lower.as_str())
    {
        p.add(t.key_path(key), format!("`{name}` is managed by the proxy"));
        return None;
    }
    Some(Some(name))
}

/// The file named at `key`, read and parsed; a problem `parse` finds
/// is reported with the file's path.
fn parsed_file<T>(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    base: &Path,
    key: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    let (path, text) = file(t, p, base, key)?;
    parse(&text)
        .map_err(|m| p.add(t.key_path(key), format!("{path}: {m}")))
        .ok()
}

/// The file named at `key`, read relative to `base`: its shown path and
/// its text. A missing key is a problem.
fn file(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    base: &Path,
    key: &str,
) -> Option<(String, String)> {
    let Some(name) = t.str(p, key) else {
        if !t.has(key) {
            p.add(t.key_path(key), "missing: the path of a file");
        }
        return None;
    };
    let shown = base.join(name).display().to_string();
    let read = super::files::read_capped(base, name, MAX_FILE).and_then(|bytes| {
        String::from_utf8(bytes)
            .map_err(|_| format!("cannot read {shown}: stream did not contain valid UTF-8"))
    });
    match read {
        Ok(text) => Some((shown, text)),
        Err(m) => {
            p.add(t.key_path(key), m);
            None
        }
    }
}
