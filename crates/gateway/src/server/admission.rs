//! Who gets a connection: the downstream connection limit
//! (`limits.max_connections`, kept within the open-file limit and resized on
//! reload) and the per-client limit (`limits.max_connections_per_ip`). Both
//! are taken at accept and given back when the connection ends.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Descriptors kept aside for listeners, the files the config names, the CA
/// database and the runtime's own.
const RESERVED_DESCRIPTORS: u64 = 64;

/// Raises the open-file soft limit to the hard limit; done once, at start.
pub fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => tracing::debug!(open_files = soft, "open-file limit raised to the hard limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit (ulimit -n) to its hard limit"),
    }
}

/// How many downstream connections `open_files` descriptors hold: each
/// connection may hold an origin connection too, and some are kept aside.
fn connections_within(open_files: u64) -> usize {
    let room = open_files.saturating_sub(RESERVED_DESCRIPTORS) / 2;
    usize::try_from(room).unwrap_or(usize::MAX).clamp(1, Semaphore::MAX_PERMITS)
}

/// `configured`, lowered with a warning to what the open-file limit leaves
/// room for: past it accept fails (EMFILE) before the limit ever applies.
fn fit_to_open_files(configured: usize) -> usize {
    let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return configured.min(Semaphore::MAX_PERMITS);
    };
    let room = connections_within(soft);
    if configured <= room {
        return configured;
    }
    if configured == crate::config::Limits::default().max_connections {
        // The default is a ceiling, not a request: fitting it to the machine is no news.
        tracing::info!("limits.max_connections is {room}, what the open-file limit of {soft} leaves room for");
        return room;
    }
    tracing::warn!(
        "limits.max_connections = {configured} lowered to {room}: the open-file limit is {soft} and each \
         connection may hold an origin connection too ({RESERVED_DESCRIPTORS} are kept for listeners and files); \
         raise it (ulimit -n, or LimitNOFILE= in the systemd unit) to allow {configured}"
    );
    room
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The tables stay consistent between statements; a panic elsewhere leaves them usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The downstream connection limit: one semaphore permit per connection,
/// from accept to close, resized when a reload changes `limits.max_connections`.
#[derive(Debug)]
pub struct ConnectionSlots {
    semaphore: Arc<Semaphore>,
    sizing: Mutex<Sizing>,
}

#[derive(Debug)]
struct Sizing {
    /// `limits.max_connections` as configured.
    configured: usize,
    /// Connections allowed at once: `configured`, fitted to the open-file limit.
    size: usize,
    /// Permits to take out of circulation as connections close: the semaphore's
    /// count shrinks without cutting an open connection.
    owed: usize,
}

impl ConnectionSlots {
    /// `configured` slots, or as many as the open-file limit leaves room for.
    pub fn new(configured: usize) -> ConnectionSlots {
        let size = fit_to_open_files(configured);
        let sizing = Sizing { configured, size, owed: 0 };
        ConnectionSlots { semaphore: Arc::new(Semaphore::new(size)), sizing: Mutex::new(sizing) }
    }

    /// How many connections may be open at once now.
    pub fn size(&self) -> usize {
        lock(&self.sizing).size
    }

    /// Waits for a free slot, held until the permit drops. While the limit is
    /// being lowered, freed permits are retired here first.
    pub(crate) async fn acquire(&self) -> OwnedSemaphorePermit {
        loop {
            let Ok(permit) = self.semaphore.clone().acquire_owned().await else {
                // Never closed; were it, there would be no slot ever again.
                return std::future::pending().await;
            };
            let mut sizing = lock(&self.sizing);
            if sizing.owed == 0 {
                return permit;
            }
            sizing.owed -= 1;
            permit.forget();
        }
    }

    /// `permit` if it is still within the size, else `None` (it is retired):
    /// a permit taken before a reload lowered the limit, to check once it is used.
    pub(crate) fn confirm(&self, permit: OwnedSemaphorePermit) -> Option<OwnedSemaphorePermit> {
        let mut sizing = lock(&self.sizing);
        if sizing.owed == 0 {
            return Some(permit);
        }
        sizing.owed -= 1;
        permit.forget();
        None
    }

