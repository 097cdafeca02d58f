//! A [`Snapshot`] sealed with a passphrase: what `gatehouse store backup` writes
//! and `gatehouse store restore` reads.
//!
//! The file is a fixed header, then the snapshot as JSON sealed with AES-256-GCM:
//!
//! ```text
//! offset  bytes  field
//!      0     16  magic "gatehouse-backup"
//!     16      2  format version, big-endian (1)
//!     18      1  key derivation: 1 = PBKDF2-HMAC-SHA256
//!     19      4  PBKDF2 iterations, big-endian
//!     23     16  salt
//!     39     12  AES-256-GCM nonce
//!     51      8  length of what follows, big-endian
//!     59      …  the sealed snapshot and its 16-byte tag
//! ```
//!
//! Why this shape:
//! - The key is derived from the passphrase with PBKDF2-HMAC-SHA256, as the CA's
//!   keys at rest are (aws-lc-rs offers no scrypt). The iteration count is in the
//!   header, so a later gatehouse can raise it and still read older backups.
//! - The whole header is the GCM associated data: a changed version, iteration
//!   count, salt or length fails the tag like a changed byte of the content does.
//!   GCM cannot tell a wrong passphrase from an altered file, so neither do we.
//! - The length is in the header so a file cut short (a copy that stopped) says
//!   so, rather than looking like a wrong passphrase.
//! - Each backup has its own random salt and nonce, so one passphrase may seal
//!   many backups.
//! - JSON, because a snapshot is plain data that serde writes as it is, and a field
//!   added to it later (with `#[serde(default)]`) leaves older backups readable. A
//!   snapshot refuses fields it does not know, so an older gatehouse refuses a newer
//!   backup rather than restore part of it. Blobs are base64.

use std::num::NonZeroU32;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{pbkdf2, rand};

use crate::Snapshot;

/// What every backup starts with.
const MAGIC: &[u8; 16] = b"gatehouse-backup";
/// The format this build writes, and the newest it reads.
const FORMAT_VERSION: u16 = 1;
/// The one key derivation of format 1.
const KDF_PBKDF2_HMAC_SHA256: u8 = 1;
/// PBKDF2 rounds for a new backup (OWASP's 2023 figure, as for the CA's keys).
const PBKDF2_ITERATIONS: u32 = 600_000;
/// The most rounds a backup may ask for: far above any we write, low enough that
/// an altered count cannot keep a restore busy for hours before it fails.
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
const SALT_LEN: usize = 16;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 16 + 2 + 1 + 4 + SALT_LEN + NONCE_LEN + 8;

/// The shortest passphrase a backup is sealed with, in characters.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// Why a backup could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The passphrase is too short to seal a backup with.
    #[error("the backup passphrase has {0} characters; use at least {MIN_PASSPHRASE_CHARS}")]
    ShortPassphrase(usize),
    /// The file does not start with the magic.
    #[error(
        "it is not a gatehouse backup (it does not start with \"gatehouse-backup\"); give a file written by `gatehouse store backup`"
    )]
    NotABackup,
    /// The file was written by a newer gatehouse.
    #[error(
        "it is a backup of format version {found}, newer than this gatehouse reads ({known}); restore it with a newer gatehouse"
    )]
    TooNew {
        /// The version in the file.
        found: u16,
        /// The newest this build reads.
        known: u16,
    },
    /// The file ends before the length its header gives.
    #[error("the backup is cut short ({found} bytes of {expected}); copy the whole file again from where it is kept")]
    Truncated {
        /// The file's length.
        found: u64,
        /// The length its header gives (or the header's own, when even that is cut).
        expected: u64,
    },
    /// A header field no gatehouse writes.
    #[error("the backup's header is malformed ({0}); the file was altered")]
    Malformed(String),
    /// The tag does not verify: the passphrase is wrong or a byte changed.
    #[error("the backup does not open: wrong passphrase, or the file was altered")]
    WrongPassphraseOrAltered,
    /// The content decrypted but is not a snapshot this build reads.
    #[error(
        "the backup opened but holds records this gatehouse does not read ({0}); restore it with a newer gatehouse"
    )]
    Content(serde_json::Error),
    /// The system's random source or cipher failed.
    #[error("cannot seal the backup: the system's cryptography failed ({0})")]
    Crypto(&'static str),
}

