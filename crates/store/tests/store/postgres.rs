//! What only a shared database shows: two gatehouse instances (two pools) on one
//! PostgreSQL database at once never hand out the same thing twice.

use std::collections::BTreeSet;

use store::{AcmeStore, Database, Revocation, RevokeOutcome, Store, StoreError};
use tokio::task::JoinSet;

use crate::acme::{account, order};
use crate::certificates::cert;
use crate::fresh::Fresh;

/// Two instances on one new database.
async fn two_instances() -> (Database, Database) {
    let db = Fresh::postgres().await;
    (db.open().await, db.open().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_migrating_at_once_both_open() {
    let db = Fresh::postgres().await;
    let (a, b) = tokio::join!(Database::open(&db.url), Database::open(&db.url));
    let (a, b) = (a.unwrap(), b.unwrap());
    a.record_issued(&[cert("01", 100)]).await.unwrap();
    assert!(b.certificate("01").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crl_numbers_taken_at_once_by_two_instances_never_repeat() {
    let (a, b) = two_instances().await;
    let mut takers = JoinSet::new();
    for i in 0..40 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        takers.spawn(async move { store.next_crl_number("AB").await.unwrap() });
    }
    let numbers: Vec<u64> = takers.join_all().await;
    let distinct: BTreeSet<u64> = numbers.iter().copied().collect();
    assert_eq!(distinct, (1..=40).collect(), "CRL numbers repeated or skipped: {numbers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nonce_is_taken_once_by_two_instances_at_once() {
    let (a, b) = two_instances().await;
    for i in 0..30 {
        a.nonce_insert(&format!("n{i}"), i64::MAX).await.unwrap();
    }
    let mut takers = JoinSet::new();
    for i in 0..30 {
        for store in [a.clone(), b.clone()] {
            takers.spawn(async move { (i, store.nonce_take(&format!("n{i}"), 0).await.unwrap()) });
        }
    }
    let mut taken = [0; 30];
    for (i, took) in takers.join_all().await {
        taken[i] += usize::from(took);
    }
    assert_eq!(taken, [1; 30], "how often each nonce was taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_serial_recorded_by_two_instances_at_once_is_recorded_once() {
    let (a, b) = two_instances().await;
    let mut recorders = JoinSet::new();
    for i in 0..20 {
        // Each batch also holds a serial of its own, which must go if the batch fails.
        for (store, own) in [(a.clone(), "A"), (b.clone(), "B")] {
            recorders.spawn(async move {
                let batch = [cert(&format!("{own}{i:02X}"), 100), cert(&format!("{i:02X}"), 100)];
                (i, own, store.record_issued(&batch).await)
            });
        }
    }
    let mut winners = [0; 20];
    for (i, own, outcome) in recorders.join_all().await {
        match outcome {
            Ok(()) => winners[i] += 1,
            Err(StoreError::SerialExists(serial)) => {
                assert_eq!(serial, format!("{i:02X}"));
                let own = format!("{own}{i:02X}");
                assert!(a.certificate(&own).await.unwrap().is_none(), "{own} kept from a failed batch");
            }
            Err(e) => panic!("recording {i:02X}: {e}"),
        }
    }
    assert_eq!(winners, [1; 20], "how many instances recorded each serial");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_certificate_revoked_by_two_instances_at_once_keeps_one_revocation() {
    let (a, b) = two_instances().await;
    let serials: Vec<String> = (0..20).map(|i| format!("{i:02X}")).collect();
    a.record_issued(&serials.iter().map(|serial| cert(serial, 100)).collect::<Vec<_>>()).await.unwrap();
    let mut revokers = JoinSet::new();
    for serial in &serials {
        for (store, reason) in [(a.clone(), 1), (b.clone(), 4)] {
            let serial = serial.clone();
            revokers.spawn(async move {
                let outcome = store.revoke(&serial, Revocation { revoked_at: 10, reason }).await.unwrap();
                (serial, outcome)
            });
        }
    }
    let outcomes = revokers.join_all().await;
    for serial in &serials {
        let kept = a.certificate(serial).await.unwrap().unwrap().revocation.unwrap();
        let mut of_serial: Vec<&RevokeOutcome> = outcomes.iter().filter(|(s, _)| s == serial).map(|(_, o)| o).collect();
        of_serial.sort_by_key(|o| **o != RevokeOutcome::Revoked);
        assert_eq!(of_serial, [&RevokeOutcome::Revoked, &RevokeOutcome::AlreadyRevoked(kept)], "{serial}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_moved_by_two_instances_at_once_moves_once() {
    let (a, b) = two_instances().await;
    a.account_insert(&account("a1", "t1")).await.unwrap();
    let (order, authorization) = order();
    a.order_insert(&order, &[authorization]).await.unwrap();
    let (x, y) = tokio::join!(
        a.order_transition("o1", "pending", "ready", None, None),
        b.order_transition("o1", "pending", "ready", None, None)
    );
    assert_eq!(usize::from(x.unwrap()) + usize::from(y.unwrap()), 1);
    let (x, y) = tokio::join!(
        a.challenge_transition("c1", "pending", "processing", None, None),
        b.challenge_transition("c1", "pending", "processing", None, None)
    );
    assert_eq!(usize::from(x.unwrap()) + usize::from(y.unwrap()), 1);
}

#[tokio::test]
async fn a_server_that_is_not_there_is_named_without_its_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://ca:secret@127.0.0.1:{port}/pki");
    let err = Database::open(&url).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::Connect { .. }), "{message}");
    assert!(message.contains(&format!("postgres://ca:***@127.0.0.1:{port}/pki")), "{message}");
    assert!(!message.contains("secret"), "{message}");
    assert!(message.contains("check that PostgreSQL is running"), "{message}");
}

#[tokio::test]
async fn a_wrong_password_is_refused_and_not_repeated() {
    let url = test_cluster::with_password(&Fresh::postgres().await.url, "not-the-password");
    let err = Database::open(&url).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::Connect { .. }), "{message}");
    assert!(message.contains("password authentication failed"), "{message}");
    assert!(!message.contains("not-the-password"), "{message}");
}
