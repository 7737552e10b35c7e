//! Where the process log (start-up, reloads, upstream failures) goes:
//! stdout, stderr or a file that SIGUSR1 reopens after logrotate moved
//! it. Control threads write their lines themselves (a lock around the
//! file is fine there); a worker's line is handed to a writer thread over
//! a bounded channel and dropped when it is full, so a stalled stderr
//! pipe or a slow disk never stops a worker.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

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
pub struct LogSink(Arc<Sink>, Arc<Handoff>);

/// Worker threads' lines on their way to the writer thread.
struct Handoff {
    /// Started with the first worker line.
    tx: OnceLock<Sender<Vec<u8>>>,
    /// Lines handed over and not yet written.
    pending: Arc<AtomicU64>,
    dropped: AtomicU64,
}

/// Worker lines waiting at most (each is one line).
const HANDOFF_LINES: usize = 1024;

/// Whether the current thread is a worker (see `control::server`).
fn on_worker() -> bool {
    std::thread::current()
        .name()
        .is_some_and(|n| n.starts_with("ringress-w"))
}
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
        let handoff = Handoff {
            tx: OnceLock::new(),
            pending: Arc::new(AtomicU64::new(0)),
            dropped: AtomicU64::new(0),
        };
        Ok(LogSink(Arc::new(sink), Arc::new(handoff)))
    }

    /// The channel to the writer thread, started on first use.
    fn handoff(&self) -> Option<&Sender<Vec<u8>>> {
        if let Some(tx) = self.1.tx.get() {
            return Some(tx);
        }
        let (tx, rx) = crossbeam_channel::bounded(HANDOFF_LINES);
        let sink = LogSink(self.0.clone(), self.1.clone());
        let spawned = std::thread::Builder::new()
            .name("ringress-log".into())
            .spawn(move || sink.write_handed_over(rx));
        match spawned {
            Ok(_) => {
                let _ = self.1.tx.set(tx);
                self.1.tx.get()
            }
            Err(_) => None,
        }
    }

    fn write_handed_over(&self, rx: Receiver<Vec<u8>>) {
        for line in rx {
            let _ = self.direct().write_all(&line);
            self.1.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Waits (up to `limit`) until the worker lines handed over so far are
    /// written: before the process exits.
    pub fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.1.pending.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Worker lines dropped because the writer thread was behind.
    pub fn dropped(&self) -> u64 {
        self.1.dropped.load(Ordering::Relaxed)
    }

    fn direct(&self) -> LineWriter<'_> {
        match &*self.0 {
            Sink::Stdout => LineWriter::Stdout(io::stdout()),
            Sink::Stderr => LineWriter::Stderr(io::stderr()),
            Sink::File { file, .. } => LineWriter::File(lock(file)),
        }
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
    /// A worker's line, handed to the writer thread when complete.
    Worker(&'a LogSink, Vec<u8>),
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        let LineWriter::Worker(sink, line) = self else {
            return;
        };
        if line.is_empty() {
            return;
        }
        let line = std::mem::take(line);
        let handoff = &sink.1;
        handoff.pending.fetch_add(1, Ordering::AcqRel);
        let sent = sink.handoff().is_some_and(|tx| tx.try_send(line).is_ok());
        if !sent {
            handoff.pending.fetch_sub(1, Ordering::AcqRel);
            handoff.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LineWriter::Stdout(w) => w.write(buf),
            LineWriter::Stderr(w) => w.write(buf),
            LineWriter::File(f) => f.write(buf),
            LineWriter::Worker(_, line) => {
                line.extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LineWriter::Stdout(w) => w.flush(),
            LineWriter::Stderr(w) => w.flush(),
            LineWriter::File(f) => f.flush(),
            LineWriter::Worker(..) => Ok(()),
        }
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        if on_worker() {
            return LineWriter::Worker(self, Vec::new());
        }
        self.direct()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TempDir;
    use std::ffi::OsStr;

    #[test]
    fn no_color_counts_only_when_not_empty() {
        assert!(!no_color(None));
        assert!(!no_color(Some(OsStr::new(""))));
        assert!(no_color(Some(OsStr::new("1"))));
    }

    #[test]
    fn reopen_follows_the_path_after_a_rename() {
        let dir = TempDir::new("log");
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
    }

    #[test]
    fn worker_lines_go_through_the_writer_thread() {
        let dir = TempDir::new("wlog");
        let path = dir.join("process.log");
        let _ = std::fs::remove_file(&path);
        let sink = LogSink::open(&LogTarget::File(path.clone())).expect("opens");
        let worker_sink = sink.clone();
        std::thread::Builder::new()
            .name("ringress-w3".into())
            .spawn(move || {
                let mut w = worker_sink.make_writer();
                assert!(matches!(w, LineWriter::Worker(..)));
                w.write_all(b"from a worker\n").expect("buffers");
            })
            .expect("spawns")
            .join()
            .expect("joins");
        sink.flush(Duration::from_secs(5));
        assert_eq!(
            std::fs::read_to_string(&path).ok().as_deref(),
            Some("from a worker\n")
        );
        assert_eq!(sink.dropped(), 0);
    }
}
