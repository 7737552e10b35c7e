//! The control plane: threads off the request path. Starting, reloading
//! and draining the proxy (`server`), active health checks, DNS-based
//! discovery, and the admin listener. It steers the workers through
//! `shared` and never runs on a worker's core loop.

pub mod admin;
mod discovery;
mod health;
pub mod server;
