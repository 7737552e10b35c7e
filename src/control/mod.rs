//! The control plane: threads off the request path. Starting, reloading
//! and draining the proxy (`server`), active health checks, DNS-based
//! discovery, and starting the admin listener (served by worker 0). It
//! steers the workers through `shared` and never runs on a worker's core
//! loop.

mod discovery;
mod health;
pub mod server;
