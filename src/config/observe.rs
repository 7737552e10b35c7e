//! The observability sections: `[access_log]`, `[log]` (the process log)
//! and the admin listener's `[admin]` settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::walk::{Problems, TableReader};

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stdout,
    /// Stderr (the process log's default).
    Stderr,
    File(PathBuf),
}

/// `[access_log] format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessFormat {
    /// nginx's `combined`.
    Combined,
    /// One JSON object per line.
    Json,
}

/// `[access_log]`: one line per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogConfig {
    pub target: LogTarget,
    pub format: AccessFormat,
}

/// `[log] format` of the process log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessFormat {
    #[default]
    Text,
    Json,
}

/// `[log]`: the process log (start-up, reloads, upstream failures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessLog {
    pub target: LogTarget,
    pub format: ProcessFormat,
}

impl Default for ProcessLog {
    fn default() -> Self {
        ProcessLog {
            target: LogTarget::Stderr,
            format: ProcessFormat::Text,
        }
    }
}

/// `[admin]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdminConfig {
    pub bind: Option<SocketAddr>,
    /// When set, every admin request needs `Authorization: Bearer <token>`.
    pub token: Option<Box<str>>,
}

fn target(t: &mut TableReader<'_>, p: &mut Problems, base: &Path) -> Option<LogTarget> {
    let path = t.str(p, "path")?;
    Some(match path {
        "stdout" => LogTarget::Stdout,
        "stderr" => LogTarget::Stderr,
        "" => {
            p.add(t.key_path("path"), "must not be empty");
            return None;
        }
        file => {
            let file = if Path::new(file).is_absolute() {
                PathBuf::from(file)
            } else {
                base.join(file)
            };
            if let Some(dir) = file.parent()
                && !dir.as_os_str().is_empty()
                && !dir.is_dir()
            {
                p.add(
                    t.key_path("path"),
                    format!("directory {} does not exist", dir.display()),
                );
            }
            LogTarget::File(file)
        }
    })
}

/// `[access_log]`; None when the section is absent.
pub fn access_log(
    t: &mut TableReader<'_>,
    p: &mut Problems,
    base: &Path,
    present: bool,
) -> Option<AccessLogConfig> {
    let format = match t.str(p, "format") {
        None | Some("combined") => AccessFormat::Combined,
        Some("json") => AccessFormat::Json,
        Some(other) => {
            p.add(
                t.key_path("format"),
                format!("`{other}` is not one of combined, json"),
            );
            AccessFormat::Combined
        }
    };
    let target = target(t, p, base);
    if !present {
        return None;
    }
    match target {
        Some(target) => Some(AccessLogConfig { target, format }),
        None => {
            if !t.has("path") {
                p.add(t.key_path("path"), "is required (a file, or \"stdout\")");
            }
            None
        }
    }
}

/// `[log]`.
pub fn process_log(t: &mut TableReader<'_>, p: &mut Problems, base: &Path) -> ProcessLog {
    let format = match t.str(p, "format") {
        None | Some("text") => ProcessFormat::Text,
        Some("json") => ProcessFormat::Json,
        Some(other) => {
            p.add(
                t.key_path("format"),
                format!("`{other}` is not one of text, json"),
            );
            ProcessFormat::Text
        }
    };
    ProcessLog {
        target: target(t, p, base).unwrap_or(LogTarget::Stderr),
        format,
    }
}

/// `[admin]`.
pub fn admin(t: &mut TableReader<'_>, p: &mut Problems) -> AdminConfig {
    let bind = t.str(p, "bind").and_then(|b| {
        super::compile::resolve(b)
            .map_err(|m| p.add(t.key_path("bind"), m))
            .ok()
    });
    let token = t.str(p, "token").and_then(|s| {
        if s.is_empty() {
            p.add(
                t.key_path("token"),
                "must not be empty (leave it out instead)",
            );
            None
        } else {
            Some(s.into())
        }
    });
    AdminConfig { bind, token }
}
