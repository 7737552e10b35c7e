//! Network-level pieces with no I/O: address ranges (CIDR) and the PROXY
//! protocol header (v1 text, v2 binary), read and written.

pub mod cidr;
pub mod proxy_protocol;

pub use cidr::{Cidr, CidrSet};
