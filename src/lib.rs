//! ringress: a thread-per-core HTTP/1.1 reverse proxy on monoio (io_uring).
//!
//! Dependencies point one way: the leaves (`http`, `router`, `net`, `geo`,
//! `error`, and `tls` over `sys`) → the domain (`upstream`, `pipeline`) →
//! `config` → `shared` (with `counters`) → the data plane (`rt` under
//! `worker`) → the control plane (`control`: server, health, discovery,
//! starting the admin listener). The leaves and `config` never touch the
//! runtime, so the benches and tests call them directly.
//! All `unsafe` lives in `sys`; every other module forbids it.
#![deny(unsafe_code)]

#[forbid(unsafe_code)]
pub mod cache;
#[forbid(unsafe_code)]
pub mod compress;
#[forbid(unsafe_code)]
pub mod config;
#[forbid(unsafe_code)]
mod control;
#[forbid(unsafe_code)]
pub mod counters;
#[forbid(unsafe_code)]
pub mod error;
#[forbid(unsafe_code)]
pub mod geo;
#[forbid(unsafe_code)]
pub mod http;
#[forbid(unsafe_code)]
pub mod limit;
#[forbid(unsafe_code)]
pub mod net;
#[forbid(unsafe_code)]
pub mod observe;
#[forbid(unsafe_code)]
pub mod pipeline;
#[forbid(unsafe_code)]
pub mod router;
#[forbid(unsafe_code)]
mod rt;
#[forbid(unsafe_code)]
mod shared;
#[allow(unsafe_code)]
mod sys;
#[cfg(test)]
#[forbid(unsafe_code)]
mod test_dir;
#[forbid(unsafe_code)]
pub mod tls;
#[forbid(unsafe_code)]
pub mod upstream;
#[forbid(unsafe_code)]
mod worker;

pub use config::{Config, ConfigErrors};
pub use control::server;
pub use control::server::{IoMode, Reloader, ServerHandle, ServerOptions};
pub use control::{instance, process_log};
/// For the binary: the allocator's collect and the huge-page switch.
pub use sys::{huge_pages_disabled, release_memory, set_huge_pages_disabled};
