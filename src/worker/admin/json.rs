//! A small JSON writer for the admin answers (strings escaped, numbers
//! finite), and the running config's TOML rendered as JSON with its
//! secrets left out. Writes into a `String`; no I/O.

use std::fmt::Write;

/// Value shown instead of a secret.
const REDACTED: &str = "<redacted>";

/// Appends `s` as a JSON string.
pub(super) fn string(out: &mut String, s: &str) {
    crate::observe::access::json_str(out, s);
}

/// Appends a float; JSON has no NaN or infinity, so those are `null`.
pub(super) fn float(out: &mut String, x: f64) {
    if x.is_finite() {
        let _ = write!(out, "{x}");
    } else {
        out.push_str("null");
    }
}

/// Appends `"key":` (after a comma unless `first`).
pub(super) fn key(out: &mut String, first: bool, name: &str) {
    if !first {
        out.push(',');
    }
    string(out, name);
    out.push(':');
}

/// Whether a config key holds a secret: tokens, passwords and private
/// keys (a TLS `key` names the private key's file). `hash.key` names what
/// a hashed group balances on and is shown.
fn is_secret(parent: &str, name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    if parent == "hash" && name == "key" {
        return false;
    }
    ["key", "token", "password", "secret"]
        .iter()
        .any(|s| name == *s || name.ends_with(&format!("_{s}")))
}

/// Appends the TOML table as a JSON object, secrets redacted.
pub(super) fn toml_table(out: &mut String, table: &toml::Table, name: &str) {
    out.push('{');
    for (i, (k, v)) in table.iter().enumerate() {
        key(out, i == 0, k);
        if is_secret(name, k) {
            string(out, REDACTED);
        } else {
            toml_value(out, v, k);
        }
    }
    out.push('}');
}

/// `name`: the key the value is under (array items keep their array's).
fn toml_value(out: &mut String, value: &toml::Value, name: &str) {
    match value {
        toml::Value::String(s) => string(out, s),
        toml::Value::Integer(n) => {
            let _ = write!(out, "{n}");
        }
        toml::Value::Float(x) => float(out, *x),
        toml::Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        toml::Value::Datetime(d) => string(out, &d.to_string()),
        toml::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                toml_value(out, item, name);
            }
            out.push(']');
        }
        toml::Value::Table(t) => toml_table(out, t, name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        string(&mut out, "a\"b\\c\nd\u{1}é");
        assert_eq!(out, r#""a\"b\\c\nd\u0001é""#);
    }

    #[test]
    fn floats_stay_json() {
        let mut out = String::new();
        float(&mut out, 0.25);
        out.push(' ');
        float(&mut out, f64::NAN);
        assert_eq!(out, "0.25 null");
    }

    #[test]
    fn config_secrets_are_redacted() {
        let table: toml::Table = r#"
            [admin]
            token = "hunter2"
            [[listeners]]
            name = "tls"
            tls = { certs = [{ cert = "c.pem", key = "k.pem" }] }
            [upstreams.u]
            servers = ["10.0.0.1:80"]
            hash = { key = "header:x-user" }
            db_password = "p"
            api_key = "k"
            keys = 3
        "#
        .parse()
        .unwrap();
        let mut out = String::new();
        toml_table(&mut out, &table, "");
        assert!(!out.contains("hunter2"), "{out}");
        assert!(!out.contains("k.pem"), "{out}");
        assert!(!out.contains("\"p\""), "{out}");
        assert!(!out.contains("\"k\""), "{out}");
        assert!(out.contains(r#""cert":"c.pem""#), "{out}");
        assert!(out.contains(r#""hash":{"key":"header:x-user"}"#), "{out}");
        assert!(out.contains(r#""keys":3"#), "{out}");
        assert!(out.contains(r#""servers":["10.0.0.1:80"]"#), "{out}");
    }
}
