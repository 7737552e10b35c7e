//! ringress: a thread-per-core HTTP/1.1 reverse proxy on monoio (io_uring).
//!
//! The leaves (`http`, `router`, `config`) never touch the runtime, so the
//! benches and tests call them directly; `worker` and `server` own all I/O.
//! All `unsafe` lives in `sys`; every other module forbids it (`worker`
//! only denies it until its last system call moves there).
#![deny(unsafe_code)]

#[forbid(unsafe_code)]
pub mod admin;
#[forbid(unsafe_code)]
pub mod config;
#[forbid(unsafe_code)]
mod discovery;
#[forbid(unsafe_code)]
pub mod error;
#[forbid(unsafe_code)]
pub mod geo;
#[forbid(unsafe_code)]
mod health;
#[forbid(unsafe_code)]
pub mod http;
#[forbid(unsafe_code)]
pub mod net;
#[forbid(unsafe_code)]
pub mod router;
#[forbid(unsafe_code)]
pub mod server;
#[forbid(unsafe_code)]
mod shared;
#[allow(unsafe_code)]
mod sys;
#[forbid(unsafe_code)]
pub mod tls;
#[forbid(unsafe_code)]
pub mod upstream;
mod worker;

pub use config::{Config, ConfigErrors};
pub use server::{IoMode, Reloader, ServerHandle, ServerOptions};
/// For the binary: the allocator's collect and the huge-page switch.
pub use sys::{huge_pages_disabled, release_memory, set_huge_pages_disabled};
