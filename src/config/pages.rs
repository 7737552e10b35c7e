//! `error_pages = { 502 = "errors/502.html" }`, at the top level and per
//! route: the operator's own page per status, read when the config
//! compiles (so a reload re-reads them), in both connection forms.

use std::path::Path;
use std::sync::Arc;

use super::walk::{Problems, TableReader};
use crate::router::{ErrorPages, Respond};

/// A page larger than this is more likely a wrong path than a page.
const MAX_PAGE: u64 = 1 << 20;

/// The `error_pages` of table `t` laid over `inherited`: the same `Arc`
/// when `t` sets none.
pub(super) fn error_pages(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    base: &Path,
    inherited: &Arc<ErrorPages>,
) -> Arc<ErrorPages> {
    let Some(mut table) = t.table(p, "error_pages") else {
        return inherited.clone();
    };
    let mut pages = ErrorPages::clone(inherited);
    for key in table.keys() {
        let path = table.key_path(&key);
        let file = table.str(p, &key);
        let status = match key.parse::<u16>() {
            Ok(s) if (400..=599).contains(&s) => s,
            _ => {
                p.add(path, "is not an error status (400 to 599)");
                continue;
            }
        };
        let Some(file) = file else { continue };
        match super::files::read_capped(base, file, MAX_PAGE) {
            Ok(body) => pages.set(Respond::new(status, &body, content_type(file))),
            Err(m) => p.add(path, m),
        }
    }
    table.finish(p);
    Arc::new(pages)
}

/// The page's type, from its file name.
fn content_type(file: &str) -> &'static str {
    let ext = Path::new(file)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        _ => "text/plain; charset=utf-8",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_by_extension() {
        assert_eq!(content_type("e/502.HTML"), "text/html; charset=utf-8");
        assert_eq!(content_type("e.json"), "application/json");
        assert_eq!(content_type("e"), "text/plain; charset=utf-8");
    }
}
