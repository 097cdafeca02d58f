//! Leases and the site certificates written under them: one holder at a time, a
//! lease that runs out is taken over, and a holder whose lease was taken over
//! cannot write; on PostgreSQL also with instances racing.

use std::time::{Duration, Instant};

use store::{Database, Lease, LeaseStore, NewSiteCertificate, SiteCertificateStore, StoreError};
use tokio::task::JoinSet;

use crate::fresh::{Fresh, on_both_backends};

on_both_backends!(
    a_lease_is_held_by_one_holder_at_a_time,
    a_lease_that_runs_out_is_taken_over_and_its_old_holder_cannot_write,
    a_site_certificate_is_stored_under_its_lease_and_read_by_all,
);

const LONG: Duration = Duration::from_secs(600);
const SHORT: Duration = Duration::from_millis(300);

fn site(chain_pem: &str) -> NewSiteCertificate<'_> {
    NewSiteCertificate { name: "a.test,b.test", chain_pem, key_pem: "ENCRYPTED KEY", not_after: 1_900_000_000 }
}

/// Asks for the lease until it is granted: it runs out by the database's clock.
async fn acquire_when_expired(store: &Database, name: &str, holder: &str) -> Lease {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(lease) = store.acquire_lease(name, holder, LONG).await.unwrap() {
            return lease;
        }
        assert!(Instant::now() < deadline, "the lease {name} never ran out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_lease_is_held_by_one_holder_at_a_time(db: &Fresh) {
    let store = db.open().await;
    let a = store.acquire_lease("site", "a", LONG).await.unwrap().expect("a free lease is granted");
    assert_eq!((a.name.as_str(), a.holder.as_str()), ("site", "a"));
    assert_eq!(store.acquire_lease("site", "b", LONG).await.unwrap(), None, "b is refused while a holds it");
    assert_eq!(store.acquire_lease("site", "a", LONG).await.unwrap(), Some(a.clone()), "a keeps its token");
    let other = store.acquire_lease("other site", "b", LONG).await.unwrap();
    assert!(other.is_some(), "another name is another lease");
    assert!(store.renew_lease(&a, LONG).await.unwrap());

    store.release_lease(&a).await.unwrap();
    let b = store.acquire_lease("site", "b", LONG).await.unwrap().expect("a released lease is granted");
    assert!(b.fencing > a.fencing, "a new grant takes a larger token: {b:?} after {a:?}");
    assert!(!store.renew_lease(&a, LONG).await.unwrap(), "a's old lease cannot be renewed");
    store.release_lease(&a).await.unwrap();
    assert_eq!(store.acquire_lease("site", "c", LONG).await.unwrap(), None, "a's release let go of nothing of b's");
}

async fn a_lease_that_runs_out_is_taken_over_and_its_old_holder_cannot_write(db: &Fresh) {
    let store = db.open().await;
    let a = store.acquire_lease("site", "a", SHORT).await.unwrap().unwrap();
    let b = acquire_when_expired(&store, "site", "b").await;
    assert!(b.fencing > a.fencing, "{b:?} after {a:?}");
    assert!(!store.renew_lease(&a, LONG).await.unwrap(), "a learns it lost the lease when it renews");

    let err = store.put_site_certificate(site("A'S CHAIN"), &a).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { ref name, fencing, .. } if name == "site" && fencing == a.fencing));
    let message = err.to_string();
    assert!(message.contains("taken over") && message.contains("held by b"), "{message}");
    assert_eq!(store.site_certificate("a.test,b.test").await.unwrap(), None, "a wrote nothing");

    store.put_site_certificate(site("B'S CHAIN"), &b).await.unwrap();
    let stored = store.site_certificate("a.test,b.test").await.unwrap().unwrap();
    assert_eq!((stored.chain_pem.as_str(), stored.fencing), ("B'S CHAIN", b.fencing));
    assert!(store.put_site_certificate(site("A'S CHAIN"), &a).await.is_err(), "nor over what b wrote");
    assert_eq!(store.site_certificate("a.test,b.test").await.unwrap().unwrap().chain_pem, "B'S CHAIN");
}

