//! Group commit for the SQLite backend: many transactions made durable by one fsync.
//!
//! SQLite's own `synchronous = FULL` fsyncs the WAL inside every `COMMIT`, while the
//! connection and the database's one write lock are held, so concurrent writers (the
//! ACME server answering sixteen clients) queue behind each other's disk flushes: about
//! ten flushes per ACME order. Here the connection commits with `synchronous = NORMAL`
//! (the WAL is written, not flushed; the database stays consistent whatever happens)
//! and the writer, before its call returns, waits on [`GroupSync::wait`], which flushes
//! the WAL file once for every commit made before the flush began. A caller is told
//! its write succeeded only once it is on disk, as before; writers that committed
//! while a flush ran share the next one.
//!
//! Why flushing the `-wal` file from outside SQLite is enough: a commit in WAL mode is
//! frames appended to that file, and recovery replays every frame up to the last
//! valid commit frame, so once the file's data is on disk every commit written to it
//! is. A checkpoint that moved the frames into the database file first syncs the WAL
//! and then the database file itself (SQLite does both in `NORMAL` mode), so frames
//! the WAL no longer holds are on disk already; a WAL file missing altogether means
//! everything was checkpointed, and the database file is flushed instead.
//!
//! The files are flushed through descriptors kept open from one flush to the next
//! (reopened only when the WAL file on disk is another one than the kept descriptor's):
//! Linux reports a failed write-back to the descriptors that were open when it failed,
//! so a descriptor opened just for the flush could be told "done" for pages the disk
//! had already refused.
//!
//! One thing differs from `FULL`: another reader may see a commit a moment before its
//! flush ends (its writer has not yet been answered). Nothing gatehouse answers is
//! decided on such a read except further state changes, which wait for a flush after
//! their own commit, and so after the first one's.
//!
//! No crate does this for sqlx's SQLite connections (its `synchronous` is one setting
//! per connection), so it is written here; it is one lock, one counter and one watch.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Mutex, watch};

use crate::{Result, StoreError};

/// How a backend's commits become durable.
#[derive(Debug, Clone)]
pub(crate) enum Durability {
    /// The commit itself is durable when it returns (PostgreSQL with `synchronous_commit = on`).
    AtCommit,
    /// The commit is written, and [`GroupSync::wait`] makes it durable.
    Group(Arc<GroupSync>),
}

impl Durability {
    /// Returns once every commit this task made before the call is on disk.
    pub(crate) async fn wait(&self) -> Result<()> {
        match self {
            Durability::AtCommit => Ok(()),
            Durability::Group(group) => group.wait().await,
        }
    }
}

/// One flush at a time of a SQLite database's WAL, shared by every commit made before it.
#[derive(Debug)]
pub(crate) struct GroupSync {
    database: PathBuf,
    wal: PathBuf,
    /// Tickets handed out: a writer takes one after its commit returned.
    tickets: AtomicU64,
    /// The highest ticket whose commit is known to be on disk.
    synced: watch::Sender<u64>,
    /// Held by the writer that is flushing; the others queue on it. It holds the
    /// descriptors kept open between flushes.
    flushing: Mutex<Files>,
}

/// The descriptors a flush goes through.
#[derive(Debug, Default)]
struct Files {
    /// The WAL file, with its device and inode when opened.
    wal: Option<(File, u64, u64)>,
    database: Option<File>,
}

impl GroupSync {
    /// Group commit for the database file at `database` (its WAL is `DATABASE-wal`).
    pub(crate) fn new(database: &Path) -> GroupSync {
        // Absolute, so that the flush finds the file whatever the working directory is by then.
        let database = std::path::absolute(database).unwrap_or_else(|_| database.to_owned());
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        GroupSync {
            database,
            wal: PathBuf::from(wal),
            tickets: AtomicU64::new(0),
            synced: watch::channel(0).0,
            flushing: Mutex::new(Files::default()),
        }
    }

