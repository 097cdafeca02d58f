//! Writing key and certificate files so that a crash never leaves a
//! half-written file under its final name, and private keys are never
//! readable by others, not even for a moment (created 0600).

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Mode of private key files.
pub const PRIVATE: u32 = 0o600;
/// Mode of certificates and other public files.
pub const PUBLIC: u32 = 0o644;

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` through a temporary file in the same directory
/// and a rename, replacing any existing file. With `sync`, the data and the
/// directory entry are on disk before it returns.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, sync: bool) -> Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp.{}.{}", std::process::id(), TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)
            .map_err(Error::io("create", &temp))?;
        file.write_all(bytes).map_err(Error::io("write", &temp))?;
        if sync {
            file.sync_all().map_err(Error::io("sync", &temp))?;
        }
        std::fs::rename(&temp, path).map_err(Error::io("write", path))?;
        if sync {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Removes temporary files that [`write_atomic`] left in `dir` when its
/// process was killed mid-write (their process no longer runs). Returns how many.
pub fn remove_stale_temps(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = temp_owner(&name) else {
            continue;
        };
        if pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
            && std::fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// The process id in a temporary name `.NAME.tmp.PID.N`.
fn temp_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (_, tail) = rest.rsplit_once(".tmp.")?;
    let (pid, counter) = tail.split_once('.')?;
    counter.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Flushes a directory's entries (new and renamed files) to disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io("sync", dir))
}

/// Creates a directory (and parents) readable only by its owner.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(Error::io("create", dir))
}

use std::os::unix::fs::DirBuilderExt;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn private_files_are_0600_and_replace_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        write_atomic(&path, b"one", PRIVATE, true).unwrap();
        write_atomic(&path, b"two", PRIVATE, false).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary files left behind");
    }

    #[test]
    fn stale_temps_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // A PID above the kernel maximum never runs; our own temp must stay.
        let dead = dir.path().join(".alice.crt.tmp.4294967294.0");
        let ours = dir.path().join(format!(".bob.crt.tmp.{}.7", std::process::id()));
        let unrelated = dir.path().join(".profile");
        for p in [&dead, &ours, &unrelated] {
            std::fs::write(p, b"x").unwrap();
        }
        assert_eq!(remove_stale_temps(dir.path()), 1);
        assert!(!dead.exists() && ours.exists() && unrelated.exists());
    }
}
