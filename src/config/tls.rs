//! The `tls` tables of listeners and upstream groups: files loaded and
//! checked here, so a bad certificate is a config error with its key path
//! (and a reload with one keeps the running config).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::ServerName;

use super::ListenerTls;
use super::suggest::not_one_of;
use super::walk::{Problems, TableReader};
use crate::tls::{self, CaSource, ClientAuth, KeyOrCert, LoadedCert, ServerSettings};
use crate::upstream::{ServerSpec, UpstreamTls};

/// Reads `tls` of the listener `name`, when present.
pub(super) fn listener_tls(
    listener: &mut TableReader<'_>,
    p: &mut Problems,
    name: &str,
    base: &Path,
    warnings: &mut Vec<String>,
) -> Option<ListenerTls> {
    let mut t = listener.table(p, "tls")?;
    let errors_before = p.errors.len();
    let certs = certs(&mut t, p, base, warnings);
    let default_cert = unknown_sni_default(&mut t, p);
    let tls13_only = tls13_only(&mut t, p);
    let tickets_set = t.has("session_tickets");
    let session_tickets = t.bool(p, "session_tickets").unwrap_or(true);
    let session_cache = t.int(p, "session_cache", 0, 10_000_000).unwrap_or(1024) as usize;
    let handshake_timeout = handshake_timeout(&mut t, p);
    let hsts = hsts(&mut t, p);
    let client = client_certs(&mut t, p, base);
    if client.ca.is_some() && session_tickets && tickets_set {
        p.add(
            t.key_path("session_tickets"),
            "cannot be used with client_ca (a ticket would skip the client certificate check on resumption)",
        );
    }
    let tls_path = t.path.clone();
    t.finish(p);
    if p.errors.len() > errors_before || certs.is_empty() {
        return None;
    }
    // A resumed session skips the client-certificate check (the ticket or
    // cache entry carries the certificate of the first handshake), so
    // with client authentication: no tickets (their key is shared by all
    // listeners), and a session cache keyed on the listener, the mode and
    // the CA bundle's contents, so another listener or a changed CA never
    // accepts a session made under different rules.
    let session_tickets = session_tickets && client.ca.is_none();
    let settings = ServerSettings {
        certs,
        default_cert,
        tls13_only,
        session_tickets,
        session_cache,
        client_auth: client.auth,
        cache_id: session_cache_id(name, client.required, client.ca.as_deref()),
    };
    match tls::server_config(settings) {
        Ok(server) => Some(ListenerTls {
            server,
            handshake_timeout,
            hsts,
            subject_header: client.subject_header,
        }),
        Err(m) => {
            p.add(tls_path, m);
            None
        }
    }
}

/// Reads `certs`, the listener's `{ cert, key }` pairs, loading each one
/// and passing on what loading warns about.
fn certs(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    base: &Path,
    warnings: &mut Vec<String>,
) -> Vec<LoadedCert> {
    let mut certs = Vec::new();
    match t.array(p, "certs") {
        Some([]) => p.add(t.key_path("certs"), "needs at least one certificate"),
        Some(items) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("{}[{i}]", t.key_path("certs"));
                if let Some(loaded) = cert_pair(item, path, p, base) {
                    warnings.extend(loaded.warnings.iter().cloned());
                    certs.push(loaded);
                }
            }
        }
        None if !t.has("certs") => p.add(t.key_path("certs"), "missing"),
        None => {}
    }
    certs
}

/// Reads one entry of `certs` (at `path`) and loads its certificate and key.
fn cert_pair(
    item: &toml::Value,
    path: String,
    p: &mut Problems,
    base: &Path,
) -> Option<LoadedCert> {
    let Some(table) = item.as_table() else {
        p.add(path, "expected { cert = \"PATH\", key = \"PATH\" }");
        return None;
    };
    let mut c = TableReader::new(path, table);
    for required in ["cert", "key"] {
        if !c.has(required) {
            p.add(c.key_path(required), "missing");
        }
    }
    let cert = file(&mut c, p, "cert", base);
    let key = file(&mut c, p, "key", base);
    let mut loaded = None;
    if let (Some(cert), Some(key)) = (cert, key) {
        match tls::load_pair(&cert, &key) {
            Ok(pair) => loaded = Some(pair),
            Err((KeyOrCert::Cert, m)) => p.add(c.key_path("cert"), m),
            Err((KeyOrCert::Key, m)) => p.add(c.key_path("key"), m),
        }
    }
    c.finish(p);
    loaded
}