async fn a_site_certificate_is_stored_under_its_lease_and_read_by_all(db: &Fresh) {
    let store = db.open().await;
    let never_granted = Lease { name: "site".into(), holder: "a".into(), fencing: 1 };
    let err = store.put_site_certificate(site("CHAIN"), &never_granted).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { current: None, .. }), "{err}");

    let lease = store.acquire_lease("site", "a", LONG).await.unwrap().unwrap();
    store.put_site_certificate(site("FIRST"), &lease).await.unwrap();
    let first = store.site_certificate("a.test,b.test").await.unwrap().unwrap();
    store.put_site_certificate(site("RENEWED"), &lease).await.unwrap();
    store.release_lease(&lease).await.unwrap();

    let other_instance = db.open().await;
    let stored = other_instance.site_certificate("a.test,b.test").await.unwrap().unwrap();
    assert_eq!(stored.chain_pem, "RENEWED");
    assert_eq!((stored.key_pem.as_str(), stored.not_after), ("ENCRYPTED KEY", 1_900_000_000));
    assert_eq!((stored.lease.as_str(), stored.fencing), ("site", lease.fencing));
    assert!(stored.updated_at >= first.updated_at && stored.updated_at > 1_600_000_000_000, "{stored:?}");
    assert_eq!(other_instance.site_certificate("c.test").await.unwrap(), None);
}

/// Eight instances ask for each of 20 leases at once: each is granted to one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holders_asking_at_once_on_postgres_are_granted_one_at_a_time() {
    let db = Fresh::postgres().await;
    let mut instances = Vec::new();
    for _ in 0..4 {
        instances.push(db.open().await);
    }
    let mut askers = JoinSet::new();
    for name in 0..20 {
        for holder in 0..8 {
            let store = instances[holder % instances.len()].clone();
            askers.spawn(async move {
                let lease = store.acquire_lease(&format!("site {name}"), &format!("holder {holder}"), LONG).await;
                (name, lease.unwrap())
            });
        }
    }
    let mut granted = [0; 20];
    for (name, lease) in askers.join_all().await {
        granted[name] += usize::from(lease.is_some());
    }
    assert_eq!(granted, [1; 20], "how many holders were granted each lease");
}

/// The old holder of a lease that ran out writes while the new holder, on another
/// instance, is granted it and writes: whatever the order, the new holder's
/// certificate is the one stored, and the old one's write is refused once the
/// lease is taken over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_holder_racing_the_new_one_on_postgres_never_overwrites_it() {
    let db = Fresh::postgres().await;
    let (a_instance, b_instance) = (db.open().await, db.open().await);
    for round in 0..10 {
        let name = format!("site {round}");
        let old = a_instance.acquire_lease(&name, "a", SHORT).await.unwrap().unwrap();
        let certificate = NewSiteCertificate { name: &name, chain_pem: "OLD", key_pem: "K", not_after: 1 };
        // Wait until it ran out, then race the old holder's write against the takeover.
        let new = acquire_when_expired(&b_instance, &name, "b").await;
        b_instance.release_lease(&new).await.unwrap();
        let b = b_instance.clone();
        let name_b = name.clone();
        let taker = tokio::spawn(async move {
            let lease = b.acquire_lease(&name_b, "b", LONG).await.unwrap().expect("a released lease is granted");
            let certificate = NewSiteCertificate { name: &name_b, chain_pem: "NEW", key_pem: "K", not_after: 2 };
            b.put_site_certificate(certificate, &lease).await.unwrap();
            lease
        });
        let old_write = a_instance.put_site_certificate(certificate, &old).await;
        let new = taker.await.unwrap();
        assert!(matches!(old_write, Err(StoreError::LeaseLost { .. })), "round {round}: {old_write:?}");
        let stored = a_instance.site_certificate(&name).await.unwrap().unwrap();
        assert_eq!((stored.chain_pem.as_str(), stored.fencing), ("NEW", new.fencing), "round {round}");
    }
}
