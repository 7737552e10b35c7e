//! What a reload changes, as the operator reads it in the process log:
//! one line per kind of change (listeners, certificates, routes, upstream
//! groups and their servers). Pure: it compares two snapshots and never
//! touches the running proxy.

use crate::config::{Config, ListenerConfig};

/// The changes from `old` to `new`, one line per kind; empty when the two
/// serve the same listeners, certificates, routes and servers.
pub fn changes(old: &Config, new: &Config) -> Vec<String> {
    let mut lines = Vec::new();
    listeners(old, new, &mut lines);
    certificates(old, new, &mut lines);
    let route_names =
        |c: &Config| -> Vec<String> { c.routes.routes.iter().map(|r| r.name.clone()).collect() };
    added_removed("routes", &route_names(old), &route_names(new), &mut lines);
    let group_names =
        |c: &Config| -> Vec<String> { c.upstreams.iter().map(|g| g.name.clone()).collect() };
    added_removed(
        "upstream groups",
        &group_names(old),
        &group_names(new),
        &mut lines,
    );
    for group in &new.upstreams {
        let Some(before) = old.upstreams.iter().find(|g| g.name == group.name) else {
            continue;
        };
        let addrs = |g: &crate::config::UpstreamGroup| -> Vec<String> {
            g.servers.iter().map(|s| s.addr.to_string()).collect()
        };
        added_removed(
            &format!("upstream `{}` servers", group.name),
            &addrs(before),
            &addrs(group),
            &mut lines,
        );
    }
    if old.log != new.log {
        lines.push("[log] changed: takes effect at the next start".to_string());
    }
    if old.admin.bind != new.admin.bind {
        lines.push("[admin] bind changed: takes effect at the next start".to_string());
    }
    lines
}

fn listener_label(l: &ListenerConfig) -> String {
    format!("{} ({})", l.name, l.bind)
}

fn listeners(old: &Config, new: &Config, lines: &mut Vec<String>) {
    let labels = |c: &Config| -> Vec<String> { c.listeners.iter().map(listener_label).collect() };
    added_removed("listeners", &labels(old), &labels(new), lines);
}

/// Listeners whose certificates differ. A listener that is added or
/// removed is already named by `listeners`.
fn certificates(old: &Config, new: &Config, lines: &mut Vec<String>) {
    let mut changed = Vec::new();
    for l in &new.listeners {
        let Some(before) = old.listeners.iter().find(|o| o.name == l.name) else {
            continue;
        };
        if cert_chains(before) != cert_chains(l) {
            changed.push(l.name.as_str());
        }
    }
    if !changed.is_empty() {
        lines.push(format!("certificates changed: {}", changed.join(", ")));
    }
}

/// The certificates a listener serves, in order (empty without TLS).
/// rustls gives no way to list a resolver's certificates, but every
/// resolver is `Debug` and ours prints each chain's DER as
/// `CertificateDer(0x…)`; everything else in it (name maps in hash
/// order) is left out, so two loads of the same files compare equal.
fn cert_chains(l: &ListenerConfig) -> Vec<String> {
    let Some(tls) = &l.tls else {
        return Vec::new();
    };
    let text = format!("{:?}", tls.server.cert_resolver);
    let mut chains = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("CertificateDer(") {
        let from = &rest[start..];
        let end = from.find(')').unwrap_or(from.len());
        chains.push(from[..end].to_string());
        rest = &from[end..];
    }
    chains
}

