//! Where the process log (start-up, reloads, upstream failures) goes:
//! stdout, stderr or a file that SIGUSR1 reopens after logrotate moved
//! it. Only the control threads and rare worker events write here, so a
//! lock around the file is fine; the request path never logs through it.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogTarget, ProcessFormat, ProcessLog};

/// Opens `[log]`'s destination and makes it the process's log, keeping
/// lines that `filter` (the `--log` directive; `info` if it does not
/// parse) lets through. Returns the sink, to reopen on SIGUSR1.
pub fn install(filter: &str, log: &ProcessLog) -> io::Result<LogSink> {
    let sink = LogSink::open(&log.target)?;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(sink.clone());
    let installed = match log.format {
        ProcessFormat::Text => builder.with_ansi(sink.colour()).try_init(),
        ProcessFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    installed.map_err(io::Error::other)?;
    Ok(sink)
}

/// The process log's destination; cheap to clone, all clones share the
/// file.
#[derive(Clone)]
pub struct LogSink(Arc<Sink>);

enum Sink {
    Stdout,
    Stderr,
    File { path: PathBuf, file: Mutex<File> },
}

impl LogSink {
    /// Opens the target (a file is created if missing and appended to).
    pub fn open(target: &LogTarget) -> io::Result<LogSink> {
        let sink = match target {
            LogTarget::Stdout => Sink::Stdout,
            LogTarget::Stderr => Sink::Stderr,
            LogTarget::File(path) => Sink::File {
                file: Mutex::new(append(path)?),
                path: path.clone(),
            },
        };
        Ok(LogSink(Arc::new(sink)))
    }

    /// Opens the file at its path again, so lines go to a new file after
    /// the old one was renamed. On failure the old file stays in use.
    /// Nothing to do for stdout and stderr.
    pub fn reopen(&self) -> io::Result<()> {
        if let Sink::File { path, file } = &*self.0 {
            let fresh = append(path)?;
            *lock(file) = fresh;
        }
        Ok(())
    }

    /// The file, when the log goes to one.
    pub fn path(&self) -> Option<&Path> {
        match &*self.0 {
            Sink::File { path, .. } => Some(path),
            _ => None,
        }
    }

    /// Whether lines may carry colour codes: only on a terminal, and not
    /// when `NO_COLOR` is set to anything but the empty string
    /// (<https://no-color.org>).
    pub fn colour(&self) -> bool {
        let terminal = match &*self.0 {
            Sink::Stdout => io::stdout().is_terminal(),
            Sink::Stderr => io::stderr().is_terminal(),
            Sink::File { .. } => false,
        };
        terminal && !no_color(std::env::var_os("NO_COLOR").as_deref())
    }
}

fn no_color(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty())
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn lock(file: &Mutex<File>) -> MutexGuard<'_, File> {
    // A panic while writing a log line leaves the file usable.
    file.lock().unwrap_or_else(|p| p.into_inner())
}

/// One log line's writer (the formatter writes a whole line at once).
pub enum LineWriter<'a> {
    Stdout(io::Stdout),
    Stderr(io::Stderr),
    File(MutexGuard<'a, File>),
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LineWriter::Stdout(w) => w.write(buf),
            LineWriter::Stderr(w) => w.write(buf),
            LineWriter::File(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LineWriter::Stdout(w) => w.flush(),
            LineWriter::Stderr(w) => w.flush(),
            LineWriter::File(f) => f.flush(),
        }
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        match &*self.0 {
            Sink::Stdout => LineWriter::Stdout(io::stdout()),
            Sink::Stderr => LineWriter::Stderr(io::stderr()),
            Sink::File { file, .. } => LineWriter::File(lock(file)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn no_color_counts_only_when_not_empty() {
        assert!(!no_color(None));
        assert!(!no_color(Some(OsStr::new(""))));
        assert!(no_color(Some(OsStr::new("1"))));
    }

    #[test]
    fn reopen_follows_the_path_after_a_rename() {
        let dir = std::env::temp_dir().join(format!("ringress-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("process.log");
        let moved = dir.join("process.log.1");
        let _ = std::fs::remove_file(&path);
        let sink = LogSink::open(&LogTarget::File(path.clone())).expect("opens");
        assert!(!sink.colour());
        sink.make_writer().write_all(b"one\n").expect("writes");
        std::fs::rename(&path, &moved).expect("renames");
        sink.make_writer().write_all(b"two\n").expect("writes");
        sink.reopen().expect("reopens");
        sink.make_writer().write_all(b"three\n").expect("writes");
        assert_eq!(
            std::fs::read_to_string(&moved).ok().as_deref(),
            Some("one\ntwo\n")
        );
        assert_eq!(
            std::fs::read_to_string(&path).ok().as_deref(),
            Some("three\n")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
