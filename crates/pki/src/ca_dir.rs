//! The CA's files in the data dir:
//!
//! ```text
//! DATA_DIR/ca.toml               settings and issuance policy
//! DATA_DIR/ca/root.crt           root certificate (PEM)
//! DATA_DIR/ca/root.key           root key (PKCS#8 PEM, 0600, optionally encrypted)
//! DATA_DIR/ca/intermediate.crt   issuing CA certificate
//! DATA_DIR/ca/intermediate.key   issuing CA key
//! DATA_DIR/ca/intermediate.pkcs11  or: the RFC 7512 URI of its key in a PKCS#11 token
//! DATA_DIR/ca/root.pkcs11          and, optionally, of the root's
//! DATA_DIR/gatehouse.db          issuance database (see the store crate)
//! ```
//!
//! `init` builds the `ca/` directory under a temporary name and renames it
//! into place, so a crash during init leaves either no CA or a whole one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::CertificateDer;

use crate::authority::{CaInit, Issuer, create_ca, create_ca_for_key, create_ca_for_keys};
use crate::error::{Error, Result};
use crate::external::{CaKey, ExternalKey};
use crate::files::{PRIVATE, PUBLIC, create_private_dir, sync_dir, write_atomic};
use crate::key::{Passphrase, decode_private_key, encode_private_key};
use crate::settings::CaSettings;
use pkcs8::der::zeroize::Zeroizing;

/// The file that names the intermediate's key in a token, instead of `intermediate.key`.
const TOKEN_KEY_FILE: &str = "intermediate.pkcs11";

/// The file that names the root's key in a token, instead of `root.key`.
const ROOT_TOKEN_KEY_FILE: &str = "root.pkcs11";

/// The contents of a `.pkcs11` file: the URI, one line.
fn reference(uri: &str) -> Zeroizing<String> {
    Zeroizing::new(format!("{uri}\n"))
}

/// The CA's part of a data dir.
#[derive(Debug, Clone)]
pub struct CaDir {
    data_dir: PathBuf,
}

