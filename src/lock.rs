//! One coordinator per database: an advisory lock on `<db>.lock`, released by the kernel
//! when the process dies, however it dies.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the database {db} is in use by another sweep coordinator (pid {holder}); stop it first")]
    Busy { db: PathBuf, holder: String },
    #[error("cannot create lock file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Held while the coordinator runs.
pub struct DbLock {
    _file: File,
}

pub fn lock_database(db: &Path) -> Result<DbLock, LockError> {
    let path = PathBuf::from(format!("{}.lock", db.display()));
    let io = |source| LockError::Io { path: path.clone(), source };
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = if holder.trim().is_empty() { "unknown".into() } else { holder.trim().to_string() };
        return Err(LockError::Busy { db: db.to_path_buf(), holder });
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    write!(file, "{}", std::process::id()).map_err(io)?;
    Ok(DbLock { _file: file })
}

/// The pid of the coordinator holding the database's lock, if one does: read from the
/// kernel's lock table (`/proc/locks`), so asking never takes the lock, not even briefly,
/// and a starting coordinator cannot lose a race against the web page.
pub fn holder(db: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(format!("{}.lock", db.display())).ok()?.ino();
    let table = std::fs::read_to_string("/proc/locks").ok()?;
    table.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters have "->" before FLOCK.
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (kind, pid, id) = (fields.get(1)?, fields.get(4)?, fields.get(5)?);
        let same = *kind == "FLOCK" && id.rsplit(':').next()?.parse::<u64>().ok()? == inode;
        same.then(|| pid.parse().ok()).flatten()
    })
}

/// Waits for an exclusive lock on `path` (created if missing): trials that need the same cached
/// artefact (a tokenizer, a pretraining run) build it once while the others wait.
pub fn lock_exclusive(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    // SAFETY: flock on a descriptor we own; blocking is what we want here.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(file)
}

/// The exclusive lock on `path` if no one holds it now (created if missing), else None.
pub fn try_lock_exclusive(path: &Path) -> std::io::Result<Option<File>> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return if e.kind() == std::io::ErrorKind::WouldBlock { Ok(None) } else { Err(e) };
    }
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_seen_while_the_lock_is_held() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        assert_eq!(holder(&db), None);
        let lock = lock_database(&db).unwrap();
        assert_eq!(holder(&db), Some(std::process::id()));
        drop(lock);
        assert_eq!(holder(&db), None);
    }

    #[test]
    fn a_held_lock_is_not_taken_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.lock");
        let first = try_lock_exclusive(&path).unwrap().expect("free");
        assert!(try_lock_exclusive(&path).unwrap().is_none(), "flock locks are per open file");
        drop(first);
        assert!(try_lock_exclusive(&path).unwrap().is_some());
    }
}
