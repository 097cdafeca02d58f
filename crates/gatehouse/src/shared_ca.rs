//! The CA kept in a shared (PostgreSQL) storage, so that every instance on it
//! issues as the same CA with nothing but the storage URL, the CA passphrase and
//! an empty data dir of its own.
//!
//! `gatehouse ca init` on such a storage makes the CA in the data dir as always,
//! then puts its files into the database (`store::CaFile`): the certificates,
//! `ca.toml`, and the keys, which must be encrypted with the passphrase or live
//! in a PKCS#11 token (only the token URI is kept then); a key in the clear is
//! refused before anything is made. Any command that opens the storage then
//! [`agree`]s the data dir with it: an empty data dir gets the CA written into
//! `ca/` (keys still encrypted, 0600); a data dir holding another CA is refused.
//! A SQLite storage lives in the data dir itself and needs none of this.
//!
//! `ca.toml`, the issuance policy, is one for all instances: the database keeps
//! the shared one and each data dir a copy, with a note of the shared version it
//! last agreed with (`.ca.toml.shared`, its SHA-256). Whenever a command opens
//! the storage, [`sync_policy`] compares the three: a copy edited here while the
//! shared one stayed put is shared (a compare-and-set, so two instances editing
//! at once cannot both win); a shared one changed by another instance while the
//! copy stayed put is taken here; both changed is refused, naming both, rather
//! than either edit lost. A running `serve` reads the policy at its start.

use pki::{CaDir, CaDirFile};
use store::{CaFile, Database, StorageUrl, Store};

use crate::Failure;

/// What [`agree`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agreement {
    /// A SQLite storage: the CA is the data dir's alone.
    Local,
    /// Data dir and storage hold the same CA.
    Same,
    /// The storage's CA was written into the empty data dir.
    Installed,
    /// The data dir's CA (keys encrypted or in a token) was put into the storage, which held none.
    Shared,
    /// The storage holds no CA and the data dir's keys are in the clear, so they stay
    /// there: this instance issues, others on the storage cannot.
    KeptLocal,
    /// Neither holds a CA.
    Neither,
}

/// Makes the data dir `dir` and the storage `db` at `url` hold the same CA (see the
/// module docs); an error when they hold different ones.
pub async fn agree(dir: &CaDir, db: &Database, url: &StorageUrl) -> Result<Agreement, Failure> {
    if let StorageUrl::Sqlite(_) = url {
        return Ok(Agreement::Local);
    }
    let kept = db.ca_files().await?;
    match (kept.is_empty(), dir.exists()) {
        (true, false) => Ok(Agreement::Neither),
        (true, true) => match dir.shared_files() {
            Ok(files) => {
                refuse_other_records(dir, db, url).await?;
                if db.put_ca_files(&files.into_iter().map(to_store).collect::<Vec<_>>()).await? {
                    Ok(Agreement::Shared)
                } else {
                    // Another instance put its CA in meanwhile: compare with that one.
                    compare(dir, &db.ca_files().await?, url).map(|()| Agreement::Same)
                }
            }
            Err(pki::Error::PlainKeyNotShared(_)) => Ok(Agreement::KeptLocal),
            Err(e) => Err(e.into()),
        },
        (false, false) => {
            match dir.install(&kept.into_iter().map(from_store).collect::<Vec<_>>()) {
                Ok(()) => {}
                // Another process of this instance installed it meanwhile.
                Err(pki::Error::AlreadyInitialized(_)) => {
                    return compare(dir, &db.ca_files().await?, url).map(|()| Agreement::Same);
                }
                Err(e) => return Err(e.into()),
            }
            Ok(Agreement::Installed)
        }
        (false, true) => compare(dir, &kept, url).map(|()| Agreement::Same),
    }
}

/// The shared `ca.toml`'s name among the CA files.
const POLICY: &str = "ca.toml";

/// The note, in the data dir, of the shared `ca.toml` this copy last agreed with.
fn policy_note(dir: &CaDir) -> std::path::PathBuf {
    dir.settings_path().with_file_name(".ca.toml.shared")
}

fn digest(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes))
}

fn note_policy(dir: &CaDir, shared: &[u8]) -> Result<(), Failure> {
    let path = policy_note(dir);
    pki::files::write_atomic(&path, digest(shared).as_bytes(), pki::files::PUBLIC, true)
        .map_err(|e| Failure::failed(format!("cannot write {}: {e}", path.display())))
}

