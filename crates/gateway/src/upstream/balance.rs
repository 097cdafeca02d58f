//! Choosing the server for a request: round robin over the available
//! servers, or the available server with the fewest requests in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::config::Balance;
use super::server::Server;

/// The balancing state of one pool.
pub(super) struct Balancer {
    strategy: Balance,
    /// Round-robin position; least-conn starts its scan here so ties rotate.
    next: AtomicUsize,
}

impl Balancer {
    pub(super) fn new(strategy: Balance) -> Balancer {
        Balancer { strategy, next: AtomicUsize::new(0) }
    }

    /// Index of the server for the next request among the available ones,
    /// never `exclude` (the server a retried request failed on).
    pub(super) fn pick(&self, servers: &[Arc<Server>], exclude: Option<usize>) -> Option<usize> {
        let eligible = |i: &usize| Some(*i) != exclude && servers[*i].available();
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        match self.strategy {
            // Counting over the available servers only, so the share of a
            // server that is down goes evenly to the others.
            Balance::RoundRobin => {
                let count = (0..servers.len()).filter(eligible).count();
                if count == 0 {
                    return None;
                }
                let nth = turn % count;
                let mut candidates = (0..servers.len()).filter(eligible);
                // Availability may change between the two scans; fall back to the first.
                candidates.clone().nth(nth).or_else(|| candidates.next())
            }
            Balance::LeastConn => {
                let n = servers.len();
                (0..n).map(|k| turn.wrapping_add(k) % n).filter(eligible).min_by_key(|i| servers[*i].in_flight())
            }
        }
    }
}