/// `snapshot` sealed with `passphrase` in the format above.
pub fn seal(snapshot: &Snapshot, passphrase: &str) -> Result<Vec<u8>, BackupError> {
    let chars = passphrase.chars().count();
    if chars < MIN_PASSPHRASE_CHARS {
        return Err(BackupError::ShortPassphrase(chars));
    }
    seal_with(snapshot, passphrase, PBKDF2_ITERATIONS)
}

fn seal_with(snapshot: &Snapshot, passphrase: &str, iterations: u32) -> Result<Vec<u8>, BackupError> {
    let mut content = serde_json::to_vec(snapshot).map_err(BackupError::Content)?;
    let mut salt = [0; SALT_LEN];
    let mut nonce = [0; NONCE_LEN];
    rand::fill(&mut salt).map_err(|_| BackupError::Crypto("random salt"))?;
    rand::fill(&mut nonce).map_err(|_| BackupError::Crypto("random nonce"))?;
    let header = Header { iterations, salt, nonce, sealed_len: (content.len() + TAG_LEN) as u64 };
    let mut file = header.to_bytes().to_vec();
    header
        .key(passphrase)?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&file), &mut content)
        .map_err(|_| BackupError::Crypto("AES-256-GCM seal"))?;
    file.append(&mut content);
    Ok(file)
}

/// The snapshot sealed in `file` with `passphrase`.
pub fn open(file: &[u8], passphrase: &str) -> Result<Snapshot, BackupError> {
    let header = Header::parse(file)?;
    let (aad, sealed) = file.split_at(HEADER_LEN);
    let mut sealed = sealed.to_vec();
    let content = header
        .key(passphrase)?
        .open_in_place(Nonce::assume_unique_for_key(header.nonce), Aad::from(aad), &mut sealed)
        .map_err(|_| BackupError::WrongPassphraseOrAltered)?;
    serde_json::from_slice(content).map_err(BackupError::Content)
}

/// The fields of the header after the magic and version.
struct Header {
    iterations: u32,
    salt: [u8; SALT_LEN],
    nonce: [u8; NONCE_LEN],
    sealed_len: u64,
}

