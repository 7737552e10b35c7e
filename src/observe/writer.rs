//! The access log's writer thread and the workers' side of it. Workers
//! format lines into their own buffer and hand full buffers over a
//! bounded channel; the thread writes them and hands the emptied buffers
//! back for reuse. A worker never waits: when the channel is full (a slow
//! disk, a FIFO nobody reads) the buffer's lines are dropped and counted.
//! SIGUSR1 asks the thread to reopen the file before its next write, so
//! every line lands in the old file or the new one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::config::LogTarget;

/// Buffers in flight to the writer per worker (each hands one over per
/// tick at most, plus full ones): a writer may stall for a few ticks
/// before anything is dropped.
const QUEUE_PER_WORKER: usize = 16;
/// At least this many, whatever the worker count.
const QUEUE_MIN: usize = 64;
/// A worker hands its buffer over once it holds this much.
pub const FLUSH_AT: usize = 32 * 1024;
/// Room kept for one more line when a buffer past `FLUSH_AT` waits for a
/// spare (the longest lines are a few KiB: targets and agents are capped
/// by the head limits).
const LINE_ROOM: usize = 8 * 1024;
/// How long shutdown waits for the writer to finish its queue.
const STOP_WAIT: Duration = Duration::from_secs(2);

enum Msg {
    Lines(Vec<u8>),
    /// Write to this target from now on (a reload changed the path).
    Retarget(LogTarget),
    Stop,
}

/// The handle workers and the control plane share.
pub struct AccessSink {
    tx: Sender<Msg>,
    /// Emptied buffers, back from the writer.
    spare: Receiver<Vec<u8>>,
    reopen: Arc<AtomicBool>,
    /// Lines the writer could not write (file errors).
    write_failures: Arc<AtomicU64>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// Where lines go (as last asked).
    target: std::sync::Mutex<LogTarget>,
}

impl AccessSink {
    /// Starts the writer thread for `target`. The file is opened by the
    /// thread (opening a FIFO waits for a reader).
    pub fn start(target: LogTarget, workers: usize) -> io::Result<AccessSink> {
        let queue = (workers * QUEUE_PER_WORKER).max(QUEUE_MIN);
        let (tx, rx) = crossbeam_channel::bounded(queue);
        let (spare_tx, spare) = crossbeam_channel::bounded(queue);
        // One spare per worker to start with, so the first hand-overs
        // find one, and a writer a little behind costs no allocation.
        for _ in 0..workers.max(1) {
            let _ = spare_tx.try_send(Vec::with_capacity(2 * FLUSH_AT));
        }
        // A file that cannot be opened is an error now, not lines lost
        // later (a FIFO is opened by the writer: that waits for a reader).
        let out = match &target {
            LogTarget::File(path) if !is_fifo(path) => Some(open(&target)?),
            _ => None,
        };
        let reopen = Arc::new(AtomicBool::new(false));
        let write_failures = Arc::new(AtomicU64::new(0));
        let mut writer = Writer {
            target: target.clone(),
            out,
            open_failed: false,
            reopen: reopen.clone(),
            write_failures: write_failures.clone(),
            spare: spare_tx,
        };
        let thread = std::thread::Builder::new()
            .name("ringress-accesslog".into())
            .spawn(move || writer.run(rx))?;
        Ok(AccessSink {
            tx,
            spare,
            reopen,
            write_failures,
            thread: std::sync::Mutex::new(Some(thread)),
            target: std::sync::Mutex::new(target),
        })
    }

    /// Whether `target` can be written to (a FIFO is taken on trust).
    pub fn check(target: &LogTarget) -> io::Result<()> {
        match target {
            LogTarget::File(path) if !is_fifo(path) => open(target).map(drop),
            _ => Ok(()),
        }
    }

