//! The response-side filters a route can turn on: caching in a zone and
//! compressing bodies. Compiled with the config; read by the phases.

use crate::compress::{Algorithm, TypePattern};

/// `cache = { zone = "NAME", key = [...], ttl = { STATUS = "60s" } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRule {
    /// Position of the zone in `Config::caches`.
    pub zone: usize,
    /// Request values added to the key.
    pub key: Vec<KeyPart>,
    /// Seconds of freshness per status, for responses that give none.
    pub ttl: Vec<(u16, u32)>,
}

/// A request value that splits the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// `header:NAME` (lowercase name).
    Header(Box<[u8]>),
    /// `cookie:NAME`.
    Cookie(Box<[u8]>),
}

/// `compress = { algorithms, min_size, types, level }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompressRule {
    /// In the route's order of preference.
    pub algorithms: Vec<Algorithm>,
    /// Bodies known to be smaller are sent as they are.
    pub min_size: u64,
    pub types: Vec<TypePattern>,
    pub level: Option<u32>,
}

/// The default `types`.
pub const DEFAULT_TYPES: &[&str] = &[
    "text/*",
    "application/json",
    "application/javascript",
    "application/xml",
    "image/svg+xml",
];
