//! An ACME certificate, kept: obtained at once when the data dir has none that
//! covers its names (a gateway site serves a placeholder meanwhile), then
//! renewed on [`schedule`](super::schedule), and installed: a gateway site's
//! is swapped into its resolver (the next handshake gets it, open connections
//! keep theirs); `gatehouse agent` writes its files and runs its reload
//! command. A failed order leaves the certificate in place, is logged with the
//! CA's problem detail, and is tried again after a backoff. Gateways sharing a
//! database order one at a time and install what a peer stored (`shared.rs`).

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

use super::schedule::backoff;
use super::{Managed, Stored, until};
use crate::certificates::{SiteCertificate, stored_key};

/// Renews `site`'s certificate until the site is dropped (`stop` closes).
pub(crate) async fn keep_site(site: Weak<SiteCertificate>, managed: Arc<Managed>, stop: oneshot::Receiver<()>) {
    let install = move |stored: &Stored| match site.upgrade() {
        Some(site) => install(&site, stored),
        None => Err(super::AcmeError::Local("the site is gone".to_owned())),
    };
    keep(managed, install, stop).await
}

/// Keeps `managed`'s certificate: obtains, renews and hands each new one to `install`,
/// until `stop` closes.
pub async fn keep(
    managed: Arc<Managed>,
    install: impl Fn(&Stored) -> Result<(), super::AcmeError> + Send,
    mut stop: oneshot::Receiver<()>,
) {
    let hosts = managed.names.join(",");
    let acme = managed.acme.name.clone();
    let mut failures = 0u32;
    let mut announced = None;
    let mut chosen = None;
    // The serial this loop last installed, where a shared database may bring another.
    let mut serving: Option<String> = None;
    loop {
        let current = managed.kept().await;
        if managed.is_shared()
            && let Some(stored) = &current
            && serving.as_deref() != Some(stored.serial.as_str())
        {
            match install(stored) {
                Ok(()) => tracing::info!(
                    %hosts, %acme, serial = %stored.serial, not_after = %pki::rfc3339(stored.not_after),
                    "certificate picked up from the shared store"
                ),
                Err(error) => tracing::error!(%hosts, %acme, %error, "the shared store's certificate is refused"),
            }
            serving = Some(stored.serial.clone());
        }
        if failures > 0 {
            if stopped(backoff(failures, current.as_ref()), &mut stop).await {
                return;
            }
        } else if let Some(stored) = &current {
            let mut renewal = managed.renewal(stored).await;
            // The same window again: the time already chosen in it stands.
            match chosen {
                Some((window, at)) if renewal.window == Some(window) => renewal.at = at,
                _ => chosen = renewal.window.map(|window| (window, renewal.at)),
            }
            if !renewal.due() {
                if announced != Some(renewal.at) {
                    announced = Some(renewal.at);
                    tracing::info!(
                        %hosts, %acme, at = %rfc3339(renewal.at), reason = renewal.reason,
                        "certificate renewal scheduled"
                    );
                }
                let for_renewal = renewal.recheck.is_none_or(|recheck| recheck >= renewal.at);
                // Sharing a database, a peer may renew first: then take its certificate.
                let changed = tokio::select! {
                    changed = managed.changed_within(current.as_ref(), until(renewal.wake())) => changed,
                    _ = &mut stop => return,
                };
                if changed {
                    continue;
                }
                // Woken to look at the renewal information again: it may have moved.
                if !for_renewal {
                    continue;
                }
            }
        }
        let obtained = tokio::select! {
            obtained = managed.obtain(current.as_ref()) => obtained,
            _ = &mut stop => return,
        };
        match obtained.and_then(|stored| install(&stored).map(|()| stored)) {
            Ok(stored) => {
                failures = 0;
                serving = Some(stored.serial.clone());
                let event = if current.is_some() { "certificate renewed" } else { "certificate obtained" };
                tracing::info!(
                    %hosts, %acme, serial = %stored.serial, not_after = %pki::rfc3339(stored.not_after), "{event}"
                );
            }
            Err(error) => {
                failures += 1;
                let retry_in = backoff(failures, current.as_ref());
                tracing::error!(
                    %hosts, %acme, %error, retry_in_secs = retry_in.as_secs(),
                    "ACME order failed; the current certificate keeps serving"
                );
            }
        }
    }
}

/// Sleeps `wait`; true when `stop` closed first.
async fn stopped(wait: Duration, stop: &mut oneshot::Receiver<()>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = stop => true,
    }
}

/// Serves `stored` from the next handshake on.
fn install(site: &SiteCertificate, stored: &Stored) -> Result<(), super::AcmeError> {
    let key = stored_key(stored, site.provider()).map_err(|e| super::AcmeError::Local(e.to_string()))?;
    site.replace(key).map(drop).map_err(|e| super::AcmeError::Local(format!("the new certificate is refused: {e}")))
}

fn rfc3339(at: SystemTime) -> String {
    let secs = at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    pki::rfc3339(secs)
}
