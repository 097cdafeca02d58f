//! ACME nonces held in memory, for a database that one process serves (SQLite).
//!
//! A nonce lives minutes and is needed by no one but the server that issued it and
//! the client that spends it; a process that restarts forgets them, and a client
//! sending a forgotten one gets `badNonce` with a fresh nonce and retries (RFC 8555
//! §6.5), as it would after any expiry. Keeping them in the SQLite file cost two
//! statements per ACME request, each a hand-off to sqlx's connection thread and a
//! turn on the database's one write lock. On PostgreSQL, where several instances
//! must accept each other's nonces, they stay in the database.
//!
//! The book is bounded: past [`CAPACITY`] live nonces the oldest are forgotten first
//! (a client that held one retries once).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

/// Live nonces kept at most (about 100 bytes each).
pub(crate) const CAPACITY: usize = 1 << 20;

/// Issued nonces not yet spent, with their expiry.
#[derive(Debug, Default)]
pub(crate) struct NonceBook {
    inner: Mutex<Book>,
}

#[derive(Debug, Default)]
struct Book {
    live: HashMap<String, i64>,
    /// Issue order (and so expiry order: every nonce lives as long); spent ones are skipped.
    issued: VecDeque<(String, i64)>,
}

impl NonceBook {
    /// Keeps `nonce` until `expires` (unix seconds).
    pub(crate) fn insert(&self, nonce: &str, expires: i64) {
        let mut book = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        while book.live.len() >= CAPACITY {
            let Some((oldest, _)) = book.issued.pop_front() else { break };
            book.live.remove(&oldest);
        }
        book.live.insert(nonce.to_owned(), expires);
        book.issued.push_back((nonce.to_owned(), expires));
    }

    /// Spends `nonce`: `true` once, if it was issued and has not expired at `now`.
    pub(crate) fn take(&self, nonce: &str, now: i64) -> bool {
        let mut book = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        // An expired nonce stays until the sweep, as it does in the database.
        if book.live.get(nonce).is_some_and(|expires| *expires >= now) {
            book.live.remove(nonce);
            return true;
        }
        false
    }

    /// Forgets the nonces expired at `now`; returns how many were still unspent.
    pub(crate) fn sweep(&self, now: i64) -> u64 {
        let mut book = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut swept = 0;
        while book.issued.front().is_some_and(|(_, expires)| *expires < now) {
            if let Some((nonce, _)) = book.issued.pop_front()
                && book.live.remove(&nonce).is_some()
            {
                swept += 1;
            }
        }
        // Spent nonces leave their place in `issued` behind; drop those too when they pile up.
        if book.issued.len() > 2 * book.live.len() + 1024 {
            let Book { live, issued } = &mut *book;
            issued.retain(|(nonce, _)| live.contains_key(nonce));
        }
        swept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_spent_once_and_not_after_it_expires() {
        let book = NonceBook::default();
        book.insert("a", 100);
        book.insert("b", 100);
        assert!(book.take("a", 50));
        assert!(!book.take("a", 50), "a nonce is accepted once");
        assert!(!book.take("never", 50));
        assert!(!book.take("b", 101), "expired");
    }

    #[test]
    fn sweeping_forgets_the_expired_and_keeps_the_rest() {
        let book = NonceBook::default();
        book.insert("old", 10);
        book.insert("spent", 10);
        book.insert("new", 100);
        assert!(book.take("spent", 5));
        assert_eq!(book.sweep(50), 1, "only the unspent expired nonce counts");
        assert!(book.take("new", 50));
    }

    #[test]
    fn past_capacity_the_oldest_is_forgotten_first() {
        let book = NonceBook::default();
        for n in 0..CAPACITY + 2 {
            book.insert(&n.to_string(), 1000);
        }
        assert!(!book.take("0", 1) && !book.take("1", 1), "the two oldest made room");
        assert!(book.take("2", 1) && book.take(&(CAPACITY + 1).to_string(), 1));
    }
}