impl CaDir {
    /// The CA files under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> CaDir {
        CaDir { data_dir: data_dir.into() }
    }

    fn ca(&self) -> PathBuf {
        self.data_dir.join("ca")
    }

    /// Path of the issuance database.
    pub fn database(&self) -> PathBuf {
        self.data_dir.join("gatehouse.db")
    }

    /// Path of the settings file.
    pub fn settings_path(&self) -> PathBuf {
        self.data_dir.join("ca.toml")
    }

    /// Path of the root certificate.
    pub fn root_path(&self) -> PathBuf {
        self.ca().join("root.crt")
    }

    /// Path of the intermediate certificate.
    pub fn intermediate_path(&self) -> PathBuf {
        self.ca().join("intermediate.crt")
    }

    /// Whether a CA exists here.
    pub fn exists(&self) -> bool {
        self.ca().exists()
    }

    /// Creates the root and intermediate and writes them, refusing if a CA exists.
    /// Returns the root and intermediate certificates.
    pub fn init(
        &self,
        init: &CaInit,
        crl_url: Option<&str>,
        passphrase: Option<&Passphrase>,
    ) -> Result<(CertificateDer<'static>, CertificateDer<'static>)> {
        self.init_with(init, crl_url, passphrase, None, None)
    }

    /// As [`CaDir::init`], with the intermediate's key already in a token: `uri` names
    /// it (written to `ca/intermediate.pkcs11`), `key` signs with it. The root key is
    /// in a token too when `root` names it (`ca/root.pkcs11`); else it is made here
    /// and kept in `ca/root.key`. Either way it signs nothing after this but the
    /// intermediate: keep it offline.
    pub fn init_with_token_key(
        &self,
        init: &CaInit,
        crl_url: Option<&str>,
        passphrase: Option<&Passphrase>,
        (uri, key): (&str, Arc<dyn ExternalKey>),
        root: Option<(&str, Arc<dyn ExternalKey>)>,
    ) -> Result<(CertificateDer<'static>, CertificateDer<'static>)> {
        self.init_with(init, crl_url, passphrase, Some((uri, key)), root)
    }

    fn init_with(
        &self,
        init: &CaInit,
        crl_url: Option<&str>,
        passphrase: Option<&Passphrase>,
        token_key: Option<(&str, Arc<dyn ExternalKey>)>,
        root_token_key: Option<(&str, Arc<dyn ExternalKey>)>,
    ) -> Result<(CertificateDer<'static>, CertificateDer<'static>)> {
        if self.exists() {
            return Err(Error::AlreadyInitialized(self.ca()));
        }
        if let Some(url) = crl_url {
            // Validate before anything is written.
            CaSettings::parse(&self.settings_path(), &CaSettings::template(Some(url)))?;
        }
        create_private_dir(&self.data_dir)?;
        // The certificates, and the files that hold or name their keys.
        let (root, intermediate, root_file, intermediate_file) = match (token_key, root_token_key) {
            (None, _) => {
                let material = create_ca(init)?;
                let root_key = encode_private_key(&material.root.key, passphrase)?;
                let key = encode_private_key(&material.intermediate.key, passphrase)?;
                (material.root.der, material.intermediate.der, ("root.key", root_key), ("intermediate.key", key))
            }
            (Some((uri, key)), None) => {
                let (root, intermediate) = create_ca_for_key(init, &CaKey::External(key))?;
                let root_key = encode_private_key(&root.key, passphrase)?;
                (root.der, intermediate, ("root.key", root_key), (TOKEN_KEY_FILE, reference(uri)))
            }
            (Some((uri, key)), Some((root_uri, root_key))) => {
                let (root, intermediate) = create_ca_for_keys(init, &CaKey::External(key), CaKey::External(root_key))?;
                (root, intermediate, (ROOT_TOKEN_KEY_FILE, reference(root_uri)), (TOKEN_KEY_FILE, reference(uri)))
            }
        };
        let staging = self.data_dir.join(format!(".ca-init.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        create_private_dir(&staging)?;
        let files: [(&str, Vec<u8>, u32); 4] = [
            ("root.crt", pem_cert(&root).into_bytes(), PUBLIC),
            (root_file.0, root_file.1.as_bytes().to_vec(), PRIVATE),
            ("intermediate.crt", pem_cert(&intermediate).into_bytes(), PUBLIC),
            (intermediate_file.0, intermediate_file.1.as_bytes().to_vec(), PRIVATE),
        ];
        for (name, bytes, mode) in &files {
            write_atomic(&staging.join(name), bytes, *mode, true)?;
        }
        if self.exists() {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(Error::AlreadyInitialized(self.ca()));
        }
        std::fs::rename(&staging, self.ca()).map_err(Error::io("create", self.ca()))?;
        sync_dir(&self.data_dir)?;
        let settings = self.settings_path();
        if !settings.exists() || crl_url.is_some() {
            write_atomic(&settings, CaSettings::template(crl_url).as_bytes(), PUBLIC, true)?;
        }
        Ok((root, intermediate))
    }

    /// Reads `ca.toml` (defaults when absent).
    pub fn settings(&self) -> Result<CaSettings> {
        let path = self.settings_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(CaSettings::parse(&path, &text)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CaSettings::default()),
            Err(e) => Err(Error::io("read", path)(e)),
        }
    }

    /// The root certificate PEM.
    pub fn root_pem(&self) -> Result<String> {
        self.require()?;
        std::fs::read_to_string(self.root_path()).map_err(Error::io("read", self.root_path()))
    }

    fn require(&self) -> Result<()> {
        if self.exists() { Ok(()) } else { Err(Error::NotInitialized(self.data_dir.clone())) }
    }

    /// Loads the issuing CA (decrypting its key with `passphrase` when needed).
    pub fn issuer(&self, passphrase: Option<&Passphrase>) -> Result<Issuer> {
        self.require()?;
        let settings = self.settings()?;
        let root = read_cert(&self.root_path())?;
        let intermediate = read_cert(&self.intermediate_path())?;
        let token_file = self.ca().join(TOKEN_KEY_FILE);
        if token_file.exists() {
            let uri = std::fs::read_to_string(&token_file).map_err(Error::io("read", &token_file))?;
            let opener = crate::external::token_opener().ok_or_else(|| Error::BadFile {
                path: token_file.clone(),
                what: "token key reference",
                why: "the intermediate's key is in a PKCS#11 token and this program cannot open tokens".to_owned(),
            })?;
            let key = opener(uri.trim(), &self.ca()).map_err(|why| Error::BadFile {
                path: token_file.clone(),
                what: "token key reference",
                why,
            })?;
            return Issuer::new(intermediate, CaKey::External(key), root, settings);
        }
        let key_path = self.ca().join("intermediate.key");
        let key_pem = std::fs::read_to_string(&key_path).map_err(Error::io("read", &key_path))?;
        let key = decode_private_key(&key_path, &key_pem, passphrase)?;
        Issuer::new(intermediate, key, root, settings)
    }
}

/// One file of a CA, as kept in a shared database ([`CaDir::shared_files`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaDirFile {
    /// Its path under the data dir: `ca.toml` or `ca/NAME`.
    pub name: String,
    /// Its bytes.
    pub contents: Vec<u8>,
    /// Whether it is a key, or names one in a token, and so is written 0600.
    pub private: bool,
}

/// The files of `ca/` that another instance needs, whichever of them this CA has,
/// with whether each is private.
const SHARED: [(&str, bool); 6] = [
    ("root.crt", false),
    ("intermediate.crt", false),
    ("root.key", true),
    ("intermediate.key", true),
    (ROOT_TOKEN_KEY_FILE, true),
    (TOKEN_KEY_FILE, true),
];