impl Header {
    fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0; HEADER_LEN];
        let fields: [&[u8]; 7] = [
            MAGIC,
            &FORMAT_VERSION.to_be_bytes(),
            &[KDF_PBKDF2_HMAC_SHA256],
            &self.iterations.to_be_bytes(),
            &self.salt,
            &self.nonce,
            &self.sealed_len.to_be_bytes(),
        ];
        let mut at = 0;
        for field in fields {
            out[at..at + field.len()].copy_from_slice(field);
            at += field.len();
        }
        out
    }

    /// The header of `file`, checked against the file's length; in the order a
    /// person wants to hear it: not a backup, too new, cut short, malformed.
    fn parse(file: &[u8]) -> Result<Header, BackupError> {
        let truncated =
            |expected: usize| BackupError::Truncated { found: file.len() as u64, expected: expected as u64 };
        let mut rest = file;
        let mut take = |n: usize| {
            let (field, after) = rest.split_at(n);
            rest = after;
            field
        };
        if file.len() < MAGIC.len() + 2 {
            let start = file.len().min(MAGIC.len());
            let cut = !file.is_empty() && file[..start] == MAGIC[..start];
            return Err(if cut { truncated(HEADER_LEN) } else { BackupError::NotABackup });
        }
        if take(MAGIC.len()) != MAGIC {
            return Err(BackupError::NotABackup);
        }
        let version = u16::from_be_bytes(array(take(2)));
        if version > FORMAT_VERSION {
            return Err(BackupError::TooNew { found: version, known: FORMAT_VERSION });
        }
        if version == 0 {
            return Err(BackupError::Malformed("format version 0".into()));
        }
        if file.len() < HEADER_LEN {
            return Err(truncated(HEADER_LEN));
        }
        let kdf = take(1)[0];
        let iterations = u32::from_be_bytes(array(take(4)));
        let salt = array(take(SALT_LEN));
        let nonce = array(take(NONCE_LEN));
        let sealed_len = u64::from_be_bytes(array(take(8)));
        let expected = (HEADER_LEN as u64).saturating_add(sealed_len);
        if (file.len() as u64) < expected {
            return Err(BackupError::Truncated { found: file.len() as u64, expected });
        }
        if (file.len() as u64) > expected {
            return Err(BackupError::Malformed(format!("{} bytes follow its end", file.len() as u64 - expected)));
        }
        if kdf != KDF_PBKDF2_HMAC_SHA256 {
            return Err(BackupError::Malformed(format!("unknown key derivation {kdf}")));
        }
        if iterations == 0 || iterations > MAX_PBKDF2_ITERATIONS {
            return Err(BackupError::Malformed(format!("{iterations} PBKDF2 iterations")));
        }
        if sealed_len < TAG_LEN as u64 {
            return Err(BackupError::Malformed(format!("a sealed length of {sealed_len} bytes")));
        }
        Ok(Header { iterations, salt, nonce, sealed_len })
    }

    /// The AES-256-GCM key `passphrase` gives with this header's salt and rounds.
    fn key(&self, passphrase: &str) -> Result<LessSafeKey, BackupError> {
        let iterations = NonZeroU32::new(self.iterations).ok_or(BackupError::Crypto("zero PBKDF2 iterations"))?;
        let mut key = [0; 32];
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, &self.salt, passphrase.as_bytes(), &mut key);
        let key = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| BackupError::Crypto("AES-256-GCM key"))?;
        Ok(LessSafeKey::new(key))
    }
}