/// `unknown_sni = "default" | "reject"`: whether a handshake without a
/// known name gets the first certificate.
fn unknown_sni_default(t: &mut TableReader<'_>, p: &mut Problems) -> bool {
    match t.str(p, "unknown_sni") {
        None | Some("default") => true,
        Some("reject") => false,
        Some(other) => {
            p.add(
                t.key_path("unknown_sni"),
                not_one_of(other, &["default", "reject"]),
            );
            true
        }
    }
}

/// `min_version = "1.2" | "1.3"`: whether only TLS 1.3 is offered.
fn tls13_only(t: &mut TableReader<'_>, p: &mut Problems) -> bool {
    match t.str(p, "min_version") {
        None | Some("1.2") => false,
        Some("1.3") => true,
        Some(other) => {
            p.add(
                t.key_path("min_version"),
                format!("`{other}` is not one of \"1.2\", \"1.3\""),
            );
            false
        }
    }
}

/// `handshake_timeout`: 10s unless set, and greater than zero.
fn handshake_timeout(t: &mut TableReader<'_>, p: &mut Problems) -> Duration {
    let timeout = t
        .duration(p, "handshake_timeout")
        .unwrap_or(Duration::from_secs(10));
    if timeout.is_zero() {
        p.add(t.key_path("handshake_timeout"), "must be greater than zero");
    }
    timeout
}

/// `hsts`: the `Strict-Transport-Security` line to add to responses.
fn hsts(t: &mut TableReader<'_>, p: &mut Problems) -> Option<Box<[u8]>> {
    t.str(p, "hsts").and_then(|v| {
        if v.is_empty() || v.bytes().any(|b| b.is_ascii_control()) {
            p.add(t.key_path("hsts"), "must be a non-empty single-line value");
            return None;
        }
        Some(
            format!("Strict-Transport-Security: {v}\r\n")
                .into_bytes()
                .into_boxed_slice(),
        )
    })
}

/// What a listener's `tls` says about client certificates.
struct ClientCerts {
    /// `client_ca`, resolved against the config file's directory.
    ca: Option<PathBuf>,
    /// `client_cert = "required"` (the default) rather than `"optional"`.
    required: bool,
    /// `client_subject_header`, checked.
    subject_header: Option<Box<str>>,
    /// The loaded CA bundle and mode, when `client_ca` loaded.
    auth: Option<ClientAuth>,
}

/// Reads `client_ca`, `client_cert` and `client_subject_header`, and loads
/// the CA bundle.
fn client_certs(t: &mut TableReader<'_>, p: &mut Problems, base: &Path) -> ClientCerts {
    let ca = file(t, p, "client_ca", base);
    let required = match t.str(p, "client_cert") {
        None | Some("required") => true,
        Some("optional") => false,
        Some(other) => {
            p.add(
                t.key_path("client_cert"),
                not_one_of(other, &["required", "optional"]),
            );
            true
        }
    };
    if ca.is_none() && t.has("client_cert") {
        p.add(t.key_path("client_cert"), "needs client_ca");
    }
    let subject_header = subject_header(t, p, ca.is_some());
    let auth = ca
        .as_ref()
        .and_then(|ca| match tls::roots(&CaSource::File(ca.clone())) {
            Ok(roots) => Some(ClientAuth { roots, required }),
            Err(m) => {
                p.add(t.key_path("client_ca"), m);
                None
            }
        });
    ClientCerts {
        ca,
        required,
        subject_header,
        auth,
    }
}

