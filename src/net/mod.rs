//! Network-level pieces with no I/O: address ranges (CIDR) and access
//! lists over them (`acl`), the PROXY
//! protocol header (v1 text, v2 binary), read and written, and the
//! shared counts of open client connections (`conn_limit`).

pub mod acl;
pub mod cidr;
pub mod conn_limit;
pub mod proxy_protocol;

pub use acl::{IpAccess, Verdict};
pub use cidr::{Cidr, CidrSet};
