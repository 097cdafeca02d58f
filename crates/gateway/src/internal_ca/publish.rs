//! The internal CA's CRL as the gateway publishes it on its plain-HTTP listener
//! (`server::plain::CRL_PATH`): made from the issuance database, and made again only
//! when the revoked set changes or half its validity has gone by. Anyone can ask for
//! it, so a CA that cannot sign (an encrypted key and no passphrase, the database
//! down) is tried again at most every [`RETRY_SECS`] and logged once per reason.

use std::sync::atomic::Ordering;

use super::InternalCa;

/// The shortest time between two tries to make a CRL after one failed, seconds.
const RETRY_SECS: i64 = 10;

/// What the gateway has to publish.
#[derive(Default)]
pub(super) struct Published {
    crl: Option<PublishedCrl>,
    /// The last try failed: when, and why (logged once until it says something else).
    failed: Option<(i64, String)>,
}

/// A CRL made for publishing, and when to make the next one.
struct PublishedCrl {
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
    /// issuance database, so it holds every revocation this gateway enforces. `None`
    /// when it cannot be made now (the log says why); an out-of-date CRL is never
    /// served in its place.
    pub async fn published_crl(&self) -> Option<bytes::Bytes> {
        let mut published = self.published.lock().await;
        let changed = self.revocations_changed.load(Ordering::Acquire);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if let Some(crl) = &published.crl
            && crl.changed == changed
            && now < crl.renew_at
        {
            return Some(crl.der.clone());
        }
        if published.failed.as_ref().is_some_and(|(at, _)| now < at + RETRY_SECS) {
            return None;
        }
        match self.make_crl().await {
            Ok((der, hours)) => {
                if published.failed.take().is_some() {
                    tracing::warn!("the CRL to publish can be made again");
                }
                published.crl =
                    Some(PublishedCrl { changed, der: der.clone(), renew_at: now + i64::from(hours) * 1800 });
                Some(der)
            }
            Err(e) => {
                let reason = e.to_string();
                if published.failed.as_ref().is_none_or(|(_, last)| *last != reason) {
                    tracing::warn!(error = %reason, "cannot make the CRL to publish; answering 503 until it can be made");
                }
                published.crl = None;
                published.failed = Some((now, reason));
                None
            }
        }
    }

    /// A new CRL from the issuance database, and its validity in hours.
    async fn make_crl(&self) -> Result<(bytes::Bytes, u32), super::InternalCaError> {
        let issuer = pki::CaDir::new(&self.data_dir).issuer(self.passphrase.as_ref())?;
        let hours = issuer.settings().crl_next_update_hours;
        let crl = pki::CertificateAuthority::new(issuer, self.store.clone()).crl(None).await?;
        tracing::info!(number = crl.number, revoked = crl.entries, "made the CRL the gateway publishes");
        Ok((bytes::Bytes::from(crl.der), hours))
    }
}
