//! The certificate authority as a service over a [`Store`]: issue and record,
//! revoke, build CRLs, report status. The only place where signing meets the
//! issuance database; the order is always sign, then record durably, then
//! hand the result out, so nothing leaves the CA unrecorded.

use store::{CertificateRecord, ListFilter, ReleaseOutcome, Revocation, RevokeOutcome, Store};
use time::{Duration, OffsetDateTime};

use crate::authority::{Issued, Issuer, LeafRequest};
use crate::crl::{RevocationReason, build_crl};
use crate::csr::CheckedCsr;
use crate::error::{Error, Result};
use crate::key::KeyType;
use crate::serial::Serial;

/// An issuing CA bound to its issuance database.
pub struct CertificateAuthority<S> {
    issuer: Issuer,
    store: S,
}

/// A signed CRL.
#[derive(Debug, Clone)]
pub struct Crl {
    /// Its CRL number.
    pub number: u64,
    /// The CRL, DER.
    pub der: Vec<u8>,
    /// How many certificates it lists.
    pub entries: usize,
}

impl<S: Store> CertificateAuthority<S> {
    /// Binds an issuer to a store.
    pub fn new(issuer: Issuer, store: S) -> Self {
        CertificateAuthority { issuer, store }
    }

    /// The issuer (for chains, settings, and signing in parallel before [`record`](Self::record)).
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// Records already-signed certificates, all or none, durably.
    pub async fn record(&self, issued: &[&Issued]) -> Result<()> {
        let records: Vec<_> = issued.iter().map(|i| i.record.clone()).collect();
        self.store.record_issued(&records).await?;
        Ok(())
    }

    /// Records signed certificates whose files are still to be written, all or
    /// none, durably: they count as valid only once [`delivered`](Self::delivered)
    /// says their files exist.
    pub async fn record_undelivered(&self, issued: &[&Issued]) -> Result<()> {
        let records: Vec<_> = issued.iter().map(|i| i.record.clone()).collect();
        self.store.record_undelivered(&records).await?;
        Ok(())
    }

    /// Marks certificates recorded with [`record_undelivered`](Self::record_undelivered) as delivered.
    pub async fn delivered(&self, serials: &[String]) -> Result<()> {
        self.store.mark_delivered(serials).await?;
        Ok(())
    }

    /// Certificates recorded but never delivered (and not revoked since).
    pub async fn undelivered(&self) -> Result<Vec<CertificateRecord>> {
        Ok(self.store.certificates(ListFilter::Undelivered).await?)
    }

    /// Revokes a certificate that was never delivered, as superseded: its key
    /// may sit in a half-written bundle, so it must not stay usable.
    pub async fn supersede(&self, serial: &str) -> Result<()> {
        let revocation = Revocation {
            revoked_at: OffsetDateTime::now_utc().unix_timestamp(),
            reason: RevocationReason::Superseded.code(),
        };
        self.store.revoke(serial, revocation).await?;
        Ok(())
    }

    /// Generates a key, issues a certificate for it and records it.
    pub async fn issue(&self, request: &LeafRequest, key_type: KeyType) -> Result<(Issued, rcgen::KeyPair)> {
        let (issued, key) = self.issuer.issue_with_new_key(request, key_type)?;
        self.record(&[&issued]).await?;
        Ok((issued, key))
    }

    /// Signs a checked CSR under a profile's policy and records it.
    pub async fn sign(&self, request: &LeafRequest, csr: &CheckedCsr) -> Result<Issued> {
        let issued = self.issuer.issue(request, csr.public_key(), csr.key_is_rsa())?;
        self.record(&[&issued]).await?;
        Ok(issued)
    }

    /// Builds the next CRL: number taken durably, valid for `hours` (the settings' default when `None`).
    pub async fn crl(&self, hours: Option<u32>) -> Result<Crl> {
        let hours = hours.unwrap_or(self.issuer.settings().crl_next_update_hours);
        if hours == 0 {
            return Err(Error::CrlValidity);
        }
        let revoked = self.store.revoked(self.issuer.key_id()).await?;
        let number = self.store.next_crl_number(self.issuer.key_id()).await?;
        let this_update = OffsetDateTime::now_utc();
        let next_update = this_update + Duration::hours(i64::from(hours));
        let der = build_crl(&self.issuer, number, &revoked, this_update, next_update)?;
        Ok(Crl { number, der, entries: revoked.len() })
    }
}

/// Revokes a certificate; durable when it returns. Needs no CA key.
pub async fn revoke(store: &impl Store, serial: &Serial, reason: RevocationReason) -> Result<Revocation> {
    let revocation = Revocation { revoked_at: OffsetDateTime::now_utc().unix_timestamp(), reason: reason.code() };
    match store.revoke(&serial.to_string(), revocation).await? {
        RevokeOutcome::Revoked => Ok(revocation),
        RevokeOutcome::NotFound => Err(Error::UnknownSerial(serial.to_string())),
        RevokeOutcome::AlreadyRevoked(earlier) => Err(Error::AlreadyRevoked {
            serial: serial.to_string(),
            at: rfc3339(earlier.revoked_at),
            reason: RevocationReason::from_code(earlier.reason).name(),
        }),
    }
}

/// Releases a certificate on hold (revoked with reason certificateHold): it
/// is valid again and leaves the next CRL. Any other revocation is final.
pub async fn release_hold(store: &impl Store, serial: &Serial) -> Result<()> {
    match store.release_hold(&serial.to_string()).await? {
        ReleaseOutcome::Released => Ok(()),
        ReleaseOutcome::NotFound => Err(Error::UnknownSerial(serial.to_string())),
        ReleaseOutcome::NotOnHold(revocation) => Err(Error::NotOnHold {
            serial: serial.to_string(),
            state: match revocation {
                None => "not revoked".to_owned(),
                Some(r) => format!("revoked ({})", RevocationReason::from_code(r.reason).name()),
            },
        }),
    }
}

/// Where a certificate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertificateStatus {
    /// Within its validity and not revoked.
    Valid,
    /// Revoked (whether or not also expired).
    Revoked,
    /// Past its notAfter.
    Expired,
    /// Signed and recorded, but its files were never written (an
    /// interrupted or failed issuance); not counted as issued.
    Undelivered,
}

impl CertificateStatus {
    /// Status of a record at `now` (unix seconds).
    pub fn of(record: &CertificateRecord, now: i64) -> CertificateStatus {
        if record.revocation.is_some() {
            CertificateStatus::Revoked
        } else if !record.delivered {
            CertificateStatus::Undelivered
        } else if record.certificate.not_after < now {
            CertificateStatus::Expired
        } else {
            CertificateStatus::Valid
        }
    }

    /// `valid`, `revoked`, `expired` or `undelivered`.
    pub fn name(self) -> &'static str {
        match self {
            CertificateStatus::Valid => "valid",
            CertificateStatus::Revoked => "revoked",
            CertificateStatus::Expired => "expired",
            CertificateStatus::Undelivered => "undelivered",
        }
    }

    /// The store filter that selects this status at `now`.
    pub fn filter(self, now: i64) -> ListFilter {
        match self {
            CertificateStatus::Valid => ListFilter::Valid { now },
            CertificateStatus::Revoked => ListFilter::Revoked,
            CertificateStatus::Expired => ListFilter::Expired { now },
            CertificateStatus::Undelivered => ListFilter::Undelivered,
        }
    }
}

/// RFC 3339 form of a unix time.
pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}
