//! The revocation change log: a reader with a cursor gets every change after it,
//! in order, on both backends; on PostgreSQL none is missed when two instances
//! revoke at once, and a listener hears each change when it commits.

use std::collections::BTreeSet;
use std::time::Duration;

use store::{
    Database, ReleaseOutcome, Revocation, RevocationChange, RevocationNotice, RevocationNotices, RevokeOutcome,
    RevokedSerials, Store,
};
use tokio::task::JoinSet;

use crate::certificates::cert;
use crate::fresh::{Fresh, on_both_backends};

on_both_backends!(changes_are_read_after_a_cursor, a_cursor_from_another_database_reads_as_behind);

const HOLD: Revocation = Revocation { revoked_at: 5, reason: 6 };
const KEY_COMPROMISE: Revocation = Revocation { revoked_at: 5, reason: 1 };

fn change(serial: &str, revoked: bool) -> RevocationChange {
    RevocationChange { serial: serial.into(), revoked }
}

async fn changes_are_read_after_a_cursor(db: &Fresh) {
    let store = db.open().await;
    let other_issuer = store::NewCertificate { serial: "C1".into(), issuer: "CD".into(), ..cert("C1", 100) };
    store.record_issued(&[cert("01", 100), cert("02", 100), cert("03", 100), other_issuer]).await.unwrap();
    let RevokedSerials { serials, cursor: start } = store.revoked_serials("AB").await.unwrap();
    assert!(serials.is_empty(), "{serials:?}");

    store.revoke("01", HOLD).await.unwrap();
    store.revoke("02", KEY_COMPROMISE).await.unwrap();
    store.revoke("C1", KEY_COMPROMISE).await.unwrap();
    let first = store.revocation_changes("AB", start).await.unwrap();
    assert_eq!(first.changes, [change("01", true), change("02", true)], "another issuer's change is not listed");
    assert!(first.cursor > start);
    let none = store.revocation_changes("AB", first.cursor).await.unwrap();
    assert!(none.changes.is_empty() && none.cursor == first.cursor, "{none:?}");

    // What changes nothing logs nothing.
    assert!(matches!(store.revoke("02", HOLD).await.unwrap(), RevokeOutcome::AlreadyRevoked(_)));
    assert!(matches!(store.release_hold("02").await.unwrap(), ReleaseOutcome::NotOnHold(_)));
    assert_eq!(store.release_hold("01").await.unwrap(), ReleaseOutcome::Released);
    let released = store.revocation_changes("AB", first.cursor).await.unwrap();
    assert_eq!(released.changes, [change("01", false)]);

    let now = store.revoked_serials("AB").await.unwrap();
    assert_eq!(now, RevokedSerials { serials: vec!["02".into()], cursor: released.cursor });

    // The log is durable, and read from any cursor.
    drop(store);
    let reopened = db.open().await;
    let all = reopened.revocation_changes("AB", start).await.unwrap();
    assert_eq!(all.changes, [change("01", true), change("02", true), change("01", false)]);
    assert_eq!(all.cursor, released.cursor);
}

async fn a_cursor_from_another_database_reads_as_behind(db: &Fresh) {
    let store = db.open().await;
    store.record_issued(&[cert("01", 100)]).await.unwrap();
    store.revoke("01", HOLD).await.unwrap();
    let read = store.revocation_changes("AB", 1000).await.unwrap();
    assert!(read.changes.is_empty());
    assert!(read.cursor < 1000, "a cursor past the log comes back lower, so the reader reloads: {read:?}");
}

#[tokio::test]
async fn sqlite_has_no_notices_to_push() {
    let store = Fresh::sqlite().await.open().await;
    assert!(store.revocation_notices().await.unwrap().is_none());
}