    /// SIGUSR1: the file is reopened before the next write.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
    }

    /// A reload may have moved the log: later lines go to `target`.
    pub fn retarget(&self, target: &LogTarget) {
        let mut current = self.target.lock().unwrap_or_else(|p| p.into_inner());
        if *current == *target {
            return;
        }
        // Sent in order with the lines, so none goes to the wrong file.
        // Never blocks the reload: with a full queue (a writer that is
        // stuck) the change waits for the next reload.
        if self.tx.try_send(Msg::Retarget(target.clone())).is_ok() {
            *current = target.clone();
        } else {
            tracing::error!(
                ?target,
                "the access log writer is stuck: its new path waits for the next reload"
            );
        }
    }

    /// Lines lost to write errors.
    pub fn write_failures(&self) -> u64 {
        self.write_failures.load(Ordering::Relaxed)
    }

    /// Hands `buf` to the writer and puts an empty buffer in its place;
    /// the number of lines dropped because the writer is behind. With no
    /// emptied buffer back from the writer yet, the lines stay in `buf`
    /// while it has room (nothing is allocated on the request path for a
    /// writer a little behind); only a full one is handed over for a new
    /// buffer.
    pub fn hand_over(&self, buf: &mut Vec<u8>) -> u64 {
        if buf.is_empty() {
            return 0;
        }
        let spare = self.spare.try_recv().ok();
        if spare.is_none() && buf.len() + LINE_ROOM <= buf.capacity() {
            return 0;
        }
        // The buffer goes whole; an empty Vec (no allocation) holds its
        // place until it is known whether it was taken.
        match self.tx.try_send(Msg::Lines(std::mem::take(buf))) {
            Ok(()) => {
                let mut next = spare.unwrap_or_default();
                // Room for a full buffer and the line that passes the mark,
                // so a reused buffer never grows on the request path.
                next.reserve(2 * FLUSH_AT);
                *buf = next;
                0
            }
            Err(TrySendError::Full(Msg::Lines(mut lines)))
            | Err(TrySendError::Disconnected(Msg::Lines(mut lines))) => {
                let dropped = memchr::memchr_iter(b'\n', &lines).count() as u64;
                // The same buffer takes the next lines: nothing is
                // allocated while the writer is behind.
                lines.clear();
                *buf = lines;
                dropped
            }
            Err(_) => 0,
        }
    }

    /// Lets the writer finish what it has queued (bounded: a writer stuck
    /// on a FIFO nobody reads is left behind).
    pub fn stop(&self) {
        let _ = self.tx.try_send(Msg::Stop);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let deadline = Instant::now() + STOP_WAIT;
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

enum Out {
    Stdout,
    Stderr,
    File(File),
}

struct Writer {
    target: LogTarget,
    out: Option<Out>,
    /// Said once until an open succeeds again.
    open_failed: bool,
    reopen: Arc<AtomicBool>,
    write_failures: Arc<AtomicU64>,
    spare: Sender<Vec<u8>>,
}

fn is_fifo(path: &std::path::Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

fn open(target: &LogTarget) -> io::Result<Out> {
    Ok(match target {
        LogTarget::Stdout => Out::Stdout,
        LogTarget::Stderr => Out::Stderr,
        LogTarget::File(path) => {
            Out::File(OpenOptions::new().create(true).append(true).open(path)?)
        }
    })
}

impl Writer {
    fn run(&mut self, rx: Receiver<Msg>) {
        loop {
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(Msg::Lines(mut lines)) => {
                    self.write(&lines);
                    lines.clear();
                    let _ = self.spare.try_send(lines);
                }
                Ok(Msg::Retarget(target)) => {
                    self.target = target;
                    self.out = None;
                }
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        // What is still queued was sent before the stop.
        while let Ok(msg) = rx.try_recv() {
            match msg {
                Msg::Lines(lines) => self.write(&lines),
                Msg::Retarget(target) => {
                    self.target = target;
                    self.out = None;
                }
                Msg::Stop => {}
            }
        }
    }

    fn write(&mut self, lines: &[u8]) {
        if self.reopen.swap(false, Ordering::AcqRel) {
            self.out = None;
        }
        if self.out.is_none() {
            match open(&self.target) {
                Ok(out) => {
                    self.out = Some(out);
                    self.open_failed = false;
                }
                Err(error) if !self.open_failed => {
                    self.open_failed = true;
                    tracing::error!(%error, target = ?self.target, "cannot open the access log: its lines are dropped and counted until it can be");
                }
                Err(_) => {}
            }
        }
        let written = match &mut self.out {
            Some(Out::File(f)) => f.write_all(lines),
            Some(Out::Stdout) => io::stdout().lock().write_all(lines),
            Some(Out::Stderr) => io::stderr().lock().write_all(lines),
            None => Err(io::ErrorKind::NotFound.into()),
        };
        if written.is_err() {
            let n = memchr::memchr_iter(b'\n', lines).count() as u64;
            self.write_failures.fetch_add(n, Ordering::Relaxed);
            // Try a fresh open next time.
            self.out = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TempDir;

    fn wait_for(path: &std::path::Path, lines: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.lines().count() >= lines || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A writer that is behind (here: stuck opening a FIFO nobody reads)
    /// returns no buffers: a worker keeps its lines in its buffer while it
    /// has room instead of allocating another, and hands a full one over.
    #[test]
    fn a_writer_behind_costs_no_new_buffer_until_one_is_full() {
        let dir = TempDir::new("fifo");
        let fifo = dir.join("access.fifo");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        let sink = AccessSink::start(LogTarget::File(fifo.clone()), 1).unwrap();
        let mut buf = Vec::with_capacity(2 * FLUSH_AT);
        buf.extend_from_slice(b"first\n");
        // The seeded spare takes the first hand-over.
        assert_eq!(sink.hand_over(&mut buf), 0);
        assert!(buf.is_empty());
        assert!(buf.capacity() >= 2 * FLUSH_AT);
        // No spare now: the lines stay while there is room.
        buf.extend_from_slice(&[b'x'; FLUSH_AT]);
        let kept = buf.len();
        assert_eq!(sink.hand_over(&mut buf), 0);
        assert_eq!(buf.len(), kept, "kept in place, not handed over");
        // Full: handed over all the same (a new buffer, as before).
        buf.resize(buf.capacity() - 10, b'y');
        assert_eq!(sink.hand_over(&mut buf), 0);
        assert!(buf.is_empty());
        // Let the writer's open finish so it can stop.
        let reader = std::fs::File::open(&fifo);
        sink.stop();
        drop(reader);
    }

    #[test]
    fn writes_reopens_and_stops() {
        let dir = TempDir::new("writer");
        let path = dir.join("access.log");
        let _ = std::fs::remove_file(&path);
        let sink = AccessSink::start(LogTarget::File(path.clone()), 2).unwrap();
        let mut buf = b"one\ntwo\n".to_vec();
        assert_eq!(sink.hand_over(&mut buf), 0);
        assert!(buf.is_empty());
        assert_eq!(wait_for(&path, 2), "one\ntwo\n");
        // logrotate: move the file, then reopen.
        let rotated = dir.join("access.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        sink.reopen();
        buf.extend_from_slice(b"three\n");
        sink.hand_over(&mut buf);
        assert_eq!(wait_for(&path, 1), "three\n");
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "one\ntwo\n");
        buf.extend_from_slice(b"four\n");
        sink.hand_over(&mut buf);
        sink.stop();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\nfour\n");
        assert_eq!(sink.write_failures(), 0);
    }

    #[test]
    fn a_file_that_cannot_be_opened_is_an_error_at_start() {
        let path = std::env::temp_dir().join("ringress-no-such-dir/access.log");
        assert!(AccessSink::start(LogTarget::File(path), 1).is_err());
    }

    #[test]
    fn a_writer_that_falls_behind_drops_and_counts() {
        // A FIFO nobody reads: the writer waits in open forever.
        let dir = TempDir::new("fifo");
        let fifo = dir.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            return;
        }
        let sink = AccessSink::start(LogTarget::File(fifo), 1).unwrap();
        let mut dropped = 0;
        let started = Instant::now();
        for _ in 0..QUEUE_MIN + 10 {
            let mut buf = b"a\nb\n".to_vec();
            dropped += sink.hand_over(&mut buf);
        }
        assert!(started.elapsed() < Duration::from_secs(1));
        // The writer took at most one buffer before it blocked.
        assert!(dropped >= 2 * 9, "dropped {dropped}");
        sink.stop();
    }
}