/// `client_subject_header`: a field name the proxy does not write itself,
/// allowed only with `client_ca`.
fn subject_header(t: &mut TableReader<'_>, p: &mut Problems, has_ca: bool) -> Option<Box<str>> {
    let h = t.str(p, "client_subject_header")?;
    if !has_ca {
        p.add(t.key_path("client_subject_header"), "needs client_ca");
        return None;
    }
    let lower = h.to_ascii_lowercase();
    if h.is_empty() || !h.bytes().all(crate::http::fields::is_tchar) {
        p.add(
            t.key_path("client_subject_header"),
            format!("`{h}` is not a header field name"),
        );
        return None;
    }
    if crate::http::fields::is_hop_by_hop(lower.as_bytes())
        || [
            "content-length",
            "transfer-encoding",
            "host",
            "upgrade",
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "via",
        ]
        .contains(&lower.as_str())
    {
        p.add(
            t.key_path("client_subject_header"),
            format!("`{h}` is a field the proxy writes itself"),
        );
        return None;
    }
    Some(Box::<str>::from(h))
}

/// The session cache's key: the listener, the client-certificate mode and
/// the CA bundle's contents.
fn session_cache_id(name: &str, required: bool, client_ca: Option<&Path>) -> u64 {
    let mut h = DefaultHasher::new();
    name.hash(&mut h);
    required.hash(&mut h);
    if let Some(ca) = client_ca {
        std::fs::read(ca).unwrap_or_default().hash(&mut h);
    }
    h.finish()
}

/// Reads `tls` of an upstream group (a table, or `true` for the
/// defaults) and names each server for verification.
pub(super) fn upstream_tls(
    group: &mut TableReader<'_>,
    p: &mut Problems,
    specs: &mut [ServerSpec],
    base: &Path,
) -> Option<UpstreamTls> {
    let value = group.raw("tls")?;
    let empty = toml::Table::new();
    let path = group.key_path("tls");
    let table = match value {
        toml::Value::Boolean(false) => return None,
        toml::Value::Boolean(true) => &empty,
        toml::Value::Table(t) => t,
        other => {
            p.add(
                path,
                format!("expected a table or true, found {}", other.type_str()),
            );
            return None;
        }
    };
    let mut t = TableReader::new(path, table);
    let sni = t
        .str(p, "sni")
        .and_then(|s| match ServerName::try_from(s.to_string()) {
            Ok(n) => Some(n),
            Err(_) => {
                p.add(t.key_path("sni"), format!("`{s}` is not a host name or IP"));
                None
            }
        });
    let ca = match t.str(p, "ca") {
        None | Some("system") => CaSource::System,
        Some(path) => CaSource::File(resolve_path(base, path)),
    };
    let verify = t.bool(p, "verify").unwrap_or(true);
    let client = match tls::client_config(&ca, verify) {
        Ok(c) => Some(c),
        Err(m) => {
            p.add(t.key_path(if verify { "ca" } else { "verify" }), m);
            None
        }
    };
    let sni_text = sni.as_ref().map(|n| n.to_str().into_owned());
    t.finish(p);
    for spec in specs.iter_mut() {
        spec.template.tls_name = match &sni {
            Some(n) => Some(n.clone()),
            None => ServerName::try_from(spec.template.host.clone()).ok(),
        };
        spec.template.tls_name_tag = spec
            .template
            .tls_name
            .as_ref()
            .map_or(0, |n| crate::upstream::hash_bytes(n.to_str().as_bytes()));
    }
    let mut h = DefaultHasher::new();
    (sni_text, &ca, verify).hash(&mut h);
    Some(UpstreamTls {
        client: client?,
        pool_tag: h.finish() | 1,
    })
}

/// A path-valued key, relative to the config file's directory.
fn file(t: &mut TableReader<'_>, p: &mut Problems, key: &str, base: &Path) -> Option<PathBuf> {
    let s = t.str(p, key)?;
    if s.is_empty() {
        p.add(t.key_path(key), "is empty");
        return None;
    }
    Some(resolve_path(base, s))
}

fn resolve_path(base: &Path, s: &str) -> PathBuf {
    let path = Path::new(s);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}
