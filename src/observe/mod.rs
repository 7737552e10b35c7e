//! Observability that runs beside the request path: access log lines and
//! their writer thread, per-worker metrics tables, and their rendering
//! for the admin listener. Workers write only their own state; the
//! control side reads what they publish.

pub mod access;
pub mod clock;
pub mod metrics;
pub mod render;
pub mod writer;

pub use writer::AccessSink;
