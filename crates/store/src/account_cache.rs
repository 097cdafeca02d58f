//! ACME accounts kept in memory for a database that one process serves (SQLite).
//!
//! The ACME server reads the signing account on every POST (about seven per order),
//! and on SQLite each read is a hand-off to sqlx's connection thread and back. Every
//! change of an account on such a database is made by this process, through the same
//! store ([`forget`](AccountCache::forget) is called on each), so the copy here cannot
//! go stale. A read that raced a change is not kept: each change bumps a generation,
//! and a read is kept only if no change happened since it began. On PostgreSQL, which
//! several instances change, there is no cache.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::acme::AcmeAccount;

/// Accounts kept at most; past it the cache starts over.
const CAPACITY: usize = 100_000;

/// Accounts by id, as last read.
#[derive(Debug, Default)]
pub(crate) struct AccountCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Bumped by every change, so that a read that began before it is not kept.
    generation: u64,
    accounts: HashMap<String, AcmeAccount>,
}

impl AccountCache {
    /// The account `id` as last read, if kept.
    pub(crate) fn get(&self, id: &str) -> Option<AcmeAccount> {
        self.lock().accounts.get(id).cloned()
    }

    /// Taken before a read of the database, handed to [`keep`](AccountCache::keep) after it.
    pub(crate) fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Keeps `account`, read from the database since `generation` was taken, unless an
    /// account changed meanwhile.
    pub(crate) fn keep(&self, generation: u64, account: &AcmeAccount) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.accounts.len() >= CAPACITY {
            inner.accounts.clear();
        }
        inner.accounts.insert(account.id.clone(), account.clone());
    }

    /// Forgets account `id`, which is being changed.
    pub(crate) fn forget(&self, id: &str) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.accounts.remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str, status: &str) -> AcmeAccount {
        AcmeAccount {
            id: id.into(),
            thumbprint: "t".into(),
            jwk: "{}".into(),
            contact: vec![],
            status: status.into(),
            eab_kid: None,
            created_at: 0,
        }
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_kept() {
        let cache = AccountCache::default();
        let before = cache.generation();
        cache.forget("a");
        cache.keep(before, &account("a", "valid"));
        assert!(cache.get("a").is_none(), "the read began before the change");
        let now = cache.generation();
        cache.keep(now, &account("a", "deactivated"));
        assert_eq!(cache.get("a").map(|a| a.status), Some("deactivated".into()));
        cache.forget("a");
        assert!(cache.get("a").is_none());
    }
}
