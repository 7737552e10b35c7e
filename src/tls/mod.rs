//! TLS: terminating it on listeners (certificates chosen by SNI, optional
//! client certificates) and speaking it to upstreams, with rustls (ring
//! crypto, no OpenSSL) driven over monoio sockets by our own adapter.

mod certs;
mod client;
mod server;
mod stream;

pub use certs::{KeyOrCert, LoadedCert, load_certs, load_pair};
pub use client::{CaSource, client_config, roots};
pub use server::{ClientAuth, ServerSettings, client_subject, server_config};
pub use stream::{TlsReadHalf, TlsStream, TlsWriteHalf};

use std::sync::Arc;

/// The crypto every TLS config is built with.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
