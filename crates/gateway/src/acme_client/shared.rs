//! Site certificates shared by the gateways of one database (PostgreSQL storage):
//! stored once, ordered by one instance at a time.
//!
//! Before ordering, an instance takes the site's renewal lease in the database
//! (`store::LeaseStore`), renews it while the order runs, writes the certificate
//! into the store under it (refused if the lease was taken over meanwhile: its
//! fencing token is no longer current) and lets it go. The others, finding the
//! lease held, wait and re-read the store until the certificate lands; every
//! instance also looks at the store now and then while it waits for its renewal
//! time, and serves a newer certificate found there at once. A holder killed
//! mid-order stops renewing its lease, which runs out after its TTL; the next
//! instance to ask takes it and orders.
//!
//! Keys go into the database encrypted with the CA passphrase (PKCS#8, PBES2),
//! never in the clear. The data dir keeps a copy as a cache for when the
//! database cannot be reached; the store is the truth.

use std::path::Path;
use std::time::Duration;

use store::{Database, Lease, LeaseStore, NewSiteCertificate, SiteCertificateStore};

use super::{AcmeError, Managed, Obtained, Stored};

/// The environment variable that sets the renewal lease's time to live, in seconds
/// (default 120): a holder that dies is replaced this long after its last renewal.
pub const LEASE_TTL_ENV: &str = "GATEHOUSE_RENEWAL_LEASE_SECS";
const DEFAULT_TTL: Duration = Duration::from_secs(120);

/// The shared database, the key that encrypts site keys in it, and who this instance is.
#[derive(Clone)]
pub struct SharedSites {
    store: Database,
    passphrase: pki::Passphrase,
    holder: String,
    ttl: Duration,
}

impl std::fmt::Debug for SharedSites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedSites({}, ttl {:?})", self.holder, self.ttl)
    }
}

impl SharedSites {
    /// Shares site certificates through `store`, their keys encrypted with `passphrase`.
    /// The holder name is this host's name and a random id made now; the lease's TTL
    /// comes from [`LEASE_TTL_ENV`] (an error names a value that is not whole seconds).
    pub fn new(store: Database, passphrase: pki::Passphrase) -> Result<SharedSites, String> {
        let ttl = match std::env::var(LEASE_TTL_ENV) {
            Ok(text) => match text.trim().parse::<u64>() {
                Ok(secs) if secs > 0 => Duration::from_secs(secs),
                _ => {
                    return Err(format!("{LEASE_TTL_ENV}={text} is not a number of seconds above 0; unset it for 120"));
                }
            },
            Err(_) => DEFAULT_TTL,
        };
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "unknown-host".to_owned());
        let holder = format!("{host}/{:016x}", rand::random::<u64>());
        Ok(SharedSites { store, passphrase, holder, ttl })
    }

    /// Who this instance is in the lease table.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// How often a waiting instance reads the store again.
    pub(crate) fn poll_interval(&self) -> Duration {
        (self.ttl / 4).clamp(Duration::from_millis(500), Duration::from_secs(5))
    }

    /// The shared database.
    pub(crate) fn store(&self) -> &Database {
        &self.store
    }

    /// The passphrase that encrypts keys in the database.
    pub(crate) fn passphrase(&self) -> &pki::Passphrase {
        &self.passphrase
    }

    /// How long a lease is granted for.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The chain and the key (decrypted, PKCS#8 PEM) stored by `name`.
    pub(crate) async fn read_pem(&self, name: &str) -> Result<Option<(String, String)>, String> {
        let Some(row) = self.store.site_certificate(name).await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let key = pki::decode_private_key(Path::new(name), &row.key_pem, Some(&self.passphrase))
            .map_err(|e| format!("the stored key of {name}: {e}"))?;
        let key_pem = pki::encode_private_key(&key, None).map_err(|e| e.to_string())?;
        Ok(Some((row.chain_pem, key_pem.to_string())))
    }

    /// Stores a chain and its key (PKCS#8 PEM, encrypted here) by `name` under `lease`.
    pub(crate) async fn write_pem(
        &self,
        name: &str,
        chain_pem: &str,
        key_pem: &str,
        not_after: i64,
        lease: &Lease,
    ) -> Result<(), String> {
        let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| e.to_string())?;
        let key_pem = pki::encode_private_key(&key, Some(&self.passphrase)).map_err(|e| e.to_string())?;
        let certificate = NewSiteCertificate { name, chain_pem, key_pem: &key_pem, not_after };
        self.store.put_site_certificate(certificate, lease).await.map_err(|e| e.to_string())
    }

    /// The certificate stored by `name`, its key decrypted.
    async fn read(&self, name: &str) -> Result<Option<Stored>, AcmeError> {
        let Some((chain_pem, key_pem)) = self.read_pem(name).await.map_err(AcmeError::Local)? else {
            return Ok(None);
        };
        Stored::new(chain_pem, key_pem).map(Some).map_err(AcmeError::Local)
    }

    /// The stored chain of `name` only (no key decrypted): to tell whether it changed.
    async fn stored_chain(&self, name: &str) -> Option<String> {
        self.store.site_certificate(name).await.ok().flatten().map(|row| row.chain_pem)
    }

    /// Stores `stored` by `name` under `lease`, its key encrypted.
    async fn write(&self, name: &str, stored: &Stored, lease: &Lease) -> Result<(), AcmeError> {
        self.write_pem(name, &stored.chain_pem, &stored.key_pem, stored.not_after, lease)
            .await
            .map_err(AcmeError::Local)
    }
}