/// A slice of known length as an array (the callers take exactly `N` bytes).
fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        AcmeAccount, AcmeAuthorization, AcmeChallenge, AcmeEabKey, AcmeIdentifier, AcmeOrder, CertificateRecord,
        ChallengeFailure, CrlNumber, NewCertificate, Revocation,
    };

    /// Few rounds: the tests are about the envelope, not the cost of guessing.
    const FAST: u32 = 1_000;
    const PASSPHRASE: &str = "correct horse battery";

    fn snapshot() -> Snapshot {
        let certificate = NewCertificate {
            serial: "0A1B".into(),
            issuer: "AB12".into(),
            profile: "client".into(),
            subject: "CN=alice".into(),
            common_name: "alice".into(),
            sans: vec!["email:alice@example.test".into()],
            not_before: 1_700_000_000,
            not_after: 1_700_086_400,
            der: vec![0x30, 0x82, 0x00, 0xff, 0x00],
            source: None,
        };
        Snapshot {
            certificates: vec![CertificateRecord {
                certificate,
                issued_at: 1_700_000_000,
                revocation: Some(Revocation { revoked_at: 1_700_000_100, reason: 1 }),
                delivered: true,
            }],
            crl_numbers: vec![CrlNumber { issuer: "AB12".into(), last: 3 }],
            acme_accounts: vec![AcmeAccount {
                id: "acct1".into(),
                thumbprint: "thumb".into(),
                jwk: r#"{"kty":"EC"}"#.into(),
                contact: vec!["mailto:ops@example.test".into()],
                status: "valid".into(),
                eab_kid: Some("kid1".into()),
                created_at: 1_700_000_000,
            }],
            acme_authorizations: vec![AcmeAuthorization {
                id: "authz1".into(),
                account_id: "acct1".into(),
                identifier: AcmeIdentifier { kind: "dns".into(), value: "example.test".into() },
                wildcard: false,
                status: "invalid".into(),
                expires: 1_700_003_600,
                challenges: vec![AcmeChallenge {
                    id: "chall1".into(),
                    kind: "http-01".into(),
                    token: "tok".into(),
                    status: "invalid".into(),
                    validated_at: None,
                    error: Some(r#"{"type":"urn:ietf:params:acme:error:connection"}"#.into()),
                }],
            }],
            acme_challenge_failures: vec![ChallengeFailure { challenge_id: "chall1".into(), failed_at: 1_700_000_050 }],
            acme_orders: vec![AcmeOrder {
                id: "order1".into(),
                account_id: "acct1".into(),
                status: "invalid".into(),
                identifiers: vec![AcmeIdentifier { kind: "dns".into(), value: "example.test".into() }],
                authorizations: vec!["authz1".into()],
                not_before: None,
                not_after: None,
                profile: Some("server".into()),
                replaces: None,
                expires: 1_700_003_600,
                error: None,
                certificate_serial: None,
                created_at: 1_700_000_000,
            }],
            acme_eab_keys: vec![AcmeEabKey {
                kid: "kid1".into(),
                label: "ops".into(),
                hmac_key: vec![0xde, 0xad, 0xbe, 0xef],
                created_at: 1_699_999_000,
                revoked_at: None,
                account_id: Some("acct1".into()),
            }],
            ca_files: vec![crate::CaFile {
                name: "ca/intermediate.key".into(),
                contents: b"-----BEGIN ENCRYPTED PRIVATE KEY-----".to_vec(),
                private: true,
            }],
            site_certificates: vec![crate::SiteCertificate {
                name: "internal-ca/www.example.test".into(),
                chain_pem: "-----BEGIN CERTIFICATE-----".into(),
                key_pem: "-----BEGIN ENCRYPTED PRIVATE KEY-----".into(),
                not_after: 1_700_086_400,
                updated_at: 1_700_000_000_123,
                lease: "internal-ca/www.example.test".into(),
                fencing: 4,
            }],
            acme_client_accounts: vec![crate::ClientAccount {
                directory: "https://ca.example.test/acme/directory".into(),
                name: "internal".into(),
                account_url: "https://ca.example.test/acme/acct/1".into(),
                key_pem: "-----BEGIN ENCRYPTED PRIVATE KEY-----".into(),
                created_at: 1_700_000_000_456,
            }],
        }
    }

    fn sealed() -> Vec<u8> {
        seal_with(&snapshot(), PASSPHRASE, FAST).expect("seal")
    }

    #[test]
    fn a_sealed_snapshot_opens_as_it_was() {
        let file = sealed();
        assert!(file.starts_with(b"gatehouse-backup\x00\x01\x01"));
        assert!(!file.windows(5).any(|w| w == b"alice"), "the content is in the clear");
        assert_eq!(open(&file, PASSPHRASE).expect("open"), snapshot());
        assert_ne!(sealed()[HEADER_LEN..], file[HEADER_LEN..], "two backups share a salt or nonce");
    }

    #[test]
    fn a_new_backup_takes_600000_rounds_and_a_long_passphrase() {
        let file = seal(&Snapshot::default(), "twelve chars").expect("seal");
        assert_eq!(file[19..23], 600_000u32.to_be_bytes());
        assert_eq!(open(&file, "twelve chars").expect("open"), Snapshot::default());
        let short = seal(&Snapshot::default(), "eleven char").unwrap_err();
        assert!(matches!(short, BackupError::ShortPassphrase(11)), "{short}");
        assert_eq!(short.to_string(), "the backup passphrase has 11 characters; use at least 12");
    }

    #[test]
    fn a_wrong_passphrase_or_any_changed_byte_does_not_open() {
        let file = sealed();
        let wrong = open(&file, "correct horse battery!").unwrap_err();
        assert!(matches!(wrong, BackupError::WrongPassphraseOrAltered), "{wrong}");
        assert_eq!(wrong.to_string(), "the backup does not open: wrong passphrase, or the file was altered");
        // Every byte after the version: the KDF, rounds, salt, nonce and length are
        // checked by the tag, or refused before it.
        for at in 18..file.len() {
            let mut altered = file.clone();
            altered[at] ^= 0x01;
            let e = open(&altered, PASSPHRASE).unwrap_err();
            assert!(
                matches!(
                    e,
                    BackupError::WrongPassphraseOrAltered | BackupError::Malformed(_) | BackupError::Truncated { .. }
                ),
                "byte {at}: {e}"
            );
        }
    }

    #[test]
    fn a_file_cut_short_says_so_with_its_length() {
        let file = sealed();
        for len in [1, 17, 18, 40, HEADER_LEN, file.len() - 1] {
            let e = open(&file[..len], PASSPHRASE).unwrap_err();
            let BackupError::Truncated { found, expected } = e else { panic!("{len} bytes: {e}") };
            assert_eq!(found, len as u64);
            let whole = if len < HEADER_LEN { HEADER_LEN } else { file.len() } as u64;
            assert_eq!(expected, whole, "{len} bytes");
        }
        let mut longer = file.clone();
        longer.push(0);
        let e = open(&longer, PASSPHRASE).unwrap_err();
        assert_eq!(e.to_string(), "the backup's header is malformed (1 bytes follow its end); the file was altered");
    }

    #[test]
    fn another_file_or_a_newer_format_is_named() {
        for other in [&b""[..], b"-----BEGIN CERTIFICATE-----\nMIIB", b"SQLite format 3\0..."] {
            let e = open(other, PASSPHRASE).unwrap_err();
            assert!(matches!(e, BackupError::NotABackup), "{e}");
        }
        let mut newer = sealed();
        newer[16..18].copy_from_slice(&2u16.to_be_bytes());
        let e = open(&newer, PASSPHRASE).unwrap_err();
        assert_eq!(
            e.to_string(),
            "it is a backup of format version 2, newer than this gatehouse reads (1); restore it with a newer gatehouse"
        );
        let mut rounds = sealed();
        rounds[19..23].copy_from_slice(&u32::MAX.to_be_bytes());
        let e = open(&rounds, PASSPHRASE).unwrap_err();
        assert!(matches!(e, BackupError::Malformed(_)), "{e}");
    }

    #[test]
    fn blobs_are_base64_in_the_sealed_json() {
        let json = serde_json::to_value(snapshot()).expect("json");
        assert_eq!(json["certificates"][0]["certificate"]["der"], "MIIA/wA=");
        assert_eq!(json["acme_eab_keys"][0]["hmac_key"], "3q2+7w==");
    }

    #[test]
    fn a_snapshot_with_a_field_this_build_does_not_know_is_refused() {
        let mut json: serde_json::Value = serde_json::to_value(snapshot()).expect("json");
        json["ca_keys"] = serde_json::json!([]);
        let content = serde_json::to_vec(&json).expect("json");
        let e = serde_json::from_slice::<Snapshot>(&content).map_err(BackupError::Content).unwrap_err();
        assert!(e.to_string().contains("unknown field `ca_keys`"), "{e}");
        // Fields a newer build adds with a default leave older backups readable.
        let older = serde_json::json!({ "certificates": [] });
        let read: Snapshot = serde_json::from_value(older).expect("an older snapshot");
        assert_eq!(read, Snapshot::default());
    }

    #[test]
    fn a_backup_from_before_site_certificates_restores_with_none() {
        let mut json: serde_json::Value = serde_json::to_value(snapshot()).expect("json");
        json.as_object_mut().expect("an object").remove("site_certificates");
        let read: Snapshot = serde_json::from_value(json).expect("a snapshot without site certificates");
        assert!(read.site_certificates.is_empty());
        assert_eq!(Snapshot { site_certificates: Vec::new(), ..snapshot() }, read);
    }
}
