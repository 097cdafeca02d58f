//! http-01 and tls-alpn-01 answers shared through the database (PostgreSQL
//! storage), so that behind a load balancer the CA's validation may reach any
//! instance, not only the one that orders.
//!
//! The ordering instance writes each answer into the store before it tells the
//! CA to validate ([`SharedAnswers::publish`]) and removes it when the
//! authorization is done ([`Published::remove`], or when the guard drops); a
//! row left by an instance that died runs out by itself. An instance that has
//! no answer of its own for a request looks in the store, but only for the
//! challenge path and for ClientHellos that offer `acme-tls/1` alone, and only
//! for a token or name that could be one (the path is the attacker's to
//! choose): ordinary traffic never waits on the database, and a database that
//! is down costs only the lookup's bounded time.

use std::time::Duration;

use store::{AcmeClientStore, AnswerKind, ChallengeAnswer, Database};
use tokio::sync::Semaphore;

use super::AcmeError;

/// How long a published answer is kept when its order never removes it (the
/// longest an order may take).
const ANSWER_TTL: Duration = super::ORDER_TIMEOUT;
/// The longest a validation request waits for the database.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
/// Lookups in flight at once; requests beyond them get no answer rather than queue
/// on the database (a CA makes a handful of validation requests per challenge).
const CONCURRENT_LOOKUPS: usize = 16;
/// RFC 8555 §8.1: a token has at least 128 bits of entropy, base64url without padding.
const TOKEN_LENGTH: std::ops::RangeInclusive<usize> = 22..=128;

/// The database that answers are shared through.
pub(crate) struct SharedAnswers {
    store: Database,
    lookups: Semaphore,
}

impl SharedAnswers {
    pub(crate) fn new(store: Database) -> SharedAnswers {
        SharedAnswers { store, lookups: Semaphore::new(CONCURRENT_LOOKUPS) }
    }

    /// Writes `answer` for every instance to serve; taken away when the guard is
    /// removed or dropped.
    pub(crate) async fn publish(&self, answer: ChallengeAnswer) -> Result<Published, AcmeError> {
        self.store.put_answer(&answer, ANSWER_TTL).await.map_err(|e| {
            AcmeError::Local(format!(
                "cannot share the {} answer for {} through the database ({e}); the CA may ask another \
                 instance, so it is not told to validate yet",
                answer.kind.as_str(),
                answer.identifier
            ))
        })?;
        Ok(Published { store: self.store.clone(), answer: Some(answer) })
    }

    /// The key authorization stored for http-01 `token` by another instance.
    pub(crate) async fn http_01(&self, token: &str) -> Option<String> {
        if !is_token(token) {
            return None;
        }
        Some(self.lookup(AnswerKind::Http01, token).await?.value)
    }

    /// The identifier and key authorization digest stored for tls-alpn-01 by the SNI
    /// name `name` (lowercase) by another instance.
    pub(crate) async fn tls_alpn_01(&self, name: &str) -> Option<(String, Vec<u8>)> {
        if !is_host_name(name) {
            return None;
        }
        let answer = self.lookup(AnswerKind::TlsAlpn01, name).await?;
        let digest = hex::decode(&answer.value).ok().filter(|digest| digest.len() == 32)?;
        Some((answer.identifier, digest))
    }

    async fn lookup(&self, kind: AnswerKind, name: &str) -> Option<ChallengeAnswer> {
        let Ok(_permit) = self.lookups.try_acquire() else {
            tracing::debug!(challenge = kind.as_str(), "too many challenge lookups in flight; this one gets no answer");
            return None;
        };
        match tokio::time::timeout(LOOKUP_TIMEOUT, self.store.answer(kind, name)).await {
            Ok(Ok(Some(answer))) => {
                tracing::info!(
                    challenge = kind.as_str(), identifier = %answer.identifier,
                    "answering a validation with the answer another instance shared"
                );
                Some(answer)
            }
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                tracing::debug!(challenge = kind.as_str(), error = %e, "cannot look up a shared challenge answer");
                None
            }
            Err(_) => {
                tracing::debug!(
                    challenge = kind.as_str(),
                    "the database did not give a shared challenge answer in time"
                );
                None
            }
        }
    }
}

