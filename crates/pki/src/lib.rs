//! The certificate authority core of gatehouse: key generation, the root and
//! issuing CA, server and client profiles with their issuance policy, CSR
//! checks, issuing, revocation, CRLs and PKCS#12 bundles.
//!
//! It owns the CA's files in the data dir ([`CaDir`]) and talks to the
//! issuance database only through the [`store::Store`] trait, so the same
//! logic runs over SQLite or PostgreSQL. It knows nothing of HTTP, TLS
//! listeners or command lines.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod authority;
mod ca_dir;
mod crl;
mod csr;
mod error;
mod external;
pub mod files;
mod host;
mod key;
mod name;
mod pem;
mod pkcs12;
mod profile;
mod roster;
mod serial;
mod service;
mod settings;
mod x509;

pub use authority::{
    CaCertificate, CaInit, CaMaterial, IssueOptions, Issued, Issuer, LeafRequest, Subject, create_ca,
    create_ca_for_key, create_ca_for_keys,
};
pub use ca_dir::{CaDir, CaDirFile, pem_cert, pem_crl};
pub use crl::{RevocationReason, build_crl};
pub use csr::{CheckedCsr, CsrDefect};
pub use error::{Error, Result, SettingsError};
pub use external::{CaKey, ExternalKey, TokenOpener, set_token_opener};
pub use key::{KeyType, Passphrase, decode_private_key, encode_private_key, private_key_der};
pub use name::{SubjectAltName, dns_matches, is_dns_name, reverse_dns_name, wildcard_matches};
pub use pem::{PemDefect, PemFileError, read_first_pem, read_first_pem_file, read_pem, read_pem_file};
pub use pkcs12::{Pkcs12Format, build_pkcs12, generate_password};
pub use profile::{DnField, Profile, ProfilePolicy};
pub use roster::{COLUMNS as ROSTER_COLUMNS, RosterProblem, RosterRow, read_roster};
pub use serial::Serial;
pub use service::{CertificateAuthority, CertificateStatus, Crl, release_hold, revoke, rfc3339};
pub use settings::{AcmeProfile, CaSettings, line_col};
pub use x509::{allows_client_auth, subject_alt_names, subject_key_id, subject_key_id_of_der};