/// 50 revocations by two instances at once, read meanwhile by a third with its
/// cursor: the batches it read hold each revocation once, and all of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocations_by_two_instances_at_once_are_all_read_through_a_cursor() {
    let db = Fresh::postgres().await;
    let (a, b, reader) = (db.open().await, db.open().await, db.open().await);
    let serials: BTreeSet<String> = (0..50).map(|i| format!("{i:02X}")).collect();
    a.record_issued(&serials.iter().map(|serial| cert(serial, 100)).collect::<Vec<_>>()).await.unwrap();
    let start = reader.revoked_serials("AB").await.unwrap().cursor;

    let mut revokers = JoinSet::new();
    for (i, serial) in serials.iter().enumerate() {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let serial = serial.clone();
        revokers.spawn(async move { store.revoke(&serial, KEY_COMPROMISE).await.unwrap() });
    }
    let mut read = Vec::new();
    let mut cursor = start;
    let mut batches = 0;
    loop {
        let finished = revokers.is_empty();
        let batch = reader.revocation_changes("AB", cursor).await.unwrap();
        assert!(batch.cursor >= cursor, "the cursor went back: {} after {cursor}", batch.cursor);
        batches += usize::from(!batch.changes.is_empty());
        read.extend(batch.changes);
        cursor = batch.cursor;
        if finished {
            break;
        }
        while let Some(outcome) = revokers.try_join_next() {
            assert_eq!(outcome.unwrap(), RevokeOutcome::Revoked);
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(read.len(), 50, "changes read more or less than once ({batches} batches): {read:?}");
    assert!(read.iter().all(|c| c.revoked));
    let union: BTreeSet<String> = read.into_iter().map(|c| c.serial).collect();
    assert_eq!(union, serials, "the union of the batches is the revoked set");
    let now = reader.revoked_serials("AB").await.unwrap();
    assert_eq!(now.serials.into_iter().collect::<BTreeSet<_>>(), serials);
    assert_eq!(now.cursor, cursor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_hears_each_revocation_change_when_it_commits() {
    let (_db, _a, b, mut notices) = listening().await;
    b.revoke("01", HOLD).await.unwrap();
    assert_eq!(heard(&mut notices).await, RevocationNotice::Changed { issuer: "AB".into() });
    b.release_hold("01").await.unwrap();
    assert_eq!(heard(&mut notices).await, RevocationNotice::Changed { issuer: "AB".into() });
}

async fn heard(notices: &mut RevocationNotices) -> RevocationNotice {
    tokio::time::timeout(Duration::from_secs(20), notices.next()).await.expect("a notice within 20 s").unwrap()
}

/// What the gateway does when the listener's connection is cut (a PostgreSQL
/// restart, a proxy timeout): a `Missed` notice (read after the cursor) or an
/// error (listen anew), and then it hears changes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_whose_connection_is_cut_says_so_and_hears_again_once_listening_anew() {
    let (db, a, b, mut notices) = listening().await;
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
    let cut: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND query LIKE 'LISTEN %gatehouse_revocations%'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(cut, 1, "the listener's connection was not found");
    let after_cut = tokio::time::timeout(Duration::from_secs(20), notices.next()).await.expect("told within 20 s");
    match after_cut {
        Ok(RevocationNotice::Missed) => {}
        Err(_) => notices = a.revocation_notices().await.unwrap().expect("listening anew"),
        Ok(other) => panic!("a cut connection gave {other:?}"),
    }
    b.revoke("01", HOLD).await.unwrap();
    assert_eq!(heard(&mut notices).await, RevocationNotice::Changed { issuer: "AB".into() });
}

/// A new PostgreSQL database with certificate 01, two instances on it, and the first one's notices.
async fn listening() -> (Fresh, Database, Database, RevocationNotices) {
    let db = Fresh::postgres().await;
    let (a, b) = (db.open().await, db.open().await);
    a.record_issued(&[cert("01", 100)]).await.unwrap();
    let notices = a.revocation_notices().await.unwrap().expect("PostgreSQL pushes revocation changes");
    (db, a, b, notices)
}