    /// Resizes to `configured` (fitted to the open-file limit) and returns the
    /// new size. Growing adds slots at once; shrinking retires the free slots at
    /// once and the others as connections close, so no open connection is cut
    /// and none is accepted until fewer than the new size are open.
    pub fn resize(&self, configured: usize) -> usize {
        let mut sizing = lock(&self.sizing);
        if configured == sizing.configured {
            // The open-file limit does not change while running: neither does the size, nor its warning.
            return sizing.size;
        }
        let wanted = fit_to_open_files(configured);
        sizing.configured = configured;
        if wanted > sizing.size {
            let more = wanted - sizing.size;
            let repaid = more.min(sizing.owed);
            sizing.owed -= repaid;
            self.semaphore.add_permits(more - repaid);
        } else {
            let fewer = sizing.size - wanted;
            sizing.owed += fewer - self.semaphore.forget_permits(fewer);
        }
        sizing.size = wanted;
        wanted
    }
}

/// How long a client over its limit goes without another log line.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Clients whose last refusal line is remembered, past which old ones are forgotten.
const REFUSALS_REMEMBERED: usize = 1024;

/// A client as the per-client limit counts it: an IPv4 address, or the /64 of
/// an IPv6 address (one subscriber's network: a host's privacy addresses all
/// lie in it, so counting by address would let one host open 2^64 times the limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Client(IpAddr);

impl Client {
    fn of(ip: IpAddr) -> Client {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Client(IpAddr::V4(v4)),
            IpAddr::V6(v6) => Client(IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & (u128::MAX << 64)))),
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[derive(Debug, Default)]
struct Table {
    open: HashMap<Client, usize>,
    refusal_logged: HashMap<Client, Instant>,
}

/// Open connections per client, for `limits.max_connections_per_ip`. Every
/// connection is counted, with or without a limit, so one set by a reload
/// holds at once.
#[derive(Debug, Default)]
pub struct ClientConnections {
    table: Mutex<Table>,
}

/// What [`ClientConnections::admit`] decided.
pub(crate) enum Admission {
    /// Counted; the slot is given back when it drops.
    Admitted(ClientSlot),
    /// The client has `open` connections, the limit; `log` is true at most once per client per [`REFUSAL_LOG_EVERY`].
    Refused { client: Client, open: usize, log: bool },
}

impl ClientConnections {
    /// Counts a new connection from `ip` unless its client already has
    /// `limit` open (0: no limit).
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr, limit: usize, now: Instant) -> Admission {
        let client = Client::of(ip);
        let mut table = lock(&self.table);
        let open = table.open.entry(client).or_default();
        if limit == 0 || *open < limit {
            *open += 1;
            return Admission::Admitted(ClientSlot { connections: self.clone(), client });
        }
        let open = *open;
        if table.refusal_logged.len() >= REFUSALS_REMEMBERED {
            table.refusal_logged.retain(|_, at| now.duration_since(*at) < REFUSAL_LOG_EVERY);
        }
        let log = match table.refusal_logged.get(&client) {
            Some(at) if now.duration_since(*at) < REFUSAL_LOG_EVERY => false,
            _ => {
                table.refusal_logged.insert(client, now);
                true
            }
        };
        Admission::Refused { client, open, log }
    }

    /// Open connections of the client `ip` belongs to.
    pub fn open(&self, ip: IpAddr) -> usize {
        lock(&self.table).open.get(&Client::of(ip)).copied().unwrap_or(0)
    }
}

