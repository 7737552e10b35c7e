//! The response cache's domain: RFC 9111 policy (what may be stored, how
//! fresh it is, conditional requests, `Cache-Status`) and the
//! per-core store with its eviction. Pure: no I/O, no runtime; the data
//! plane (`worker::cache`) calls it.

mod evict;
pub mod object;
pub mod policy;
pub mod store;
pub mod zone;