/// `<what> added: a, b` and `<what> removed: c` lines, in the order the
/// items appear in their config.
fn added_removed(what: &str, old: &[String], new: &[String], lines: &mut Vec<String>) {
    let added: Vec<&str> = new
        .iter()
        .filter(|n| !old.contains(n))
        .map(String::as_str)
        .collect();
    let removed: Vec<&str> = old
        .iter()
        .filter(|o| !new.contains(o))
        .map(String::as_str)
        .collect();
    if !added.is_empty() {
        lines.push(format!("{what} added: {}", added.join(", ")));
    }
    if !removed.is_empty() {
        lines.push(format!("{what} removed: {}", removed.join(", ")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TempDir;

    fn config(listeners: &[(&str, &str)], routes: &[&str], servers: &[&str]) -> Config {
        let mut toml = String::new();
        for (name, bind) in listeners {
            toml.push_str(&format!(
                "[[listeners]]\nname = \"{name}\"\nbind = \"{bind}\"\n"
            ));
        }
        for route in routes {
            toml.push_str(&format!(
                "[[routes]]\nname = \"{route}\"\npath_prefix = \"/{route}\"\nupstream = \"backend\"\n"
            ));
        }
        let servers: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
        toml.push_str(&format!(
            "[upstreams.backend]\nservers = [{}]\n",
            servers.join(", ")
        ));
        Config::from_toml_str(&toml).unwrap_or_else(|e| panic!("test config: {e}"))
    }

    #[test]
    fn the_same_config_changes_nothing() {
        let a = config(&[("web", "127.0.0.1:0")], &["api"], &["127.0.0.1:9001"]);
        let b = config(&[("web", "127.0.0.1:0")], &["api"], &["127.0.0.1:9001"]);
        assert_eq!(changes(&a, &b), Vec::<String>::new());
    }

    #[test]
    fn one_line_per_kind_of_change() {
        let old = config(
            &[("web", "127.0.0.1:8080"), ("old", "127.0.0.1:8081")],
            &["api", "static"],
            &["127.0.0.1:9001", "127.0.0.1:9002"],
        );
        let new = config(
            &[("web", "127.0.0.1:8080"), ("new", "127.0.0.1:8082")],
            &["api", "admin", "login"],
            &["127.0.0.1:9002", "127.0.0.1:9003"],
        );
        assert_eq!(
            changes(&old, &new),
            vec![
                "listeners added: new (127.0.0.1:8082)",
                "listeners removed: old (127.0.0.1:8081)",
                "routes added: admin, login",
                "routes removed: static",
                "upstream `backend` servers added: 127.0.0.1:9003",
                "upstream `backend` servers removed: 127.0.0.1:9001",
            ]
        );
    }

    #[test]
    fn a_listener_moved_to_another_address_is_removed_and_added() {
        let old = config(&[("web", "127.0.0.1:8080")], &["api"], &["127.0.0.1:9001"]);
        let new = config(&[("web", "127.0.0.1:8090")], &["api"], &["127.0.0.1:9001"]);
        assert_eq!(
            changes(&old, &new),
            vec![
                "listeners added: web (127.0.0.1:8090)",
                "listeners removed: web (127.0.0.1:8080)",
            ]
        );
    }

    #[test]
    fn upstream_groups_added_and_removed() {
        let old = config(&[("web", "127.0.0.1:0")], &["api"], &["127.0.0.1:9001"]);
        let text = "[[listeners]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n\
            [[routes]]\nname = \"api\"\npath_prefix = \"/api\"\nupstream = \"other\"\n\
            [upstreams.other]\nservers = [\"127.0.0.1:9001\"]\n";
        let new = Config::from_toml_str(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            changes(&old, &new),
            vec![
                "upstream groups added: other",
                "upstream groups removed: backend"
            ]
        );
    }

    /// A config with one TLS listener serving a new self-signed
    /// certificate for `name`, written under `dir`.
    fn tls_config(dir: &std::path::Path, name: &str) -> Config {
        let made = rcgen::generate_simple_self_signed(vec![name.to_string()])
            .unwrap_or_else(|e| panic!("certificate: {e}"));
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, made.cert.pem()).expect("write cert");
        std::fs::write(&key, made.signing_key.serialize_pem()).expect("write key");
        let text = format!(
            "[[listeners]]\nname = \"https\"\nbind = \"127.0.0.1:0\"\n\
             [listeners.tls]\ncerts = [{{ cert = \"{}\", key = \"{}\" }}]\n\
             [[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"backend\"\n\
             [upstreams.backend]\nservers = [\"127.0.0.1:9001\"]\n",
            cert.display(),
            key.display()
        );
        Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn certificates_changed_only_when_the_files_did() {
        let dir = TempDir::new("changes");
        let first = tls_config(&dir, "a.test");
        let again = Config::from_toml_str(&format!(
            "[[listeners]]\nname = \"https\"\nbind = \"127.0.0.1:0\"\n\
             [listeners.tls]\ncerts = [{{ cert = \"{0}/a.test.pem\", key = \"{0}/a.test.key\" }}]\n\
             [[routes]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"backend\"\n\
             [upstreams.backend]\nservers = [\"127.0.0.1:9001\"]\n",
            dir.display()
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!cert_chains(&first.listeners[0]).is_empty());
        assert_eq!(changes(&first, &again), Vec::<String>::new());
        let other = tls_config(&dir, "b.test");
        assert_eq!(changes(&first, &other), vec!["certificates changed: https"]);
    }
}
