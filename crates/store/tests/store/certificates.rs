//! Issuance and revocation: what the CA records and what a CRL is made from.

use store::{
    CertificateRecord, ListFilter, NewCertificate, ReleaseOutcome, Revocation, RevokeOutcome, RevokedEntry, Store,
    StoreError,
};

use crate::fresh::{Fresh, on_both_backends};

on_both_backends!(
    records_and_reads_back,
    duplicate_serial_rolls_back_the_whole_batch,
    revocation_is_kept_once_and_filters_work,
    undelivered_certificates_count_once_delivered,
    only_a_hold_is_released,
    crl_numbers_increase_per_issuer_and_survive_reopen,
    records_survive_reopen,
    a_schema_from_a_newer_gatehouse_is_refused,
);

pub fn cert(serial: &str, not_after: i64) -> NewCertificate {
    NewCertificate {
        serial: serial.into(),
        issuer: "AB".into(),
        profile: "client".into(),
        subject: "CN=alice".into(),
        common_name: "alice".into(),
        sans: vec!["email:alice@example.com".into()],
        not_before: 0,
        not_after,
        der: vec![0x30, 0x00],
        source: None,
    }
}

fn serials(records: Vec<CertificateRecord>) -> Vec<String> {
    records.into_iter().map(|r| r.certificate.serial).collect()
}

async fn records_and_reads_back(db: &Fresh) {
    let store = db.open().await;
    let mut from_acme = cert("02", 200);
    from_acme.source = Some("acme:a1/o1".into());
    store.record_issued(&[cert("01", 100), from_acme.clone()]).await.unwrap();
    let got = store.certificate("02").await.unwrap().unwrap();
    assert_eq!(got.certificate, from_acme);
    assert!(got.revocation.is_none());
    assert!(got.delivered);
    assert!(store.certificate("03").await.unwrap().is_none());
}

async fn duplicate_serial_rolls_back_the_whole_batch(db: &Fresh) {
    let store = db.open().await;
    store.record_issued(&[cert("01", 100)]).await.unwrap();
    let err = store.record_issued(&[cert("02", 100), cert("01", 100)]).await.unwrap_err();
    assert!(matches!(err, StoreError::SerialExists(ref s) if s == "01"), "{err}");
    assert!(store.certificate("02").await.unwrap().is_none(), "partial batch was kept");
    let err = store.record_undelivered(&[cert("01", 100)]).await.unwrap_err();
    assert!(matches!(err, StoreError::SerialExists(_)), "{err}");
}

async fn revocation_is_kept_once_and_filters_work(db: &Fresh) {
    let store = db.open().await;
    store.record_issued(&[cert("01", 100), cert("02", 50), cert("03", 1000)]).await.unwrap();
    let first = Revocation { revoked_at: 10, reason: 1 };
    assert_eq!(store.revoke("01", first).await.unwrap(), RevokeOutcome::Revoked);
    let again = store.revoke("01", Revocation { revoked_at: 20, reason: 4 }).await.unwrap();
    assert_eq!(again, RevokeOutcome::AlreadyRevoked(first));
    assert_eq!(store.revoke("FF", first).await.unwrap(), RevokeOutcome::NotFound);

    assert_eq!(serials(store.certificates(ListFilter::Valid { now: 60 }).await.unwrap()), ["03"]);
    assert_eq!(serials(store.certificates(ListFilter::Expired { now: 60 }).await.unwrap()), ["02"]);
    assert_eq!(serials(store.certificates(ListFilter::Revoked).await.unwrap()), ["01"]);
    assert_eq!(serials(store.certificates(ListFilter::All).await.unwrap()), ["01", "02", "03"]);
    let revoked = store.revoked("AB").await.unwrap();
    assert_eq!(revoked, vec![RevokedEntry { serial: "01".into(), revocation: first }]);
    assert!(store.revoked("CD").await.unwrap().is_empty());
}

