//! The files handed to a certificate's owner: NAME.crt, NAME.key (0600),
//! NAME.fullchain.pem and optionally NAME.p12.

use std::path::{Path, PathBuf};

use pki::files::{PRIVATE, PUBLIC, write_atomic};
use pki::{Issued, Issuer, Pkcs12Format, build_pkcs12, pem_cert};

use crate::Failure;

/// The longest common name (in bytes) that names output files: room is left
/// for `.fullchain.pem` and a temporary name within the usual 255-byte limit.
const MAX_STEM: usize = 200;

/// Checks that a common name can serve as a file name in the output directory.
pub fn file_stem(cn: &str) -> Result<&str, String> {
    if cn.trim().is_empty() {
        Err("the common name is empty".into())
    } else if cn.len() > MAX_STEM {
        let start: String = cn.chars().take(40).collect();
        Err(format!(
            "the common name '{start}...' is {} bytes long, too long to name the output files (at most {MAX_STEM})",
            cn.len()
        ))
    } else if cn.contains('/') || cn.contains('\0') || cn.contains('\\') {
        Err(format!("the common name '{cn}' contains a path separator, so it cannot name the output files"))
    } else if cn.starts_with('.') {
        Err(format!("the common name '{cn}' starts with '.', so it cannot name the output files"))
    } else {
        Ok(cn)
    }
}

/// Creates the output directory if needed and checks that files can be
/// created in it, before anything is signed.
pub fn check_writable(dir: &Path) -> Result<(), Failure> {
    let cannot = |e: std::io::Error| {
        Failure::failed(format!("cannot write to {}: {e}; choose another --out or fix its permissions", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(cannot)?;
    // Named like write_atomic's temporary files, so a leftover is cleaned up as they are.
    let probe = dir.join(format!(".gatehouse-write-check.tmp.{}.0", std::process::id()));
    std::fs::File::create_new(&probe).map_err(cannot)?;
    std::fs::remove_file(&probe).map_err(cannot)
}

/// The paths of one bundle.
pub struct BundlePaths {
    pub crt: PathBuf,
    pub key: PathBuf,
    pub fullchain: PathBuf,
    pub p12: PathBuf,
}

impl BundlePaths {
    pub fn new(dir: &Path, stem: &str) -> BundlePaths {
        BundlePaths {
            crt: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
            fullchain: dir.join(format!("{stem}.fullchain.pem")),
            p12: dir.join(format!("{stem}.p12")),
        }
    }

    /// The first output file that already exists, if any.
    pub fn existing(&self, with_p12: bool) -> Option<&Path> {
        let mut all = vec![&self.crt, &self.key, &self.fullchain];
        if with_p12 {
            all.push(&self.p12);
        }
        all.into_iter().find(|p| p.exists()).map(PathBuf::as_path)
    }
}

/// A PKCS#12 to write alongside the PEM files.
pub struct P12Request<'a> {
    pub password: &'a str,
    pub format: Pkcs12Format,
}

/// Builds the PKCS#12 of a bundle (CPU work, kept apart from the writes so batches can do it in parallel).
pub fn pkcs12(
    issuer: &Issuer,
    cn: &str,
    issued: &Issued,
    key: &rcgen::KeyPair,
    request: &P12Request<'_>,
) -> pki::Result<Vec<u8>> {
    let key_der = pki::private_key_der(key)?;
    build_pkcs12(cn, &key_der, &[&issued.der, issuer.intermediate(), issuer.root()], request.password, request.format)
}

/// Writes the bundle's files. The key is written first and the certificate
/// last, so an existing NAME.crt means the whole bundle is there.
pub fn write(
    paths: &BundlePaths,
    issuer: &Issuer,
    issued: &Issued,
    key: &rcgen::KeyPair,
    p12: Option<&[u8]>,
    sync: bool,
) -> pki::Result<()> {
    let key_pem = pki::encode_private_key(key, None)?;
    write_atomic(&paths.key, key_pem.as_bytes(), PRIVATE, sync)?;
    if let Some(p12) = p12 {
        write_atomic(&paths.p12, p12, PRIVATE, sync)?;
    }
    let leaf = pem_cert(&issued.der);
    let fullchain = format!("{leaf}{}", pem_cert(issuer.intermediate()));
    write_atomic(&paths.fullchain, fullchain.as_bytes(), PUBLIC, sync)?;
    write_atomic(&paths.crt, leaf.as_bytes(), PUBLIC, sync)?;
    Ok(())
}
