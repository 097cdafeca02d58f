//! The internal CA's revoked set at 10 thousand, 1 million and 10 million
//! serials: lookup (hit and miss, the hex a handshake looks up), applying a
//! batch of changes, building from the store's serials, and memory; each
//! against a `HashSet<String>` of uppercase hex (what the gateway held before)
//! and a `HashSet<u128>` (the obvious compact alternative).
//!
//! Memory is measured first, each structure in a child process of this bench
//! (so one's freed memory does not hide the next one's): the bytes it asked the
//! allocator for (a counting global allocator, on only in the children), the
//! peak while building, and the resident-set growth (`/proc/self/statm`), which
//! includes the allocator's per-block overhead.
//!
//! `cargo bench -p gateway --bench revoked_set`
//!
//! With `REVOKED_SET_STORE=URL` (and `REVOKED_SET_ISSUER=KEY_ID`) it measures only the
//! gateway's first load from that database instead: the time it takes and the peak
//! resident set of the process (`VmHWM`), which holds nothing else of size.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashSet;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode};
use gateway::trust::{OVERLAY_LIMIT, RevokedSet, RevokedSetBuilder};

/// Counts live and peak heap bytes while `COUNTING` is on.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; the
// counters are only arithmetic on the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        // SAFETY: the caller's layout, as given.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            let live = LIVE.fetch_add(new_size, Ordering::Relaxed) + new_size;
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        // SAFETY: as `GlobalAlloc::realloc` requires of its caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const TEN_MILLION: usize = 10_000_000;
/// Lookups cycle through this many serials: far more than fit in a cache.
const QUERIES: usize = 1 << 20;

/// splitmix64: the same serials on every run, without a dependency.
struct Serials(u64);

impl Serials {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A serial as `pki::Serial::random` makes them (16 bytes, first byte
    /// 0x10..=0x7F), in the hex the store keeps.
    fn next_hex(&mut self) -> String {
        let mut n = u128::from(self.next_u64()) << 64 | u128::from(self.next_u64());
        let first = 0x10 + (n >> 120) % 0x70;
        n = n & (u128::MAX >> 8) | first << 120;
        format!("{n:032X}")
    }

    /// `count` distinct serials, sorted.
    fn sorted(&mut self, count: usize) -> Vec<String> {
        let mut serials: Vec<String> = (0..count).map(|_| self.next_hex()).collect();
        serials.sort_unstable();
        serials.dedup();
        serials
    }
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|pages| pages.parse::<usize>().ok()).unwrap_or(0) * 4096
}

/// In a child: builds one structure from 10 million serials and prints what it cost.
fn measure_memory(structure: &str) {
    let serials = Serials(1).sorted(TEN_MILLION);
    let count = serials.len();
    let rss_before = rss_bytes();
    COUNTING.store(true, Ordering::Relaxed);
    let (live, peak, rss) = match structure {
        "RevokedSet" => {
            let set = RevokedSet::from_hex(&serials);
            let counted = (LIVE.load(Ordering::Relaxed), PEAK.load(Ordering::Relaxed), rss_bytes());
            assert_eq!(set.len(), count);
            counted
        }
        "HashSet<u128>" => {
            let set: HashSet<u128> = serials.iter().filter_map(|s| u128::from_str_radix(s, 16).ok()).collect();
            let counted = (LIVE.load(Ordering::Relaxed), PEAK.load(Ordering::Relaxed), rss_bytes());
            assert_eq!(set.len(), count);
            counted
        }
        "HashSet<String>" => {
            let set: HashSet<String> = serials.iter().cloned().collect();
            let counted = (LIVE.load(Ordering::Relaxed), PEAK.load(Ordering::Relaxed), rss_bytes());
            assert_eq!(set.len(), count);
            counted
        }
        "load" => {
            // The gateway's first load: the store counts the serials, then hands them
            // over one at a time, each freed once read into the set (the Vec here
            // stands for the database).
            let mut builder = RevokedSetBuilder::default();
            builder.reserve(serials.len());
            for serial in &serials {
                builder.push_hex(serial);
            }
            let set = builder.build();
            let counted = (LIVE.load(Ordering::Relaxed), PEAK.load(Ordering::Relaxed), rss_bytes());
            assert_eq!(set.len(), count);
            counted
        }
        other => panic!("no structure {other}"),
    };
    COUNTING.store(false, Ordering::Relaxed);
    let per = |bytes: usize| bytes as f64 / count as f64;
    println!(
        "memory {structure:>16} at {count} serials: {:6.1} B/serial held, {:6.1} B/serial peak while building, \
         {:6.1} B/serial resident growth",
        per(live),
        per(peak),
        per(rss.saturating_sub(rss_before)),
    );
}

/// A line of `/proc/self/status` (`VmHWM`, `VmRSS`), in MB.
fn status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    kb / 1000.0
}