/// An answer in the database; [`remove`](Published::remove) takes it away, and so
/// does dropping it (from a task of its own).
pub(crate) struct Published {
    store: Database,
    answer: Option<ChallengeAnswer>,
}

impl Published {
    /// Removes the answer from the database now.
    pub(crate) async fn remove(mut self) {
        if let Some(answer) = self.answer.take() {
            remove(&self.store, &answer).await;
        }
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        let Some(answer) = self.answer.take() else { return };
        // An order abandoned mid-way (its lease lost, its time up) drops its answers here.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let store = self.store.clone();
            runtime.spawn(async move { remove(&store, &answer).await });
        }
    }
}

async fn remove(store: &Database, answer: &ChallengeAnswer) {
    if let Err(e) = store.remove_answer(answer).await {
        tracing::warn!(
            challenge = answer.kind.as_str(), identifier = %answer.identifier, error = %e,
            "cannot remove a shared challenge answer; it runs out by itself"
        );
    }
}

/// Whether `token` could be an ACME token: base64url, of a length a CA gives.
fn is_token(token: &str) -> bool {
    TOKEN_LENGTH.contains(&token.len()) && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `name` could be a lowercase DNS name (or an IP address's reverse-DNS name).
fn is_host_name(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acme_client::{Challenges, HTTP_01_PREFIX};

    const TOKEN: &str = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA";

    /// Two instances' challenges on one database file: what one publishes, the other
    /// answers, until it is removed.
    #[tokio::test]
    async fn an_answer_published_by_one_instance_is_served_by_another_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gatehouse.db");
        let orderer = Challenges::shared(SharedAnswers::new(Database::open_sqlite(&path).await.unwrap()));
        let other = Challenges::shared(SharedAnswers::new(Database::open_sqlite(&path).await.unwrap()));
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let path = format!("{HTTP_01_PREFIX}{TOKEN}");

        let http = orderer.share(AnswerKind::Http01, TOKEN, "a.test", format!("{TOKEN}.thumb")).await.unwrap();
        let digest = [7u8; 32];
        let tls = orderer.share(AnswerKind::TlsAlpn01, "a.test", "a.test", hex::encode(digest)).await.unwrap();
        assert_eq!(other.http_01_answer(&path).await, Some(format!("{TOKEN}.thumb")));
        assert_eq!(other.http_01_answer("/.well-known/acme-challenge/short").await, None);
        assert_eq!(other.http_01_answer(&format!("/other{TOKEN}")).await, None);
        let key = other.tls_alpn_01_answer("a.test", &provider).await.expect("a challenge certificate");
        let (_, cert) = x509_parser::parse_x509_certificate(&key.cert[0]).unwrap();
        let extension = cert.extensions().iter().find(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.1.31").unwrap();
        assert!(extension.critical);
        assert_eq!(&extension.value[2..], digest, "the acmeIdentifier holds the shared digest");
        assert!(other.tls_alpn_01_answer("b.test", &provider).await.is_none());

        http.unwrap().remove().await;
        drop(tls);
        assert_eq!(other.http_01_answer(&path).await, None);
        // The dropped guard removes its answer from a task of its own.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while other.tls_alpn_01_answer("a.test", &provider).await.is_some() {
            assert!(std::time::Instant::now() < deadline, "the dropped answer was never removed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[test]
    fn only_what_could_be_a_token_or_a_name_is_looked_up() {
        assert!(is_token("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"));
        for not in ["", "short", "../../etc/passwd-and-more-chars", "tok en-with-a-space-inside-it", &"a".repeat(129)] {
            assert!(!is_token(not), "{not:?}");
        }
        assert!(is_host_name("a.example.test"));
        assert!(is_host_name("1.0.0.127.in-addr.arpa"));
        for not in ["", "A.example.test", "a..test", "a.test.", "*.a.test", &"a".repeat(64)] {
            assert!(!is_host_name(not), "{not:?}");
        }
    }
}
