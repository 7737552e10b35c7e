//! A TOML walker that reads typed values by key path and keeps going after
//! a problem, so `--check` lists every mistake at once (with its path), and
//! reports keys nobody read as unknown (with the nearest key it knows).

use std::fmt;
use std::time::Duration;

use super::suggest::did_you_mean;
use super::units::{check_duration, parse_duration, parse_size};

/// One problem in a config file, located by its key path (array entries
/// with a `name` shown with it: `routes[2] "api".upstream`) and, once the
/// file has been looked at again with spans, its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
    pub line: Option<usize>,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
            line: None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors, and warnings about likely mistakes, while the config
/// is read.
#[derive(Default)]
pub struct Problems {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

impl Problems {
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    /// A value that works but is probably not what was meant.
    pub fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(ConfigError::new(path, message));
    }
}

/// A table being read; remembers which keys were used, and every key
/// asked for (present or not) to suggest one for a misspelt key.
pub struct TableReader<'a> {
    pub path: String,
    table: &'a toml::Table,
    used: Vec<&'a str>,
    asked: Vec<String>,
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'a> TableReader<'a> {
    pub fn new(path: String, table: &'a toml::Table) -> Self {
        TableReader {
            path,
            table,
            used: Vec::new(),
            asked: Vec::new(),
        }
    }

    pub fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn ask(&mut self, key: &str) {
        if !self.asked.iter().any(|k| k == key) {
            self.asked.push(key.to_string());
        }
    }

    pub fn raw(&mut self, key: &str) -> Option<&'a toml::Value> {
        self.ask(key);
        let (k, v) = self.table.get_key_value(key)?;
        self.used.push(k.as_str());
        Some(v)
    }

    /// Keys in file order (for tables of named sub-tables).
    pub fn keys(&self) -> Vec<String> {
        self.table.keys().cloned().collect()
    }

    pub fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    fn typed<T>(
        &mut self,
        p: &mut Problems,
        key: &str,
        want: &str,
        get: impl FnOnce(&'a toml::Value) -> Option<T>,
    ) -> Option<T> {
        let v = self.raw(key)?;
        let got = get(v);
        if got.is_none() {
            p.add(
                self.key_path(key),
                format!("expected {want}, found {}", v.type_str()),
            );
        }
        got
    }

    pub fn str(&mut self, p: &mut Problems, key: &str) -> Option<&'a str> {
        self.typed(p, key, "a string", |v| v.as_str())
    }

    pub fn bool(&mut self, p: &mut Problems, key: &str) -> Option<bool> {
        self.typed(p, key, "true or false", |v| v.as_bool())
    }

    pub fn int(&mut self, p: &mut Problems, key: &str, min: i64, max: i64) -> Option<i64> {
        let n = self.typed(p, key, "an integer", |v| v.as_integer())?;
        if n < min || n > max {
            p.add(
                self.key_path(key),
                format!("{n} is out of range {min}..={max}"),
            );
            return None;
        }
        Some(n)
    }

    pub fn table(&mut self, p: &mut Problems, key: &str) -> Option<TableReader<'a>> {
        let path = self.key_path(key);
        self.typed(p, key, "a table", |v| v.as_table())
            .map(|t| TableReader::new(path, t))
    }

    pub fn array(&mut self, p: &mut Problems, key: &str) -> Option<&'a [toml::Value]> {
        self.typed(p, key, "an array", |v| v.as_array().map(Vec::as_slice))
    }

    /// A list of strings; a lone string is accepted as a list of one.
    pub fn strings(&mut self, p: &mut Problems, key: &str) -> Option<Vec<&'a str>> {
        let path = self.key_path(key);
        let v = self.raw(key)?;
        if let Some(s) = v.as_str() {
            return Some(vec![s]);
        }
        let Some(items) = v.as_array() else {
            p.add(
                path,
                format!(
                    "expected a string or an array of strings, found {}",
                    v.type_str()
                ),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item.as_str() {
                Some(s) => out.push(s),
                None => p.add(format!("{path}[{i}]"), "expected a string"),
            }
        }
        Some(out)
    }

    pub fn duration(&mut self, p: &mut Problems, key: &str) -> Option<Duration> {
        let path = self.key_path(key);
        let v = self.raw(key)?;
        let parsed = match v {
            toml::Value::String(s) => parse_duration(s),
            toml::Value::Integer(n) if *n >= 0 => check_duration(Duration::from_secs(*n as u64)),
            other => Err(format!(
                "expected a duration like \"30s\", found {}",
                other.type_str()
            )),
        };
        parsed.map_err(|m| p.add(path, m)).ok()
    }

    pub fn size(&mut self, p: &mut Problems, key: &str) -> Option<u64> {
        let path = self.key_path(key);
        let v = self.raw(key)?;
        let parsed = match v {
            toml::Value::String(s) => parse_size(s),
            toml::Value::Integer(n) if *n >= 0 => Ok(*n as u64),
            other => Err(format!(
                "expected a size like \"16KiB\", found {}",
                other.type_str()
            )),
        };
        parsed.map_err(|m| p.add(path, m)).ok()
    }

    /// Reports every key that no reader asked for, with the nearest one
    /// it did ask for.
    pub fn finish(self, p: &mut Problems) {
        for key in self.table.keys() {
            if !self.used.contains(&key.as_str()) {
                let asked = self.asked.iter().map(String::as_str);
                let message = match did_you_mean(key, asked) {
                    Some(near) => {
                        // The misspelt key is why the real one is missing:
                        // one problem, not two.
                        let missing = join(&self.path, near);
                        p.errors
                            .retain(|e| !(e.path == missing && e.message.starts_with("missing")));
                        format!("unknown key (did you mean `{near}`?)")
                    }
                    None => "unknown key".to_string(),
                };
                p.add(join(&self.path, key), message);
            }
        }
    }
}
