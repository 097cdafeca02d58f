//! The internal CA's CRL as the gateway publishes it on its plain-HTTP listener
//! (`server::plain::CRL_PATH`): made from the issuance database, and made again only
//! when the revoked set changes or half its validity has gone by.

use std::sync::atomic::Ordering;

use super::{InternalCa, InternalCaError};

/// A CRL made for publishing, and when to make the next one.
pub(super) struct PublishedCrl {
    /// [`InternalCa::revocations_changed`] when it was made.
    changed: u64,
    /// DER.
    der: bytes::Bytes,
    /// Unix time after which it is made again though nothing changed: half its validity.
    renew_at: i64,
}

impl InternalCa {
    /// The CRL the gateway publishes (DER), signed by the intermediate: made again once
    /// the revoked set has changed, or half its validity (`crl_next_update_hours` of
    /// `ca.toml`) has gone by, and the same bytes in between, so a client fetching it
    /// often neither costs a signature nor uses up CRL numbers. It is made from the
    /// issuance database, so it holds every revocation this gateway enforces.
    pub async fn published_crl(&self) -> Result<bytes::Bytes, InternalCaError> {
        let mut published = self.published.lock().await;
        let changed = self.revocations_changed.load(Ordering::Acquire);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if let Some(crl) = published.as_ref()
            && crl.changed == changed
            && now < crl.renew_at
        {
            return Ok(crl.der.clone());
        }
        let issuer = pki::CaDir::new(&self.data_dir).issuer(self.passphrase.as_ref())?;
        let hours = issuer.settings().crl_next_update_hours;
        let crl = pki::CertificateAuthority::new(issuer, self.store.clone()).crl(None).await?;
        tracing::info!(number = crl.number, revoked = crl.entries, "made the CRL the gateway publishes");
        let der = bytes::Bytes::from(crl.der);
        *published = Some(PublishedCrl { changed, der: der.clone(), renew_at: now + i64::from(hours) * 1800 });
        Ok(der)
    }
}
