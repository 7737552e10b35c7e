//! Upstream servers: the group types, choosing a server (balancers,
//! consistent hashing), their shared health, and the per-worker pool of
//! idle connections. Knows nothing of the config file.

mod balancer;
mod group;
mod health;
mod maglev;
mod pool;

pub use balancer::{GroupState, Outcome, Rng, hash_bytes};
pub use group::{
    Balance, HashKey, HealthCheck, Outlier, ServerConfig, ServerSpec, UpstreamGroup, UpstreamTls,
};
pub use health::{AdminState, ServerHealth, ServerView};
pub use maglev::Maglev;
pub use pool::{IdlePool, PoolKey};
