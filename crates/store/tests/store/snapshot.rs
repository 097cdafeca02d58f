//! Moving a store between backends: export, import into an empty database, and
//! the schema versions opening reports (for `gatehouse store copy` and `store migrate`).

use std::time::Duration;

use store::{
    AcmeClientStore, AcmeEabKey, AcmeStore, AnswerKind, ChallengeAnswer, ClientAccount, Database, LeaseStore,
    ListFilter, NewSiteCertificate, Revocation, SchemaVersions, SiteCertificateStore, Snapshot, StorageUrl, Store,
    StoreError,
};

use crate::acme::{account, order};
use crate::certificates::cert;
use crate::fresh::{Fresh, on_both_backends};

on_both_backends!(
    a_copy_to_either_backend_holds_everything_but_nonces_and_leases,
    a_target_that_holds_anything_is_refused_and_left_as_it_was,
    opening_says_which_schema_version_it_found_and_left,
);

/// A site's renewal lease, held for longer than any test runs.
const SITE_LEASE: &str = "acme/www.example.test";
const HOUR: Duration = Duration::from_secs(3600);

/// A store with one of everything: delivered, undelivered, revoked and ACME-issued
/// certificates, CRL numbers, an account with an order, a failed challenge, EAB keys,
/// a site certificate written under its lease (still held).
async fn filled(store: &Database) {
    let mut from_acme = cert("03", 300);
    from_acme.source = Some("acme:a1/o1".into());
    store.record_issued(&[cert("01", 100), cert("02", 200), from_acme]).await.unwrap();
    store.record_undelivered(&[cert("04", 400)]).await.unwrap();
    store.revoke("02", Revocation { revoked_at: 50, reason: 1 }).await.unwrap();
    for _ in 0..3 {
        store.next_crl_number("AB").await.unwrap();
    }
    store.next_crl_number("CD").await.unwrap();
    store.account_insert(&account("a1", "t1")).await.unwrap();
    let (order, authorization) = order();
    store.order_insert(&order, &[authorization]).await.unwrap();
    store.challenge_transition("c2", "pending", "invalid", None, Some("{}")).await.unwrap();
    store.challenge_transition("c1", "pending", "valid", Some(7), None).await.unwrap();
    store.order_transition("o1", "pending", "valid", None, Some("03")).await.unwrap();
    let eab = AcmeEabKey {
        kid: "k1".into(),
        label: "team".into(),
        hmac_key: vec![0, 255],
        created_at: 4,
        revoked_at: None,
        account_id: Some("a1".into()),
    };
    store.eab_insert(&eab).await.unwrap();
    store.eab_insert(&AcmeEabKey { kid: "k2".into(), revoked_at: Some(6), account_id: None, ..eab }).await.unwrap();
    store.nonce_insert("n1", i64::MAX).await.unwrap();
    let lease = store.acquire_lease(SITE_LEASE, "instance-a", HOUR).await.unwrap().expect("a free lease");
    let site = NewSiteCertificate {
        name: "www.example.test",
        chain_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        key_pem: "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF\n-----END ENCRYPTED PRIVATE KEY-----\n",
        not_after: 2_000_000_000,
    };
    store.put_site_certificate(site, &lease).await.unwrap();
    store.keep_client_account(&client_account()).await.unwrap();
    let answer = ChallengeAnswer {
        kind: AnswerKind::Http01,
        name: "tok".into(),
        identifier: "www.example.test".into(),
        value: "tok.thumb".into(),
    };
    store.put_answer(&answer, HOUR).await.unwrap();
}

/// The gateways' ACME client account in [`filled`].
fn client_account() -> ClientAccount {
    ClientAccount {
        directory: "https://ca.example.test/acme/directory".into(),
        name: "internal".into(),
        account_url: "https://ca.example.test/acme/acct/1".into(),
        key_pem: "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIF\n-----END ENCRYPTED PRIVATE KEY-----\n".into(),
        created_at: 0,
    }
}