    /// Returns once a flush that began after this call's start is done.
    pub(crate) async fn wait(&self) -> Result<()> {
        let ticket = self.tickets.fetch_add(1, Ordering::AcqRel) + 1;
        if *self.synced.borrow() >= ticket {
            return Ok(());
        }
        let mut files = self.flushing.lock().await;
        // The writer before us in the queue may have flushed past our ticket.
        if *self.synced.borrow() >= ticket {
            return Ok(());
        }
        // Every ticket up to here was taken after its commit returned: this flush covers them.
        let covered = self.tickets.load(Ordering::Acquire);
        let (database, wal) = (self.database.clone(), self.wal.clone());
        let mut kept = std::mem::take(&mut *files);
        let flushed = tokio::task::spawn_blocking(move || {
            let flushed = flush(&database, &wal, &mut kept);
            (flushed, kept)
        })
        .await;
        let flushed = match flushed {
            Ok((flushed, kept)) => {
                *files = kept;
                flushed
            }
            Err(e) => Err(io::Error::other(e.to_string())),
        };
        if let Err(source) = flushed {
            return Err(StoreError::NotDurable { path: self.wal.display().to_string(), source });
        }
        self.synced.send_if_modified(|synced| {
            let newer = covered > *synced;
            if newer {
                *synced = covered;
            }
            newer
        });
        Ok(())
    }
}

/// `fdatasync` of the WAL, or of the database file when there is no WAL (all checkpointed),
/// through the descriptors in `files`, (re)opened when missing or stale.
fn flush(database: &Path, wal: &Path, files: &mut Files) -> io::Result<()> {
    match std::fs::metadata(wal) {
        Ok(on_disk) => {
            let current = matches!(&files.wal, Some((_, dev, ino)) if *dev == on_disk.dev() && *ino == on_disk.ino());
            if !current {
                let file = File::open(wal)?;
                let opened = file.metadata()?;
                files.wal = Some((file, opened.dev(), opened.ino()));
            }
            match &files.wal {
                Some((file, _, _)) => file.sync_data(),
                None => Ok(()),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if files.database.is_none() {
                files.database = Some(File::open(database)?);
            }
            match &files.database {
                Some(file) => file.sync_data(),
                None => Ok(()),
            }
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_writers_share_flushes_and_each_returns_after_one_that_began_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("g.db");
        std::fs::write(&database, b"x").unwrap();
        std::fs::write(dir.path().join("g.db-wal"), b"y").unwrap();
        let group = Arc::new(GroupSync::new(&database));
        let waits: Vec<_> = (0..64)
            .map(|_| {
                let group = group.clone();
                tokio::spawn(async move { group.wait().await })
            })
            .collect();
        for wait in waits {
            wait.await.unwrap().unwrap();
        }
        assert_eq!(*group.synced.borrow(), 64, "every ticket is covered by a flush");
    }

    #[tokio::test]
    async fn without_a_wal_the_database_file_is_flushed_and_without_either_the_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("g.db");
        std::fs::write(&database, b"x").unwrap();
        GroupSync::new(&database).wait().await.unwrap();
        let gone = GroupSync::new(&dir.path().join("missing.db"));
        let error = gone.wait().await.unwrap_err();
        assert!(matches!(error, StoreError::NotDurable { .. }), "{error}");
        assert!(error.to_string().contains("missing.db-wal"), "{error}");
    }

    #[tokio::test]
    async fn a_wal_file_made_anew_is_flushed_through_a_descriptor_of_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("g.db");
        let wal = dir.path().join("g.db-wal");
        std::fs::write(&database, b"x").unwrap();
        std::fs::write(&wal, b"old").unwrap();
        let group = GroupSync::new(&database);
        group.wait().await.unwrap();
        let kept = |group: &GroupSync| group.flushing.try_lock().unwrap().wal.as_ref().map(|(_, _, ino)| *ino);
        assert_eq!(kept(&group), Some(std::fs::metadata(&wal).unwrap().ino()));
        std::fs::remove_file(&wal).unwrap();
        std::fs::write(dir.path().join("other"), b"keeps the old inode number from being reused").unwrap();
        std::fs::write(&wal, b"new").unwrap();
        group.wait().await.unwrap();
        assert_eq!(kept(&group), Some(std::fs::metadata(&wal).unwrap().ino()), "the new WAL's descriptor");
    }
}
