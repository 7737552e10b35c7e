//! The rustls server side of a TLS listener: certificates chosen by SNI
//! (exact names, then wildcards, then the default or a refusal), ALPN,
//! protocol versions, session resumption and client certificates.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{
    ClientHello, NoServerSessionStorage, ProducesTickets, ResolvesServerCert, ServerConfig,
    StoresServerSessions, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::LoadedCert;

/// What a listener's TLS table asks for, files already loaded.
pub struct ServerSettings {
    pub certs: Vec<LoadedCert>,
    /// Serve the first certificate when SNI is missing or unknown
    /// (otherwise refuse the handshake).
    pub default_cert: bool,
    pub tls13_only: bool,
    pub session_tickets: bool,
    /// Session-ID cache entries per worker; 0 turns it off.
    pub session_cache: usize,
    pub client_auth: Option<ClientAuth>,
    /// Identifies the listener's session cache across reloads.
    pub cache_id: u64,
}

pub struct ClientAuth {
    pub roots: RootCertStore,
    pub required: bool,
}

pub fn server_config(s: ServerSettings) -> Result<Arc<ServerConfig>, String> {
    let provider = super::provider();
    let versions: &[&rustls::SupportedProtocolVersion] = if s.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?;
    let builder = match s.client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(auth.roots), provider);
            let verifier = if auth.required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier: Arc<dyn ClientCertVerifier> =
                verifier.build().map_err(|e| format!("client CA: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config =
        builder.with_cert_resolver(Arc::new(SniResolver::new(s.certs, s.default_cert)));
    // Only what we serve: a client that can speak nothing but h2 fails
    // the handshake instead of sending frames we cannot parse.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.session_storage = if s.session_cache > 0 {
        Arc::new(PerCoreSessions {
            id: s.cache_id,
            capacity: s.session_cache,
        })
    } else {
        Arc::new(NoServerSessionStorage {})
    };
    if s.session_tickets {
        config.ticketer = ticketer()?;
    }
    Ok(Arc::new(config))
}

/// One ticket key for the whole process (rotated by rustls), kept across
/// reloads, so a ticket resumes on any worker and after a reload.
fn ticketer() -> Result<Arc<dyn ProducesTickets>, String> {
    static TICKETER: OnceLock<Arc<dyn ProducesTickets>> = OnceLock::new();
    if let Some(t) = TICKETER.get() {
        return Ok(t.clone());
    }
    let made = rustls::crypto::ring::Ticketer::new().map_err(|e| e.to_string())?;
    Ok(TICKETER.get_or_init(|| made).clone())
}

/// Picks the certificate for a ClientHello's server name.
#[derive(Debug)]
struct SniResolver {
    exact: HashMap<String, usize>,
    /// `*.example.com` stored as `example.com`.
    wildcard: HashMap<String, usize>,
    certs: Vec<Arc<CertifiedKey>>,
    default_cert: bool,
}

impl SniResolver {
    fn new(loaded: Vec<LoadedCert>, default_cert: bool) -> SniResolver {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut certs = Vec::with_capacity(loaded.len());
        for (i, cert) in loaded.into_iter().enumerate() {
            for name in cert.names {
                // The first certificate listed for a name wins.
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_string()).or_insert(i),
                    None => exact.entry(name).or_insert(i),
                };
            }
            certs.push(cert.key);
        }
        SniResolver {
            exact,
            wildcard,
            certs,
            default_cert,
        }
    }

    fn find(&self, name: &str) -> Option<usize> {
        let name = name.trim_end_matches('.');
        if let Some(&i) = self.exact.get(name) {
            return Some(i);
        }
        // A wildcard covers exactly one label.
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).copied()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // rustls hands over SNI already validated and lower-cased.
        let found = hello.server_name().and_then(|n| self.find(n));
        match found {
            Some(i) => self.certs.get(i).cloned(),
            None if self.default_cert => self.certs.first().cloned(),
            None => None,
        }
    }
}

/// TLS session-ID cache held per worker thread: no lock shared between
/// cores. A client resumes on the worker that served it before (tickets,
/// when on, resume anywhere).
struct PerCoreSessions {
    id: u64,
    capacity: usize,
}

