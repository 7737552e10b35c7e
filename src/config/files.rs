//! Files a config names (error pages, users, keys, JWKS), read whole when
//! the config compiles, relative to the config file's directory.

use std::path::Path;

/// The bytes of `base`/`name`, refused (with the reason as a problem's
/// message) when it cannot be read or is over `max` bytes: a file that
/// large is more likely a wrong path than what was meant.
pub(super) fn read_capped(base: &Path, name: &str, max: u64) -> Result<Vec<u8>, String> {
    let path = base.join(name);
    let shown = path.display();
    let len = std::fs::metadata(&path)
        .map_err(|e| format!("cannot read {shown}: {e}"))?
        .len();
    if len > max {
        return Err(format!("{shown} is {len} bytes; at most {max}"));
    }
    std::fs::read(&path).map_err(|e| format!("cannot read {shown}: {e}"))
}
