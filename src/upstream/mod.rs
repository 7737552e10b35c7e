//! Upstream servers: choosing one (balancers, consistent hashing), their
//! shared health, and the per-worker pool of idle connections.

mod balancer;
mod health;
mod maglev;
mod pool;

pub use balancer::{GroupState, Outcome, Rng, hash_bytes};
pub use health::ServerHealth;
pub use maglev::Maglev;
pub use pool::{IdlePool, PoolKey};