/// The gateway's first load of `issuer`'s revoked set from the database at `url`,
/// as `InternalCa::refresh_revocations` does it, and the peak resident set.
fn measure_store_load(url: &str, issuer: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let database = store::Database::open(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
        let opened = status_mb("VmHWM");
        let started = std::time::Instant::now();
        let mut builder = RevokedSetBuilder::default();
        let cursor = store::Store::revoked_serials(&database, issuer, &mut builder).await.expect("read");
        let set = builder.build();
        let took = started.elapsed();
        println!(
            "first load from {url}: {} serials (cursor {cursor}) in {:.2} s; peak resident {:.0} MB \
             (VmHWM; {opened:.0} MB before the load), resident after {:.0} MB, set {:.0} MB",
            set.len(),
            took.as_secs_f64(),
            status_mb("VmHWM"),
            status_mb("VmRSS"),
            set.heap_bytes() as f64 / 1e6,
        );
    });
}

fn memory_report() {
    let Ok(me) = std::env::current_exe() else { return };
    for structure in ["RevokedSet", "HashSet<u128>", "HashSet<String>", "load"] {
        let status = std::process::Command::new(&me).env("REVOKED_SET_MEMORY", structure).status();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("memory of {structure}: the child failed: {status:?}");
        }
    }
}

fn lookups(c: &mut Criterion, size: usize) {
    let mut serials = Serials(size as u64);
    let members = serials.sorted(size);
    let misses: Vec<String> = (0..QUERIES).map(|_| serials.next_hex()).collect();
    let hits: Vec<String> =
        (0..QUERIES).map(|_| members[(serials.next_u64() % members.len() as u64) as usize].clone()).collect();
    let compact = RevokedSet::from_hex(&members);
    let by_u128: HashSet<u128> = members.iter().filter_map(|s| u128::from_str_radix(s, 16).ok()).collect();
    let by_hex: HashSet<String> = members.into_iter().collect();

    let mut group = c.benchmark_group(format!("lookup/{size}"));
    group.sample_size(20).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    for (outcome, queries) in [("hit", &hits), ("miss", &misses)] {
        let expect = outcome == "hit";
        group.bench_function(BenchmarkId::new("RevokedSet", outcome), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % QUERIES;
                assert_eq!(compact.contains_hex(black_box(&queries[i])), expect);
            })
        });
        group.bench_function(BenchmarkId::new("HashSet<u128>", outcome), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % QUERIES;
                let key = u128::from_str_radix(black_box(&queries[i]), 16).unwrap_or_default();
                assert_eq!(by_u128.contains(&key), expect);
            })
        });
        group.bench_function(BenchmarkId::new("HashSet<String>", outcome), |b| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) % QUERIES;
                assert_eq!(by_hex.contains(black_box(queries[i].as_str())), expect);
            })
        });
    }
    group.finish();
}

fn changes_and_builds(c: &mut Criterion) {
    let mut serials = Serials(TEN_MILLION as u64);
    let members = serials.sorted(TEN_MILLION);
    let fresh: Vec<String> = (0..OVERLAY_LIMIT).map(|_| serials.next_hex()).collect();
    let compact = RevokedSet::from_hex(&members);
    // The same set with its overlay all but full, as just before a merge.
    let mut loaded = compact.clone();
    for serial in &fresh[..OVERLAY_LIMIT - 100] {
        loaded.apply_hex(serial, true);
    }
    let batches = [1, 100];

    // Flat: a sample of one iteration is enough for a routine of a second or more.
    let mut group = c.benchmark_group("apply/10M");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for batch in batches {
        let changes = &fresh[OVERLAY_LIMIT - batch..];
        for (name, set) in [("RevokedSet", &compact), ("RevokedSet, overlay nearly full", &loaded)] {
            group.bench_function(BenchmarkId::new(name, batch), |b| {
                b.iter(|| {
                    let mut next = set.clone();
                    for serial in changes {
                        next.apply_hex(serial, true);
                    }
                    next
                })
            });
        }
    }
    group.bench_function("RevokedSet merge, overlay nearly full", |b| b.iter(|| loaded.merged()));
    drop(loaded);
    let by_hex: HashSet<String> = members.iter().cloned().collect();
    for batch in batches {
        let changes = &fresh[OVERLAY_LIMIT - batch..];
        group.bench_function(BenchmarkId::new("HashSet<String>", batch), |b| {
            b.iter(|| {
                let mut next = by_hex.clone();
                for serial in changes {
                    next.insert(serial.clone());
                }
                next
            })
        });
    }
    group.finish();
    drop(by_hex);

    let mut group = c.benchmark_group("build/10M");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("RevokedSet", |b| {
        b.iter_batched(
            || members.clone(),
            |from_store| {
                let mut builder = RevokedSetBuilder::with_capacity(from_store.len());
                for serial in from_store {
                    builder.push_hex(&serial);
                }
                builder.build()
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("HashSet<String>", |b| {
        b.iter_batched(
            || members.clone(),
            |from_store| from_store.into_iter().collect::<HashSet<String>>(),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn main() {
    if let Ok(url) = std::env::var("REVOKED_SET_STORE") {
        measure_store_load(&url, &std::env::var("REVOKED_SET_ISSUER").unwrap_or_else(|_| "BE0C".into()));
        return;
    }
    if let Ok(structure) = std::env::var("REVOKED_SET_MEMORY") {
        measure_memory(&structure);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    memory_report();
    for size in [10_000, 1_000_000, TEN_MILLION] {
        lookups(&mut c, size);
    }
    changes_and_builds(&mut c);
    c.final_summary();
}