async fn undelivered_certificates_count_once_delivered(db: &Fresh) {
    let store = db.open().await;
    store.record_undelivered(&[cert("01", 100), cert("02", 100)]).await.unwrap();
    store.record_issued(&[cert("03", 100)]).await.unwrap();
    assert_eq!(serials(store.certificates(ListFilter::Valid { now: 0 }).await.unwrap()), ["03"]);
    assert_eq!(serials(store.certificates(ListFilter::Undelivered).await.unwrap()), ["01", "02"]);
    assert!(!store.certificate("01").await.unwrap().unwrap().delivered);

    store.mark_delivered(&["01".into()]).await.unwrap();
    assert_eq!(serials(store.certificates(ListFilter::Valid { now: 0 }).await.unwrap()), ["01", "03"]);
    // an undelivered certificate revoked is revoked, no longer undelivered
    store.revoke("02", Revocation { revoked_at: 5, reason: 4 }).await.unwrap();
    assert!(store.certificates(ListFilter::Undelivered).await.unwrap().is_empty());
    assert_eq!(serials(store.certificates(ListFilter::Revoked).await.unwrap()), ["02"]);
}

async fn only_a_hold_is_released(db: &Fresh) {
    let store = db.open().await;
    store.record_issued(&[cert("01", 100), cert("02", 100)]).await.unwrap();
    assert_eq!(store.release_hold("01").await.unwrap(), ReleaseOutcome::NotOnHold(None));
    assert_eq!(store.release_hold("FF").await.unwrap(), ReleaseOutcome::NotFound);
    store.revoke("01", Revocation { revoked_at: 5, reason: 6 }).await.unwrap();
    let key_compromise = Revocation { revoked_at: 5, reason: 1 };
    store.revoke("02", key_compromise).await.unwrap();
    assert_eq!(store.release_hold("01").await.unwrap(), ReleaseOutcome::Released);
    assert!(store.certificate("01").await.unwrap().unwrap().revocation.is_none());
    assert!(store.revoked("AB").await.unwrap().iter().all(|r| r.serial != "01"));
    assert_eq!(store.release_hold("02").await.unwrap(), ReleaseOutcome::NotOnHold(Some(key_compromise)));
}

async fn crl_numbers_increase_per_issuer_and_survive_reopen(db: &Fresh) {
    {
        let store = db.open().await;
        assert_eq!(store.next_crl_number("AB").await.unwrap(), 1);
        assert_eq!(store.next_crl_number("AB").await.unwrap(), 2);
        assert_eq!(store.next_crl_number("CD").await.unwrap(), 1);
    }
    let store = db.open().await;
    assert_eq!(store.next_crl_number("AB").await.unwrap(), 3);
}

async fn records_survive_reopen(db: &Fresh) {
    let revocation = Revocation { revoked_at: 7, reason: 5 };
    {
        let store = db.open().await;
        store.record_issued(&[cert("01", 100), cert("02", 100)]).await.unwrap();
        store.record_undelivered(&[cert("03", 100)]).await.unwrap();
        store.revoke("02", revocation).await.unwrap();
    }
    let store = db.open().await;
    assert_eq!(serials(store.certificates(ListFilter::All).await.unwrap()), ["01", "02", "03"]);
    assert_eq!(store.certificate("02").await.unwrap().unwrap().revocation, Some(revocation));
    assert_eq!(serials(store.certificates(ListFilter::Undelivered).await.unwrap()), ["03"]);
    let err = store.record_issued(&[cert("01", 100)]).await.unwrap_err();
    assert!(matches!(err, StoreError::SerialExists(_)), "a serial was reused after reopening: {err}");
}

async fn a_schema_from_a_newer_gatehouse_is_refused(db: &Fresh) {
    db.open().await.record_issued(&[cert("01", 100)]).await.unwrap();
    db.set_schema_version(1000).await;
    let err = store::Database::open(&db.url).await.unwrap_err();
    assert!(matches!(err, StoreError::SchemaTooNew { found: 1000, .. }), "{err}");
    assert!(err.to_string().contains("upgrade gatehouse"), "{err}");
}