/// Makes the data dir's `ca.toml` and the storage's agree (see the module docs), once
/// both hold the same CA; what it did, for stderr.
pub async fn sync_policy(dir: &CaDir, db: &Database, url: &StorageUrl) -> Result<Option<String>, Failure> {
    let path = dir.settings_path();
    for _ in 0..3 {
        let Some(shared) = db.ca_files().await?.into_iter().find(|f| f.name == POLICY) else { return Ok(None) };
        let shared = shared.contents;
        let here = match std::fs::read(&path) {
            Ok(here) => Some(here),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Failure::failed(format!("cannot read {}: {e}", path.display()))),
        };
        let noted = std::fs::read_to_string(policy_note(dir)).ok().map(|n| n.trim().to_owned());
        if here.as_deref() == Some(shared.as_slice()) {
            if noted.as_deref() != Some(digest(&shared).as_str()) {
                note_policy(dir, &shared)?;
            }
            return Ok(None);
        }
        let shared_unchanged = noted.as_deref() == Some(digest(&shared).as_str());
        let edited = here.filter(|here| noted.as_deref() != Some(digest(here).as_str()));
        match (edited, shared_unchanged) {
            // The copy is as last agreed (or missing): take the shared one.
            (None, _) => {
                pki::files::write_atomic(&path, &shared, pki::files::PUBLIC, true)
                    .map_err(|e| Failure::failed(format!("cannot write {}: {e}", path.display())))?;
                note_policy(dir, &shared)?;
                return Ok(Some(format!("took the ca.toml shared in {url} into {}", path.display())));
            }
            // Edited here, the shared one as last agreed: share the edit, if it reads.
            (Some(here), true) => {
                let text = String::from_utf8_lossy(&here);
                pki::CaSettings::parse(&path, &text)
                    .map_err(|e| Failure::usage(format!("{e}; fix it before it is shared")))?;
                if db.replace_ca_file(POLICY, &shared, &here).await? {
                    note_policy(dir, &here)?;
                    return Ok(Some(format!(
                        "{} is now the ca.toml of every instance on {url} (each reads it at its next start)",
                        path.display()
                    )));
                }
                // Another instance changed it meanwhile: look again.
            }
            (Some(_), false) => {
                return Err(Failure::failed(format!(
                    "{} was edited here and the ca.toml shared in {url} was changed by another instance since this                      one last took it (or this instance has no note of which it took); keep one: to keep the shared                      one, move {} away and run again; to keep this one, move it away, run again (which takes the                      shared one), then put it back and run again (which shares it)",
                    path.display(),
                    path.display()
                )));
            }
        }
    }
    Err(Failure::failed(format!("the ca.toml shared in {url} kept changing under this instance; run again")))
}

/// [`agree`], saying on stderr when the storage's CA was taken into the data dir, and
/// an error when neither holds a CA.
pub async fn take(dir: &CaDir, db: &Database, url: &StorageUrl) -> Result<(), Failure> {
    match agree(dir, db, url).await? {
        Agreement::Neither => Err(Failure::failed(format!(
            "no CA in {} nor in {url}; run `gatehouse ca init` first (with this --storage, so every instance on it \
             can issue)",
            dir.root_path().parent().and_then(|p| p.parent()).map(|p| p.display().to_string()).unwrap_or_default()
        ))),
        Agreement::Installed => {
            eprintln!(
                "took the CA kept in {url} into {}",
                dir.root_path().parent().map(|p| p.display().to_string()).unwrap_or_default()
            );
            sync_policy(dir, db, url).await.map(drop)
        }
        Agreement::Same | Agreement::Shared => {
            if let Some(said) = sync_policy(dir, db, url).await? {
                eprintln!("{said}");
            }
            Ok(())
        }
        Agreement::Local | Agreement::KeptLocal => Ok(()),
    }
}