fn store_error(e: store::StoreError) -> AcmeError {
    AcmeError::Local(e.to_string())
}

/// The certificate of `managed` in the store, if one covers its names and its key fits.
pub(super) async fn kept(managed: &Managed, shared: &SharedSites) -> Result<Option<Stored>, AcmeError> {
    let Some(stored) = shared.read(&managed.shared_name()).await? else { return Ok(None) };
    if !stored.covers(&managed.names) {
        return Ok(None);
    }
    crate::certificates::stored_key(&stored, &managed.client.provider).map_err(|e| AcmeError::Local(e.to_string()))?;
    Ok(Some(stored))
}

/// Waits up to `wait` for the store to hold a certificate for `managed` other than
/// `serving` (its chain PEM); true when it does.
pub(super) async fn changed_within(
    managed: &Managed,
    shared: &SharedSites,
    serving: Option<&str>,
    wait: Duration,
) -> bool {
    let until = tokio::time::Instant::now() + wait;
    loop {
        let chain = shared.stored_chain(&managed.shared_name()).await;
        if chain.is_some() && chain.as_deref() != serving {
            return true;
        }
        let now = tokio::time::Instant::now();
        if now >= until {
            return false;
        }
        tokio::time::sleep((until - now).min(shared.poll_interval())).await;
    }
}

/// Orders for `managed` under its renewal lease, or takes what the holder of the lease
/// stores, whichever this instance gets to first.
pub(super) async fn order(
    managed: &Managed,
    shared: &SharedSites,
    current: Option<&Stored>,
) -> Result<(Stored, Obtained), AcmeError> {
    let name = managed.shared_name();
    let hosts = managed.names.join(",");
    let mut announced = false;
    let serving = current.map(|current| current.chain_pem.as_str());
    loop {
        // A certificate other than the one being replaced: a peer renewed it. (Its
        // chain is compared first: decrypting the key costs a key derivation.)
        let chain = shared.stored_chain(&name).await;
        if chain.is_some()
            && chain.as_deref() != serving
            && let Some(stored) = kept(managed, shared).await?
            && current.is_none_or(|current| current.serial != stored.serial)
        {
            return Ok((stored, Obtained::FromPeer));
        }
        let lease = shared.store.acquire_lease(&name, &shared.holder, shared.ttl).await.map_err(store_error)?;
        let Some(lease) = lease else {
            if !announced {
                announced = true;
                tracing::info!(%hosts, lease = %name, "another instance holds the renewal lease; waiting for its certificate");
            }
            changed_within(managed, shared, serving, shared.poll_interval()).await;
            continue;
        };
        tracing::info!(
            %hosts, lease = %name, holder = %shared.holder, fencing = lease.fencing,
            ttl_secs = shared.ttl.as_secs(), "took the renewal lease; ordering"
        );
        let result = order_holding(managed, shared, current, &lease).await;
        if let Err(e) = shared.store.release_lease(&lease).await {
            tracing::warn!(%hosts, lease = %name, error = %e, "could not let the renewal lease go; it runs out by itself");
        }
        return result;
    }
}

/// Orders while renewing `lease`, and stores the certificate under it.
async fn order_holding(
    managed: &Managed,
    shared: &SharedSites,
    current: Option<&Stored>,
    lease: &Lease,
) -> Result<(Stored, Obtained), AcmeError> {
    // A peer may have stored one between our read and our grant.
    if let Some(stored) = kept(managed, shared).await?
        && current.is_none_or(|current| current.serial != stored.serial)
    {
        return Ok((stored, Obtained::FromPeer));
    }
    let keep_lease = async {
        loop {
            tokio::time::sleep(shared.ttl / 3).await;
            match shared.store.renew_lease(lease, shared.ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    return AcmeError::Local(format!(
                        "the renewal lease {} was taken over by another instance; this order is abandoned",
                        lease.name
                    ));
                }
                // The database is away for now: the lease runs until its expiry anyway.
                Err(e) => tracing::warn!(lease = %lease.name, error = %e, "could not renew the renewal lease"),
            }
        }
    };
    let stored = tokio::select! {
        stored = managed.order_here(current) => stored?,
        lost = keep_lease => return Err(lost),
    };
    shared.write(&managed.shared_name(), &stored, lease).await?;
    Ok((stored, Obtained::Ordered))
}
