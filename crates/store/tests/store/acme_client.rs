//! The ACME client's shared state: challenge answers that another instance reads
//! until they are removed or run out, and accounts of which the first stored is
//! kept; on PostgreSQL also with instances racing to store one.

use std::time::{Duration, Instant};

use store::{AcmeClientStore, AnswerKind, ChallengeAnswer, ClientAccount};
use tokio::task::JoinSet;

use crate::fresh::{Fresh, on_both_backends};

on_both_backends!(
    an_answer_is_read_by_another_instance_until_it_is_removed,
    an_answer_that_ran_out_is_ignored_and_swept,
    the_first_account_stored_is_kept,
);

const LONG: Duration = Duration::from_secs(600);

fn http(token: &str, value: &str) -> ChallengeAnswer {
    ChallengeAnswer {
        kind: AnswerKind::Http01,
        name: token.to_owned(),
        identifier: "a.example.test".to_owned(),
        value: value.to_owned(),
    }
}

fn account(url: &str) -> ClientAccount {
    ClientAccount {
        directory: "https://ca.test/acme/directory".to_owned(),
        name: "shared".to_owned(),
        account_url: url.to_owned(),
        key_pem: format!("ENCRYPTED KEY OF {url}"),
        created_at: 0,
    }
}

async fn an_answer_is_read_by_another_instance_until_it_is_removed(db: &Fresh) {
    let (orderer, other) = (db.open().await, db.open().await);
    let answer = http("tok-1", "tok-1.thumb");
    let tls = ChallengeAnswer {
        kind: AnswerKind::TlsAlpn01,
        name: "a.example.test".to_owned(),
        identifier: "a.example.test".to_owned(),
        value: "ab".repeat(32),
    };
    orderer.put_answer(&answer, LONG).await.unwrap();
    orderer.put_answer(&tls, LONG).await.unwrap();
    assert_eq!(other.answer(AnswerKind::Http01, "tok-1").await.unwrap(), Some(answer.clone()));
    assert_eq!(other.answer(AnswerKind::TlsAlpn01, "a.example.test").await.unwrap(), Some(tls.clone()));
    assert_eq!(other.answer(AnswerKind::Http01, "a.example.test").await.unwrap(), None, "kinds do not mix");
    assert_eq!(other.answer(AnswerKind::Http01, "tok-2").await.unwrap(), None);

    // A later order's answer under the same name replaces it, and the first order's
    // removal leaves the later one.
    let later = http("tok-1", "tok-1.other-thumb");
    orderer.put_answer(&later, LONG).await.unwrap();
    orderer.remove_answer(&answer).await.unwrap();
    assert_eq!(other.answer(AnswerKind::Http01, "tok-1").await.unwrap(), Some(later.clone()));
    orderer.remove_answer(&later).await.unwrap();
    orderer.remove_answer(&tls).await.unwrap();
    assert_eq!(other.answer(AnswerKind::Http01, "tok-1").await.unwrap(), None);
    assert_eq!(other.answer(AnswerKind::TlsAlpn01, "a.example.test").await.unwrap(), None);
}

async fn an_answer_that_ran_out_is_ignored_and_swept(db: &Fresh) {
    let store = db.open().await;
    store.put_answer(&http("short", "short.thumb"), Duration::from_millis(200)).await.unwrap();
    assert!(store.answer(AnswerKind::Http01, "short").await.unwrap().is_some());
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.answer(AnswerKind::Http01, "short").await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "the answer never ran out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The next write sweeps it: nothing is left to read even without the expiry check.
    store.put_answer(&http("next", "next.thumb"), LONG).await.unwrap();
    let rows = count_answers(db).await;
    assert_eq!(rows, 1, "answers left after a write swept the expired one");
}

/// The rows of `acme_client_answers`, expired or not.
async fn count_answers(db: &Fresh) -> i64 {
    use sqlx::Connection;
    let sql = "SELECT count(*) FROM acme_client_answers";
    if db.url.starts_with("sqlite") {
        let mut connection = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut connection).await.unwrap()
    } else {
        let mut connection = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query_scalar(sql).fetch_one(&mut connection).await.unwrap()
    }
}

async fn the_first_account_stored_is_kept(db: &Fresh) {
    let (a, b) = (db.open().await, db.open().await);
    let directory = "https://ca.test/acme/directory";
    assert_eq!(a.client_account(directory, "shared").await.unwrap(), None);
    let kept = a.keep_client_account(&account("https://ca.test/acme/account/1")).await.unwrap();
    assert_eq!(kept.account_url, "https://ca.test/acme/account/1");
    assert!(kept.created_at > 1_600_000_000_000, "{kept:?}");
    let lost = b.keep_client_account(&account("https://ca.test/acme/account/2")).await.unwrap();
    assert_eq!(lost, kept, "the second account stored gets the first back");
    assert_eq!(b.client_account(directory, "shared").await.unwrap(), Some(kept.clone()));
    assert_eq!(b.client_account(directory, "other").await.unwrap(), None, "another table is another account");
    assert_eq!(b.client_account("https://other.test/directory", "shared").await.unwrap(), None);
}

/// Eight instances store an account for one table at once: all get the same one back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_storing_an_account_at_once_on_postgres_all_keep_one() {
    let db = Fresh::postgres().await;
    let mut racers = JoinSet::new();
    for n in 0..8 {
        let store = db.open().await;
        racers.spawn(async move {
            store.keep_client_account(&account(&format!("https://ca.test/acme/account/{n}"))).await.unwrap()
        });
    }
    let kept: Vec<ClientAccount> = racers.join_all().await;
    assert!(kept.iter().all(|k| *k == kept[0]), "instances kept different accounts: {kept:?}");
}
