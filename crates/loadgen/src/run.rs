//! `run`: h1 / h2 keep-alive and full-handshake load for a fixed duration.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::time::{sleep, timeout};

use crate::client::{Sender, Stats, Target, one_shot};
use crate::{BoxError, proc};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// keep-alive HTTP/1.1, one request in flight per connection
    H1,
    /// keep-alive HTTP/2 (ALPN h2), --streams requests in flight per connection
    H2,
    /// a new TCP + full TLS 1.3 mTLS handshake for every request
    Handshake,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::H1 => "h1",
            Mode::H2 => "h2",
            Mode::Handshake => "handshake",
        }
    }
}

pub struct RunParams {
    pub mode: Mode,
    pub connections: usize,
    pub streams: usize,
    pub duration: Duration,
    pub pids: Vec<u32>,
    pub aux_pids: Vec<u32>,
}

#[derive(Serialize)]
pub struct RunResult {
    pub mode: &'static str,
    pub connections: usize,
    pub streams: usize,
    pub duration_s: f64,
    /// successful requests (2xx with body "ok\n"); in handshake mode one per handshake
    pub requests: u64,
    pub errors: u64,
    /// requests/s (handshakes/s in handshake mode), wall clock
    pub rate: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub loadgen_cpu_s: f64,
    pub loadgen_cpu_us_per_op: Option<f64>,
    /// utime+stime of --pid and --aux-pid processes during the measured window
    pub proxy_cpu_s: Option<f64>,
    /// proxy CPU time / wall time (1.0 = one core busy)
    pub proxy_cpu_util: Option<f64>,
    /// requests per proxy CPU second: rate / proxy_cpu_util
    pub rate_per_proxy_core: Option<f64>,
    pub proxy_cpu_us_per_op: Option<f64>,
    /// VmHWM of the --pid processes (summed), reset with clear_refs at the start
    pub proxy_hwm_kib: Option<u64>,
    /// VmHWM of the --aux-pid processes (e.g. nginx's master)
    pub aux_hwm_kib: Option<u64>,
    pub error_kinds: BTreeMap<String, u64>,
}

