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
pub mod files;
mod key;
mod name;
mod pkcs12;
mod profile;
mod serial;
mod service;

pub use authority::{CaCertificate, CaInit, CaMaterial, Issued, Issuer, LeafRequest, Subject, create_ca};
pub use ca_dir::{CaDir, pem_cert, pem_crl};
pub use crl::{RevocationReason, build_crl};
pub use csr::CheckedCsr;
pub use error::{Error, Result, SettingsError};
pub use key::{KeyType, Passphrase, decode_private_key, encode_private_key, private_key_der};
pub use name::{SubjectAltName, is_dns_name};
pub use pkcs12::{Pkcs12Format, build_pkcs12, generate_password};
pub use profile::{CaSettings, DnField, Profile, ProfilePolicy, line_col};
pub use serial::Serial;
pub use service::{CertificateAuthority, CertificateStatus, Crl, revoke, rfc3339};