#[derive(Default)]
struct SessionShard {
    map: HashMap<Vec<u8>, Vec<u8>>,
    /// Insertion order, for eviction; may name keys already taken.
    order: VecDeque<Vec<u8>>,
}

thread_local! {
    static SESSIONS: RefCell<HashMap<u64, SessionShard>> = RefCell::new(HashMap::new());
}

impl PerCoreSessions {
    fn with<R>(&self, f: impl FnOnce(&mut SessionShard) -> R) -> R {
        SESSIONS.with(|s| f(s.borrow_mut().entry(self.id).or_default()))
    }
}

impl fmt::Debug for PerCoreSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerCoreSessions")
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl StoresServerSessions for PerCoreSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.with(|shard| {
            while shard.map.len() >= self.capacity {
                match shard.order.pop_front() {
                    Some(old) => {
                        shard.map.remove(&old);
                    }
                    None => break,
                }
            }
            if shard.order.len() >= 2 * self.capacity {
                // Only stale keys can make the queue this long.
                let map = &shard.map;
                shard.order.retain(|k| map.contains_key(k));
            }
            if shard.map.insert(key.clone(), value).is_none() {
                shard.order.push_back(key);
            }
            true
        })
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.with(|shard| shard.map.get(key).cloned())
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.with(|shard| shard.map.remove(key))
    }

    fn can_cache(&self) -> bool {
        true
    }
}

/// The subject of a verified client certificate, as `CN=alice,O=Example`.
pub fn client_subject(cert: &[u8]) -> Option<String> {
    let (_, x509) = X509Certificate::from_der(cert).ok()?;
    let mut out = String::new();
    for rdn in x509.subject().iter() {
        for attr in rdn.iter() {
            let Ok(value) = attr.as_str() else { continue };
            let key = x509_parser::objects::oid2abbrev(
                attr.attr_type(),
                x509_parser::objects::oid_registry(),
            )
            .map(str::to_string)
            .unwrap_or_else(|_| attr.attr_type().to_id_string());
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&key);
            out.push('=');
            escape_dn_value(value, &mut out);
        }
    }
    Some(out)
}

/// RFC 4514 escaping, so a value cannot pass for more attributes
/// (`CN=a,O=Admins` as one CN); control characters become `?` to keep the
/// header one safe line.
fn escape_dn_value(value: &str, out: &mut String) {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if c.is_control() {
            out.push('?');
            continue;
        }
        if special {
            out.push('\\');
        }
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_values_are_escaped() {
        let mut out = String::new();
        escape_dn_value("alice,O=Admins", &mut out);
        assert_eq!(out, "alice\\,O\\=Admins");
        out.clear();
        escape_dn_value("#x y ", &mut out);
        assert_eq!(out, "\\#x y\\ ");
        out.clear();
        escape_dn_value("a\nb", &mut out);
        assert_eq!(out, "a?b");
    }

    #[test]
    fn wildcard_covers_one_label() {
        let r = SniResolver {
            exact: HashMap::from([("x.b.test".to_string(), 0)]),
            wildcard: HashMap::from([("b.test".to_string(), 1)]),
            certs: Vec::new(),
            default_cert: true,
        };
        assert_eq!(r.find("x.b.test"), Some(0));
        assert_eq!(r.find("y.b.test"), Some(1));
        assert_eq!(r.find("y.b.test."), Some(1));
        assert_eq!(r.find("b.test"), None);
        assert_eq!(r.find("z.y.b.test"), None);
    }

    #[test]
    fn session_cache_evicts_oldest() {
        let c = PerCoreSessions { id: 7, capacity: 2 };
        c.put(b"a".to_vec(), b"1".to_vec());
        c.put(b"b".to_vec(), b"2".to_vec());
        c.put(b"c".to_vec(), b"3".to_vec());
        assert_eq!(c.get(b"a"), None);
        assert_eq!(c.get(b"b").as_deref(), Some(&b"2"[..]));
        assert_eq!(c.take(b"c").as_deref(), Some(&b"3"[..]));
        assert_eq!(c.get(b"c"), None);
    }
}