impl CaDir {
    /// What another instance with an empty data dir needs to issue as this CA: the
    /// certificates, `ca.toml`, and the key files, which must be encrypted (or be
    /// token references): a key in the clear is refused with
    /// [`Error::PlainKeyNotShared`] rather than handed to a database.
    pub fn shared_files(&self) -> Result<Vec<CaDirFile>> {
        self.require()?;
        let mut files = Vec::new();
        for (name, private) in SHARED {
            let path = self.ca().join(name);
            let contents = match std::fs::read(&path) {
                Ok(contents) => contents,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("read", &path)(e)),
            };
            if name.ends_with(".key") && !crate::key::is_encrypted_pem(&contents) {
                return Err(Error::PlainKeyNotShared(path));
            }
            files.push(CaDirFile { name: format!("ca/{name}"), contents, private });
        }
        match std::fs::read(self.settings_path()) {
            Ok(contents) => files.push(CaDirFile { name: "ca.toml".to_owned(), contents, private: false }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("read", self.settings_path())(e)),
        }
        Ok(files)
    }

    /// Writes a CA's files, as [`CaDir::shared_files`] gave them on another instance,
    /// into this data dir: `ca/` whole or not at all (as `init` does), and `ca.toml`
    /// unless one is here already. Refuses when a CA is here, and any name that is not
    /// one of a CA's files, so a row in the database cannot write elsewhere.
    pub fn install(&self, files: &[CaDirFile]) -> Result<()> {
        if self.exists() {
            return Err(Error::AlreadyInitialized(self.ca()));
        }
        let mut settings = None;
        let mut in_ca = Vec::new();
        for file in files {
            match file.name.strip_prefix("ca/") {
                _ if file.name == "ca.toml" => settings = Some(file),
                Some(name) if SHARED.iter().any(|(known, _)| *known == name) => in_ca.push((name, file)),
                _ => {
                    return Err(Error::SharedCaDamaged(format!(
                        "it holds {:?}, which is not one of a CA's files",
                        file.name
                    )));
                }
            }
        }
        for needed in ["root.crt", "intermediate.crt"] {
            if !in_ca.iter().any(|(name, _)| *name == needed) {
                return Err(Error::SharedCaDamaged(format!("it has no ca/{needed}")));
            }
        }
        create_private_dir(&self.data_dir)?;
        let staging = self.data_dir.join(format!(".ca-install.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        create_private_dir(&staging)?;
        for (name, file) in &in_ca {
            let mode = if file.private { PRIVATE } else { PUBLIC };
            write_atomic(&staging.join(name), &file.contents, mode, true)?;
        }
        if self.exists() {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(Error::AlreadyInitialized(self.ca()));
        }
        std::fs::rename(&staging, self.ca()).map_err(Error::io("create", self.ca()))?;
        sync_dir(&self.data_dir)?;
        if let Some(file) = settings
            && !self.settings_path().exists()
        {
            write_atomic(&self.settings_path(), &file.contents, PUBLIC, true)?;
        }
        Ok(())
    }

    /// Removes `ca/` (and nothing else), for a CA just made here that lost a race to
    /// become the shared database's CA and has issued nothing.
    pub fn discard(&self) -> Result<()> {
        std::fs::remove_dir_all(self.ca()).map_err(Error::io("remove", self.ca()))?;
        sync_dir(&self.data_dir)
    }
}

/// PEM of one certificate.
pub fn pem_cert(der: &[u8]) -> String {
    pem_block("CERTIFICATE", der)
}

/// PEM of one CRL.
pub fn pem_crl(der: &[u8]) -> String {
    pem_block("X509 CRL", der)
}

fn pem_block(label: &str, der: &[u8]) -> String {
    crate::pem::encode(label, der)
}

fn read_cert(path: &Path) -> Result<CertificateDer<'static>> {
    let bytes = std::fs::read(path).map_err(Error::io("read", path))?;
    crate::pem::read_first_pem(&bytes).map_err(|defect| Error::BadFile {
        path: path.to_owned(),
        what: "certificate",
        why: format!("{defect}; it should hold one PEM CERTIFICATE block, restore it from a backup"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KeyType;

    #[test]
    fn a_damaged_ca_file_is_described_and_named() {
        let data = tempfile::tempdir().unwrap();
        let dir = CaDir::new(data.path());
        dir.init(&CaInit { name: "t".into(), key_type: KeyType::EcdsaP256, days: 1 }, None, None).unwrap();
        let root = std::fs::read_to_string(dir.root_path()).unwrap();
        let key_path = data.path().join("ca/intermediate.key");
        let key = std::fs::read_to_string(&key_path).unwrap();
        for (path, text, said) in [
            (dir.root_path(), root[..root.len() / 2].to_owned(), "no END line"),
            (dir.root_path(), root.replacen('M', "%", 2), "base64 text"),
            (dir.root_path(), key.clone(), "no PEM block of the kind needed"),
            (key_path.clone(), root.clone(), "'CERTIFICATE' block"),
            (key_path.clone(), "garbage".to_owned(), "it is not PEM"),
        ] {
            let original = std::fs::read(&path).unwrap();
            std::fs::write(&path, &text).unwrap();
            let err = dir.issuer(None).err().expect("a damaged CA file is refused").to_string();
            std::fs::write(&path, original).unwrap();
            assert!(err.contains(&path.display().to_string()) && err.contains(said), "{err}");
            assert!(!err.contains("malformedframing") && !err.contains("section"), "{err}");
        }
        assert!(dir.issuer(None).is_ok());
    }
}
