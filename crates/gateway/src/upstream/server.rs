//! One origin server of a pool and everything the pool knows about it: its
//! address, whether it is available (active health state and passive
//! ejection), how many requests are in flight to it, and its idle keep-alive
//! connections.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tracing::{info, warn};

use super::config::ServerAddr;
use super::connect::Connection;

/// Idle connections kept per server; more are closed when they come back.
const MAX_IDLE: usize = 256;
/// An idle connection older than this is closed rather than reused: origins
/// close idle keep-alive connections (nginx after 75 s), and a request sent as
/// they do is lost.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Passive ejection settings shared by the servers of a pool.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ejection {
    /// Consecutive connect failures that eject; 0 never ejects.
    pub(super) max_fails: u32,
    pub(super) fail_timeout: Duration,
}

/// One origin server.
pub(super) struct Server {
    pub(super) addr: ServerAddr,
    /// Verified TLS name when the server is `https://`.
    pub(super) tls_name: Option<ServerName<'static>>,
    /// Host header of health check requests.
    pub(super) check_host: String,
    upstream: Arc<str>,
    ejection: Ejection,
    /// Active health state; true when no checks are configured.
    up: AtomicBool,
    connect_fails: AtomicU32,
    /// Milliseconds after `epoch` until which the server is skipped; 0 when not ejected.
    ejected_until: AtomicU64,
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Oldest first.
    idle: Mutex<VecDeque<(Connection, Instant)>>,
}

impl Server {
    pub(super) fn new(
        upstream: Arc<str>,
        addr: ServerAddr,
        tls_name: Option<ServerName<'static>>,
        check_host: String,
        ejection: Ejection,
    ) -> Server {
        Server {
            addr,
            tls_name,
            check_host,
            upstream,
            ejection,
            up: AtomicBool::new(true),
            connect_fails: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle: Mutex::new(VecDeque::new()),
        }
    }

    /// `host:port`, as dialled and reported.
    pub(super) fn authority(&self) -> &str {
        &self.addr.authority
    }

    fn now_ms(&self) -> u64 {
        // Never 0, which means "not ejected".
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    fn ejected(&self) -> bool {
        self.ejected_until.load(Ordering::Acquire) > self.now_ms()
    }

    /// Up by active checks and not passively ejected: may be picked.
    pub(super) fn available(&self) -> bool {
        self.up.load(Ordering::Acquire) && !self.ejected()
    }

    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Counts a request as in flight until the guard is dropped.
    pub(super) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    /// Records a failed connect; ejects the server after `max_fails` in a row.
    ///
    /// The count is not reset when the ejection ends, so one more failure
    /// ejects a server that is still down at once: the first request after
    /// `fail_timeout` is the probe.
    pub(super) fn connect_failed(&self, reason: &str) {
        let Ejection { max_fails, fail_timeout } = self.ejection;
        if max_fails == 0 {
            return;
        }
        let fails = self.connect_fails.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        if fails < max_fails {
            return;
        }
        let now = self.now_ms();
        let until = now.saturating_add(u64::try_from(fail_timeout.as_millis()).unwrap_or(u64::MAX));
        let before = self.ejected_until.swap(until, Ordering::AcqRel);
        if before <= now {
            warn!(
                upstream = %self.upstream,
                server = %self.addr.authority,
                reason,
                fails,
                skipped_ms = fail_timeout.as_millis() as u64,
                "upstream server ejected after consecutive connect failures"
            );
        }
    }

    /// Records a successful connect: clears the failure count and any ejection.
    pub(super) fn connect_succeeded(&self) {
        if self.connect_fails.swap(0, Ordering::AcqRel) >= self.ejection.max_fails.max(1)
            && self.ejected_until.swap(0, Ordering::AcqRel) != 0
        {
            info!(
                upstream = %self.upstream,
                server = %self.addr.authority,
                reason = "a connection succeeded",
                "upstream server no longer ejected"
            );
        }
    }

    /// Applies a health state change decided by the active checks.
    pub(super) fn set_up(&self, up: bool, reason: &str) {
        if self.up.swap(up, Ordering::AcqRel) == up {
            return;
        }
        if up {
            info!(upstream = %self.upstream, server = %self.addr.authority, reason, "upstream server marked up by health check");
        } else {
            warn!(upstream = %self.upstream, server = %self.addr.authority, reason, "upstream server marked down by health check");
        }
    }

    /// The most recently used idle connection that is still open, if any,
    /// and how long it was idle.
    pub(super) fn take_idle(&self) -> Option<(Connection, Duration)> {
        let mut idle = lock(&self.idle);
        while let Some((conn, since)) = idle.pop_back() {
            let idle_for = since.elapsed();
            if !conn.is_closed() && idle_for < IDLE_TIMEOUT {
                return Some((conn, idle_for));
            }
        }
        None
    }

    #[cfg(test)]
    pub(super) fn idle_count(&self) -> usize {
        lock(&self.idle).len()
    }

    /// Keeps a connection that finished its exchange for the next request.
    /// Connections idle too long are closed from the old end; closed ones
    /// elsewhere are skipped when taken.
    pub(super) fn put_idle(&self, conn: Connection) {
        let now = Instant::now();
        let mut idle = lock(&self.idle);
        while idle.front().is_some_and(|(c, since)| c.is_closed() || now.duration_since(*since) >= IDLE_TIMEOUT) {
            idle.pop_front();
        }
        if idle.len() >= MAX_IDLE {
            idle.pop_front();
        }
        idle.push_back((conn, now));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The list stays consistent even if a holder panicked: every entry is whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One request in flight to a server, for least-connections balancing.
pub(super) struct InFlight(Arc<Server>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
