//! The control plane: threads off the request path. Starting, reloading
//! and draining the proxy (`server`), active health checks, DNS-based
//! discovery, and starting the admin listener (served by worker 0). It
//! steers the workers through `shared` and never runs on a worker's core
//! loop. Also what the binary needs to operate it: the process log's
//! destination, what a reload changed, and finding a running instance.

mod changes;
mod discovery;
mod health;
pub mod instance;
pub mod process_log;
pub mod server;

pub(crate) use changes::changes;
