//! Scratch files and directories under the system temp dir that go away
//! when the test is done with them, also when it fails: a `TempPath`
//! removes its path on drop (a directory with everything in it, such as
//! the logs and sockets a proxy wrote there). `unique_dir` names a fresh
//! directory itself; with `dir` and `file` callers name the path, and keep
//! it unique per process and test (the process id and a counter or a port
//! in the name).
#![allow(dead_code)]

use std::ffi::OsStr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Numbers the directories `unique_dir` makes, one sequence per process.
static UNIQUE_SEQ: AtomicU64 = AtomicU64::new(0);

/// A path under `std::env::temp_dir()`, removed on drop.
#[derive(Debug)]
pub struct TempPath(PathBuf);

impl TempPath {
    /// A new, empty directory `name` in the temp dir (one an earlier
    /// process with the same id left there is emptied first).
    pub fn dir(name: impl AsRef<Path>) -> TempPath {
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("create the temp dir {}: {e}", path.display()));
        TempPath(path)
    }

    /// A new, empty directory of its own in the temp dir,
    /// `ringress-{label}-{pid}-{n}` with `n` counting up per process.
    pub fn unique_dir(label: &str) -> TempPath {
        let n = UNIQUE_SEQ.fetch_add(1, Ordering::Relaxed);
        TempPath::dir(format!("ringress-{label}-{}-{n}", std::process::id()))
    }

    /// The path of a file `name` in the temp dir, for the test or the
    /// proxy to write; nothing is created (one an earlier process with
    /// the same id left there is removed).
    pub fn file(name: impl AsRef<Path>) -> TempPath {
        let path = std::env::temp_dir().join(name);
        let _ = std::fs::remove_file(&path);
        TempPath(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Deref for TempPath {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<OsStr> for TempPath {
    fn as_ref(&self) -> &OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.0) {
            Ok(meta) if meta.is_dir() => {
                let _ = std::fs::remove_dir_all(&self.0);
            }
            Ok(_) => {
                let _ = std::fs::remove_file(&self.0);
            }
            Err(_) => {}
        }
    }
}
