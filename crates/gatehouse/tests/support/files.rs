//! Temp dirs and one-line file helpers that panic with the path when they fail.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A temporary directory removed on drop; it reads as the `Path` it is (`d.join(..)`, `&d`).
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// `mktemp -d`
pub fn tmp() -> TempDir {
    TempDir(tempfile::Builder::new().prefix("gatehouse-it-").tempdir().expect("create a temp dir"))
}

pub fn write<P: AsRef<Path>>(p: P, s: impl AsRef<[u8]>) {
    fs::write(p.as_ref(), s).unwrap_or_else(|e| panic!("write {:?}: {e}", p.as_ref()));
}

#[track_caller]
pub fn read<P: AsRef<Path>>(p: P) -> String {
    fs::read_to_string(p.as_ref()).unwrap_or_else(|e| panic!("read {:?}: {e}", p.as_ref()))
}

#[track_caller]
pub fn read_bytes<P: AsRef<Path>>(p: P) -> Vec<u8> {
    fs::read(p.as_ref()).unwrap_or_else(|e| panic!("read {:?}: {e}", p.as_ref()))
}

/// `stat -c %a`
#[track_caller]
pub fn mode<P: AsRef<Path>>(p: P) -> u32 {
    fs::metadata(p.as_ref()).unwrap_or_else(|e| panic!("stat {:?}: {e}", p.as_ref())).permissions().mode() & 0o777
}

pub fn exists<P: AsRef<Path>>(p: P) -> bool {
    p.as_ref().exists()
}

/// `mkdir -p`
pub fn mkdir<P: AsRef<Path>>(p: P) -> PathBuf {
    fs::create_dir_all(p.as_ref()).unwrap_or_else(|e| panic!("mkdir {:?}: {e}", p.as_ref()));
    p.as_ref().to_path_buf()
}

/// `ls DIR` (sorted file names)
pub fn ls<P: AsRef<Path>>(p: P) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(p.as_ref())
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}