/// `ca init` on `url`: before the CA is made, an error when the storage already holds
/// one (or records of one) or when its keys would be kept in the clear.
pub async fn check_init(db: &Database, url: &StorageUrl, keys_encrypted: bool) -> Result<(), Failure> {
    if let StorageUrl::Sqlite(_) = url {
        return Ok(());
    }
    if let Some(root) = db.ca_files().await?.iter().find(|f| f.name == "ca/root.crt") {
        return Err(Failure::failed(format!(
            "{url} already holds a CA (root {}); to issue as it here, run with an empty --data-dir and this storage \
             (the CA is taken from there), or give `ca init` another database",
            subject_of(&root.contents)
        )));
    }
    let held = db.certificates(store::ListFilter::All).await?.len();
    if held > 0 {
        return Err(Failure::failed(format!(
            "{url} already holds {} of another CA; give `ca init` an empty database",
            crate::count(held, "certificate", "certificates")
        )));
    }
    if !keys_encrypted {
        return Err(Failure::usage(format!(
            "{url} is shared by every instance on it, and a CA kept there holds its keys only encrypted: \
             set GATEHOUSE_CA_PASSPHRASE (or --ca-passphrase-file), or put both keys in a PKCS#11 token \
             (--key-store and --root-key-store)"
        )));
    }
    Ok(())
}

/// `ca init` on `url`, the CA just made in `dir`: puts it in the storage; if another
/// instance's `ca init` won the race, removes this one (it has issued nothing) and says so.
pub async fn share_new(dir: &CaDir, db: &Database, url: &StorageUrl) -> Result<(), Failure> {
    if let StorageUrl::Sqlite(_) = url {
        return Ok(());
    }
    let files: Vec<CaFile> = dir.shared_files()?.into_iter().map(to_store).collect();
    if db.put_ca_files(&files).await? {
        return sync_policy(dir, db, url).await.map(drop);
    }
    dir.discard()?;
    Err(Failure::failed(format!(
        "another `ca init` put its CA in {url} first; the CA made here was removed. Run again with an empty \
         --data-dir to issue as that one"
    )))
}

/// Before the data dir's CA is put into a storage that holds no CA: an error when the
/// storage records certificates of another issuer, which this CA must not claim.
async fn refuse_other_records(dir: &CaDir, db: &Database, url: &StorageUrl) -> Result<(), Failure> {
    let path = dir.intermediate_path();
    let der: rustls::pki_types::CertificateDer<'static> =
        pki::read_first_pem_file(&path).map_err(|e| Failure::failed(format!("cannot read {}: {e}", path.display())))?;
    let key_id = pki::subject_key_id_of_der(&der).ok().flatten().map(hex::encode).unwrap_or_default();
    let others = db
        .certificates(store::ListFilter::All)
        .await?
        .into_iter()
        .filter(|c| !c.certificate.issuer.eq_ignore_ascii_case(&key_id))
        .count();
    if others > 0 {
        return Err(Failure::failed(format!(
            "{url} holds no CA but {} issued by another CA than the one in {}; give this CA its own storage",
            crate::count(others, "certificate", "certificates"),
            path.parent().and_then(|p| p.parent()).unwrap_or(&path).display()
        )));
    }
    Ok(())
}

/// An error unless `dir`'s root and intermediate certificates are those in `kept`.
fn compare(dir: &CaDir, kept: &[CaFile], url: &StorageUrl) -> Result<(), Failure> {
    for (name, path) in [("ca/root.crt", dir.root_path()), ("ca/intermediate.crt", dir.intermediate_path())] {
        let here = std::fs::read(&path).map_err(|e| Failure::failed(format!("cannot read {}: {e}", path.display())))?;
        let there = kept.iter().find(|f| f.name == name).map(|f| f.contents.as_slice());
        if there != Some(here.as_slice()) {
            return Err(Failure::failed(format!(
                "{} holds another CA ({}) than {url} ({}); run with an empty --data-dir to issue as the storage's \
                 CA, or give this CA its own storage",
                path.parent().and_then(|p| p.parent()).unwrap_or(&path).display(),
                subject_of(&here),
                there.map(subject_of).unwrap_or_else(|| "no such certificate".to_owned()),
            )));
        }
    }
    Ok(())
}

/// The subject of the first certificate in `pem`, for messages.
fn subject_of(pem: &[u8]) -> String {
    let der: Option<rustls::pki_types::CertificateDer<'static>> = pki::read_first_pem(pem).ok();
    der.and_then(|der| x509_parser::parse_x509_certificate(&der).ok().map(|(_, cert)| cert.subject().to_string()))
        .unwrap_or_else(|| "an unreadable certificate".to_owned())
}

fn to_store(file: CaDirFile) -> CaFile {
    CaFile { name: file.name, contents: file.contents, private: file.private }
}

fn from_store(file: CaFile) -> CaDirFile {
    CaDirFile { name: file.name, contents: file.contents, private: file.private }
}
