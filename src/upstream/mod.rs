//! Upstream side: choosing a server (balancer) and keeping idle keep-alive
//! connections per server (pool). Per worker, single-threaded, no locks.

pub mod balancer;
pub mod pool;

pub use balancer::SmoothWeighted;
pub use pool::{IdlePool, PoolKey};
