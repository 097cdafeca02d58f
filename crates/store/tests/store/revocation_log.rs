//! The revocation change log: a reader with a cursor gets every change after it,
//! in order, on both backends; on PostgreSQL none is missed when two instances
//! revoke at once, and a listener hears each change when it commits.

use std::collections::BTreeSet;
use std::time::Duration;

use store::{
    Database, ReleaseOutcome, Revocation, RevocationChange, RevocationNotice, RevocationNotices, RevokeOutcome,
    RevokedSerialsSink, Store, StoreError,
};
use tokio::task::JoinSet;

use crate::certificates::cert;
use crate::fresh::{Fresh, on_both_backends};

on_both_backends!(
    changes_are_read_after_a_cursor,
    a_cursor_from_another_database_reads_as_behind,
    a_revocation_committed_while_the_set_streams_is_the_first_change_after_its_cursor,
);

const HOLD: Revocation = Revocation { revoked_at: 5, reason: 6 };
const KEY_COMPROMISE: Revocation = Revocation { revoked_at: 5, reason: 1 };

fn change(serial: &str, revoked: bool) -> RevocationChange {
    RevocationChange { serial: serial.into(), revoked }
}

/// The revoked serials of `issuer` as text, and the cursor read with them.
async fn revoked_serials(store: &Database, issuer: &str) -> (Vec<String>, u64) {
    let mut serials = Vec::new();
    let cursor = store.revoked_serials(issuer, &mut serials).await.unwrap();
    (serials, cursor)
}

async fn changes_are_read_after_a_cursor(db: &Fresh) {
    let store = db.open().await;
    let other_issuer = store::NewCertificate { serial: "C1".into(), issuer: "CD".into(), ..cert("C1", 100) };
    store.record_issued(&[cert("01", 100), cert("02", 100), cert("03", 100), other_issuer]).await.unwrap();
    let (serials, start) = revoked_serials(&store, "AB").await;
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

    assert_eq!(revoked_serials(&store, "AB").await, (vec!["02".to_owned()], released.cursor));

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

/// Collects the serials a store streams, and after the first one waits (blocking the
/// reading task, as a slow reader would) until `revoke` has revoked another serial
/// and committed.
struct RevokeMidStream {
    serials: Vec<String>,
    expected: Option<usize>,
    revoke: Option<std::sync::mpsc::SyncSender<std::sync::mpsc::SyncSender<()>>>,
}

impl RevokedSerialsSink for RevokeMidStream {
    fn expect(&mut self, count: usize) {
        self.expected = Some(count);
    }
    fn serial(&mut self, serial: &str) {
        self.serials.push(serial.to_owned());
        if let Some(revoke) = self.revoke.take() {
            let (done, revoked) = std::sync::mpsc::sync_channel(1);
            revoke.send(done).expect("the revoking thread is there");
            revoked.recv().expect("the revoking thread answers");
        }
    }
}

/// The set read in one stream is of one moment: a revocation committed by another
/// connection after the first serial was handed over (the last certificate, which a
/// reader outside the snapshot would still come to) is not in the set, and is the
/// first change after the cursor read with it. The load plus that change is the set now.
async fn a_revocation_committed_while_the_set_streams_is_the_first_change_after_its_cursor(db: &Fresh) {
    let store = db.open().await;
    let serials: Vec<String> = (1..=200).map(|i| format!("{i:04X}")).collect();
    store.record_issued(&serials.iter().map(|serial| cert(serial, 100)).collect::<Vec<_>>()).await.unwrap();
    for serial in serials.iter().step_by(2) {
        store.revoke(serial, KEY_COMPROMISE).await.unwrap();
    }
    let late = "00C8"; // the last one, not revoked yet
    let (revoke, revoke_asked) = std::sync::mpsc::sync_channel(1);
    let url = db.url.clone();
    let revoker = std::thread::spawn(move || {
        let done: std::sync::mpsc::SyncSender<()> = revoke_asked.recv().expect("asked to revoke");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let other = Database::open(&url).await.unwrap();
            assert_eq!(other.revoke(late, KEY_COMPROMISE).await.unwrap(), RevokeOutcome::Revoked);
        });
        done.send(()).unwrap();
    });
    let mut sink = RevokeMidStream { serials: Vec::new(), expected: None, revoke: Some(revoke) };
    let cursor = store.revoked_serials("AB", &mut sink).await.unwrap();
    revoker.join().expect("the revoking thread");

    let before: Vec<String> = serials.iter().step_by(2).cloned().collect();
    assert_eq!(sink.expected, Some(100), "the count is of the same moment");
    sink.serials.sort();
    assert_eq!(sink.serials, before, "the set streamed is as of its start");
    let after = store.revocation_changes("AB", cursor).await.unwrap();
    assert_eq!(after.changes, [change(late, true)], "the change the set missed is the one after its cursor");
    let (mut now, now_cursor) = revoked_serials(&store, "AB").await;
    now.sort();
    assert_eq!(now_cursor, after.cursor);
    assert_eq!(now, [before, vec![late.to_owned()]].concat());
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
    let (_, start) = revoked_serials(&reader, "AB").await;

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
    let (now, now_cursor) = revoked_serials(&reader, "AB").await;
    assert_eq!(now.into_iter().collect::<BTreeSet<_>>(), serials);
    assert_eq!(now_cursor, cursor);
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

/// What a gateway reads while it serves, from a PostgreSQL that was stopped: each
/// read fails (after the pool's acquire timeout of a few seconds, not sqlx's 30 s)
/// with why: the database's URL, without its password, and the refused connection.
/// Once PostgreSQL is back, the same store reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reads_of_a_stopped_postgres_say_it_cannot_be_reached() {
    let mut cluster = test_cluster::Private::start();
    let url = cluster.database().await;
    let store = Database::open(&url).await.unwrap();
    store.record_issued(&[cert("01", 100)]).await.unwrap();
    let (_, cursor) = revoked_serials(&store, "AB").await;

    cluster.stop();
    let unreachable = format!("cannot connect to the database postgres://gatehouse@127.0.0.1:{}/", cluster.port());
    let errors = [
        store.revocation_changes("AB", cursor).await.unwrap_err(),
        store.revoked_serials("AB", &mut Vec::new()).await.unwrap_err(),
        store.revocation_notices().await.unwrap_err(),
    ];
    for err in errors {
        let message = err.to_string();
        assert!(matches!(err, StoreError::Connect { .. }), "{message}");
        assert!(message.starts_with(&unreachable), "{message}");
        assert!(message.contains("Connection refused"), "{message}");
        assert!(message.contains("check that PostgreSQL is running there"), "{message}");
        assert!(!message.contains(":pw"), "the password is in the message: {message}");
    }

    cluster.start_again();
    store.revoke("01", KEY_COMPROMISE).await.unwrap();
    let back = store.revocation_changes("AB", cursor).await.unwrap();
    assert_eq!(back.changes, [change("01", true)]);
}

/// A new PostgreSQL database with certificate 01, two instances on it, and the first one's notices.
async fn listening() -> (Fresh, Database, Database, RevocationNotices) {
    let db = Fresh::postgres().await;
    let (a, b) = (db.open().await, db.open().await);
    a.record_issued(&[cert("01", 100)]).await.unwrap();
    let notices = a.revocation_notices().await.unwrap().expect("PostgreSQL pushes revocation changes");
    (db, a, b, notices)
}