/// One connection counted against its client, given back on drop.
pub(crate) struct ClientSlot {
    connections: Arc<ClientConnections>,
    client: Client,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut table = lock(&self.connections.table);
        if let Some(open) = table.open.get_mut(&self.client) {
            *open -= 1;
            if *open == 0 {
                table.open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn open_files_leave_room_for_origin_connections_and_reserved_descriptors() {
        assert_eq!(connections_within(256), 96);
        assert_eq!(connections_within(1024), 480);
        assert_eq!(connections_within(64), 1);
        assert_eq!(connections_within(u64::MAX), Semaphore::MAX_PERMITS);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(Client::of(ip("2001:db8:1:2:aaaa::1")), Client::of(ip("2001:db8:1:2:bbbb::2")));
        assert_ne!(Client::of(ip("2001:db8:1:2::1")), Client::of(ip("2001:db8:1:3::1")));
        assert_eq!(Client::of(ip("::ffff:192.0.2.7")), Client::of(ip("192.0.2.7")));
        assert_eq!(Client::of(ip("2001:db8:1:2:aaaa::1")).to_string(), "2001:db8:1:2::/64");
        assert_eq!(Client::of(ip("192.0.2.7")).to_string(), "192.0.2.7");
    }

    #[test]
    fn a_client_at_its_limit_is_refused_until_one_of_its_connections_ends() {
        let clients = Arc::new(ClientConnections::default());
        let now = Instant::now();
        let a = ip("192.0.2.1");
        let first = clients.admit(a, 2, now);
        let second = clients.admit(a, 2, now);
        assert!(matches!(first, Admission::Admitted(_)) && matches!(second, Admission::Admitted(_)));
        assert!(matches!(clients.admit(a, 2, now), Admission::Refused { open: 2, log: true, .. }));
        // Logged once per client per interval; other clients are not affected.
        assert!(matches!(clients.admit(a, 2, now + Duration::from_secs(1)), Admission::Refused { log: false, .. }));
        assert!(matches!(clients.admit(ip("192.0.2.2"), 2, now), Admission::Admitted(_)));
        assert!(matches!(clients.admit(a, 2, now + REFUSAL_LOG_EVERY), Admission::Refused { log: true, .. }));
        drop(first);
        assert_eq!(clients.open(a), 1);
        assert!(matches!(clients.admit(a, 2, now), Admission::Admitted(_)));
        // 0: no limit, still counted.
        let more: Vec<_> = (0..5).map(|_| clients.admit(a, 0, now)).collect();
        assert!(more.iter().all(|m| matches!(m, Admission::Admitted(_))));
        assert_eq!(clients.open(a), 6);
        drop((second, more));
        assert_eq!(clients.open(a), 0);
        assert!(lock(&clients.table).open.is_empty(), "a client with no connection leaves no entry");
    }

    #[tokio::test]
    async fn slots_grow_at_once_and_shrink_as_connections_close() {
        let slots = ConnectionSlots::new(2);
        let one = slots.acquire().await;
        let two = slots.acquire().await;
        assert_eq!(slots.semaphore.available_permits(), 0);
        assert_eq!(slots.resize(3), 3);
        let three = slots.acquire().await;
        // Three open, one wanted (then two, then one again): nothing is cut, and none is
        // accepted until fewer than the size are open.
        assert_eq!(slots.resize(1), 1);
        assert_eq!(slots.resize(2), 2);
        assert_eq!(slots.resize(1), 1);
        drop((one, two));
        let waiting = tokio::time::timeout(Duration::from_millis(100), slots.acquire()).await;
        assert!(waiting.is_err(), "a slot was handed out with one open connection and a size of 1");
        // A permit taken before the limit was lowered is retired when it is used.
        assert_eq!(slots.resize(2), 2);
        let taken_before = slots.acquire().await;
        assert_eq!(slots.resize(1), 1);
        assert!(slots.confirm(taken_before).is_none());
        drop(three);
        let next = tokio::time::timeout(Duration::from_secs(5), slots.acquire()).await;
        assert!(next.is_ok(), "the slot of the last connection was not handed out again");
        assert_eq!(slots.semaphore.available_permits(), 0);
        assert_eq!(lock(&slots.sizing).owed, 0);
    }
}