pub async fn run(t: Arc<Target>, p: RunParams) -> Result<RunResult, BoxError> {
    let all_pids: Vec<u32> = p.pids.iter().chain(&p.aux_pids).copied().collect();
    let mut setup = Stats::new();

    // Keep-alive modes: open every connection before the clock starts.
    let mut senders: Vec<Option<Sender>> = Vec::new();
    if p.mode != Mode::Handshake {
        let h2 = p.mode == Mode::H2;
        let mut opening = Vec::with_capacity(p.connections);
        for _ in 0..p.connections {
            let t = t.clone();
            opening.push(tokio::spawn(async move {
                match timeout(t.timeout, Sender::open(&t, h2)).await {
                    Ok(r) => r,
                    Err(_) => Err(BoxError::from("timeout opening a connection")),
                }
            }));
        }
        for h in opening {
            match h.await? {
                Ok(s) => {
                    if h2 {
                        for _ in 1..p.streams {
                            senders.push(s.clone_h2());
                        }
                    }
                    senders.push(Some(s));
                }
                Err(e) => {
                    setup.error(&e);
                    senders.push(None);
                    if h2 {
                        senders.extend((1..p.streams).map(|_| None));
                    }
                }
            }
        }
        if senders.iter().all(Option::is_none) {
            let first = setup.kinds.keys().next().cloned().unwrap_or_default();
            return Err(format!("could not open any connection: {first}").into());
        }
    }

    let cpu0 = if all_pids.is_empty() { None } else { Some(proc::cpu_seconds(&all_pids)?) };
    if !all_pids.is_empty() {
        proc::reset_hwm(&all_pids)?;
    }
    let self0 = proc::self_cpu();
    let start = Instant::now();
    let deadline = start + p.duration;

    let mut workers = Vec::new();
    match p.mode {
        Mode::Handshake => {
            for _ in 0..p.connections {
                let t = t.clone();
                workers.push(tokio::spawn(handshake_worker(t, deadline)));
            }
        }
        Mode::H1 | Mode::H2 => {
            let h2 = p.mode == Mode::H2;
            for s in senders {
                let t = t.clone();
                workers.push(tokio::spawn(keepalive_worker(t, s, h2, deadline)));
            }
        }
    }
    let mut stats = Stats::new();
    for w in workers {
        stats.merge(w.await?);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let self_cpu = (proc::self_cpu() - self0).as_secs_f64();
    let proxy_cpu = match cpu0 {
        Some(c0) => Some(proc::cpu_seconds(&all_pids)? - c0),
        None => None,
    };
    let hwm = if p.pids.is_empty() { None } else { Some(proc::sum_status_kib(&p.pids, "VmHWM")?) };
    let aux_hwm = if p.aux_pids.is_empty() { None } else { Some(proc::sum_status_kib(&p.aux_pids, "VmHWM")?) };
    stats.errors += setup.errors;
    for (k, v) in setup.kinds {
        *stats.kinds.entry(k).or_insert(0) += v;
    }

    let n = stats.ok;
    let per_op = |secs: f64| {
        if n > 0 { Some(secs * 1e6 / n as f64) } else { None }
    };
    Ok(RunResult {
        mode: p.mode.name(),
        connections: p.connections,
        streams: if p.mode == Mode::H2 { p.streams } else { 1 },
        duration_s: elapsed,
        requests: n,
        errors: stats.errors,
        rate: n as f64 / elapsed,
        p50_us: stats.hist.value_at_quantile(0.50),
        p90_us: stats.hist.value_at_quantile(0.90),
        p99_us: stats.hist.value_at_quantile(0.99),
        max_us: stats.hist.max(),
        loadgen_cpu_s: self_cpu,
        loadgen_cpu_us_per_op: per_op(self_cpu),
        proxy_cpu_s: proxy_cpu,
        proxy_cpu_util: proxy_cpu.map(|c| c / elapsed),
        rate_per_proxy_core: proxy_cpu.and_then(|c| if c > 0.0 { Some(n as f64 / c) } else { None }),
        proxy_cpu_us_per_op: proxy_cpu.and_then(per_op),
        proxy_hwm_kib: hwm,
        aux_hwm_kib: aux_hwm,
        error_kinds: stats.kinds,
    })
}

async fn handshake_worker(t: Arc<Target>, deadline: Instant) -> Stats {
    let mut st = Stats::new();
    while Instant::now() < deadline {
        let start = Instant::now();
        match timeout(t.timeout, one_shot(&t)).await {
            Ok(Ok(())) => st.ok(start.elapsed()),
            Ok(Err(e)) => {
                st.error(&e);
                // Do not spin when the server refuses connections.
                sleep(Duration::from_millis(1)).await;
            }
            Err(_) => st.error(&BoxError::from("timeout")),
        }
    }
    st
}

async fn keepalive_worker(t: Arc<Target>, mut sender: Option<Sender>, h2: bool, deadline: Instant) -> Stats {
    let mut st = Stats::new();
    while Instant::now() < deadline {
        let tx = match &mut sender {
            Some(tx) => tx,
            None => match timeout(t.timeout, Sender::open(&t, h2)).await {
                Ok(Ok(tx)) => sender.insert(tx),
                Ok(Err(e)) => {
                    st.error(&e);
                    sleep(Duration::from_millis(1)).await;
                    continue;
                }
                Err(_) => {
                    st.error(&BoxError::from("timeout opening a connection"));
                    continue;
                }
            },
        };
        let start = Instant::now();
        match timeout(t.timeout, tx.request(&t)).await {
            Ok(Ok(())) => st.ok(start.elapsed()),
            Ok(Err(e)) => {
                st.error(&e);
                if tx.is_closed() {
                    sender = None;
                }
            }
            Err(_) => {
                st.error(&BoxError::from("timeout"));
                sender = None;
            }
        }
    }
    st
}

pub fn print_text(r: &RunResult) {
    let unit = if r.mode == "handshake" { "handshakes/s" } else { "req/s" };
    println!(
        "mode {}  connections {}{}  duration {:.2} s",
        r.mode,
        r.connections,
        if r.streams > 1 { format!(" x {} streams", r.streams) } else { String::new() },
        r.duration_s
    );
    println!("requests {}  errors {}", r.requests, r.errors);
    println!("rate {:.1} {unit}", r.rate);
    println!("latency p50 {} us  p90 {} us  p99 {} us  max {} us", r.p50_us, r.p90_us, r.p99_us, r.max_us);
    println!(
        "loadgen cpu {:.2} s ({} us/op)",
        r.loadgen_cpu_s,
        r.loadgen_cpu_us_per_op.map_or("-".into(), |v| format!("{v:.1}"))
    );
    if let (Some(c), Some(u)) = (r.proxy_cpu_s, r.proxy_cpu_util) {
        println!(
            "proxy cpu {:.2} s ({:.1}% of one core): {} {unit} per proxy core, {} us cpu/op",
            c,
            u * 100.0,
            r.rate_per_proxy_core.map_or("-".into(), |v| format!("{v:.0}")),
            r.proxy_cpu_us_per_op.map_or("-".into(), |v| format!("{v:.1}"))
        );
    }
    if let Some(h) = r.proxy_hwm_kib {
        let aux = r.aux_hwm_kib.map_or(String::new(), |a| format!(" (+{:.1} MiB aux)", a as f64 / 1024.0));
        println!("proxy peak RSS {:.1} MiB{aux}", h as f64 / 1024.0);
    }
    for (k, v) in &r.error_kinds {
        println!("error x{v}: {k}");
    }
}