async fn a_copy_to_either_backend_holds_everything_but_nonces_and_leases(db: &Fresh) {
    let source = db.open().await;
    filled(&source).await;
    let exported = source.export().await.unwrap();
    assert_eq!(exported.certificates.len(), 4);
    assert_eq!(exported.acme_challenge_failures.len(), 1);
    let site = source.site_certificate("www.example.test").await.unwrap().expect("the site certificate");
    assert_eq!(exported.site_certificates, std::slice::from_ref(&site));
    assert_eq!(exported.acme_client_accounts.len(), 1);
    for target in [Fresh::sqlite().await, Fresh::postgres().await] {
        let copy = target.open().await;
        copy.import(&exported).await.unwrap();
        assert_eq!(copy.export().await.unwrap(), exported, "{} differs from its source", target.url);
        // What the CA and the ACME server ask of it answers as the source does.
        for filter in [ListFilter::All, ListFilter::Valid { now: 150 }, ListFilter::Revoked, ListFilter::Undelivered] {
            assert_eq!(copy.certificates(filter).await.unwrap(), source.certificates(filter).await.unwrap());
        }
        assert_eq!(copy.revoked("AB").await.unwrap(), source.revoked("AB").await.unwrap());
        assert_eq!(copy.next_crl_number("AB").await.unwrap(), 4, "CRL numbers go on from the source's");
        assert_eq!(copy.order_by_certificate("03").await.unwrap(), source.order_by_certificate("03").await.unwrap());
        assert_eq!(copy.challenge("c1").await.unwrap(), source.challenge("c1").await.unwrap());
        assert_eq!(copy.failed_validations_since("a1", 0).await.unwrap(), 1);
        assert_eq!(copy.eab_keys().await.unwrap(), source.eab_keys().await.unwrap());
        assert!(!copy.nonce_take("n1", 0).await.unwrap(), "nonces are not copied");
        assert_eq!(copy.site_certificate("www.example.test").await.unwrap().as_ref(), Some(&site));
        let account = copy.client_account(&client_account().directory, "internal").await.unwrap();
        assert_eq!(account.as_ref(), exported.acme_client_accounts.first(), "the ACME client account");
        assert_eq!(account.map(|a| a.key_pem), Some(client_account().key_pem));
        assert!(copy.answer(AnswerKind::Http01, "tok").await.unwrap().is_none(), "answers are not copied");
        // The lease the source holds is not copied: another instance takes it at once on the copy.
        let lease = copy.acquire_lease(SITE_LEASE, "instance-b", HOUR).await.unwrap();
        assert!(lease.is_some(), "a copy starts with no lease held");
    }
}

async fn a_target_that_holds_anything_is_refused_and_left_as_it_was(db: &Fresh) {
    let source_file = Fresh::sqlite().await;
    let source = source_file.open().await;
    filled(&source).await;
    let snapshot = source.export().await.unwrap();
    let target = db.open().await;
    target.record_issued(&[cert("0A", 100)]).await.unwrap();
    target.next_crl_number("AB").await.unwrap();
    let err = target.import(&snapshot).await.unwrap_err();
    assert!(matches!(err, StoreError::NotEmpty(ref what) if what == "1 certificate, 1 CRL number"), "{err}");
    assert!(err.to_string().contains("copy only into an empty database"), "{err}");
    let left = target.export().await.unwrap();
    assert_eq!(left.certificates.len(), 1);
    assert!(left.acme_accounts.is_empty());
    // Nonces and leases alone do not make a database hold anything worth keeping.
    let empty_file = Fresh::sqlite().await;
    let empty = empty_file.open().await;
    empty.nonce_insert("n1", 1).await.unwrap();
    empty.acquire_lease(SITE_LEASE, "instance-a", HOUR).await.unwrap().expect("a free lease");
    empty.import(&Snapshot::default()).await.unwrap();
}

async fn opening_says_which_schema_version_it_found_and_left(db: &Fresh) {
    let url = StorageUrl::parse(&db.url).unwrap();
    let (_, first) = Database::open_migrating(&url).await.unwrap();
    assert_eq!(first.before, 0, "a new database has no schema");
    assert!(first.after >= 3, "{first:?}");
    let (_, again) = Database::open_migrating(&url).await.unwrap();
    assert_eq!(again, SchemaVersions { before: first.after, after: first.after });
}
