//! ringress: a thread-per-core HTTP/1.1 reverse proxy on monoio (io_uring).
//!
//! The leaves (`http`, `router`, `config`) never touch the runtime, so the
//! benches and tests call them directly; `worker` and `server` own all I/O.
#![deny(unsafe_code)]

pub mod admin;
pub mod config;
pub mod counters;
mod discovery;
pub mod error;
pub mod geo;
mod health;
pub mod http;
pub mod net;
pub mod pipeline;
pub mod router;
pub mod server;
pub mod tls;
pub mod upstream;
mod worker;

pub use config::{Config, ConfigErrors};
pub use server::{IoMode, Reloader, ServerHandle, ServerOptions};
