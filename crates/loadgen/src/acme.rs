//! `acme`: full ACME orders (RFC 8555) against an ACME server, with the
//! `instant-acme` client. Each client task makes one account (timed apart),
//! then orders in a loop: new order → authorization → http-01 challenge
//! answered by the in-process responder → poll until ready → finalize →
//! (poll while processing) → download. Reports per-order latency, orders/s,
//! the median of each phase and, with `--pid`, the server's CPU per order.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use instant_acme::Account;
use serde::Serialize;
use tokio::net::{TcpListener, UdpSocket};

use crate::acme_order::{error_kind, new_account, one_order, tls_config};
use crate::http01::{self, Tokens};
use crate::{BoxError, dns, proc};

/// The steps of one order, in the order they happen; each is timed from the
/// client side (wall clock, µs).
#[derive(Clone, Copy)]
pub enum Phase {
    /// newNonce (instant-acme asks for one per order) + newOrder
    NewOrder,
    /// POST-as-GET of the authorization
    Authorization,
    /// POST {} to the http-01 challenge
    Challenge,
    /// polling the order until it is ready (the server validates meanwhile)
    Validation,
    /// POST of the CSR to finalize
    Finalize,
    /// polling the order while it is processing (servers that issue asynchronously)
    Issuance,
    /// POST-as-GET of the certificate chain
    Download,
}

pub const PHASES: [(Phase, &str); 7] = [
    (Phase::NewOrder, "new_order"),
    (Phase::Authorization, "authorization"),
    (Phase::Challenge, "challenge"),
    (Phase::Validation, "validation"),
    (Phase::Finalize, "finalize"),
    (Phase::Issuance, "issuance"),
    (Phase::Download, "download"),
];

pub struct AcmeParams {
    pub directory: String,
    pub ca: PathBuf,
    pub orders: u64,
    pub concurrency: usize,
    pub duration: Option<Duration>,
    pub http_01_port: u16,
    pub dns_listen: Option<SocketAddr>,
    pub poll: Duration,
    pub timeout: Duration,
    pub name_prefix: String,
    pub pids: Vec<u32>,
}

#[derive(Serialize)]
pub struct PhaseStat {
    pub p50_us: u64,
    pub p99_us: u64,
    pub mean_us: f64,
}

#[derive(Serialize)]
pub struct AcmeResult {
    pub directory: String,
    pub concurrency: usize,
    pub accounts: u64,
    pub account_p50_us: u64,
    pub account_max_us: u64,
    /// orders that ended with a certificate
    pub orders: u64,
    pub errors: u64,
    pub duration_s: f64,
    /// orders / s, wall clock, accounts excluded
    pub rate: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub phases: BTreeMap<&'static str, PhaseStat>,
    /// order refreshes (POST-as-GET) per order, while validating and issuing
    pub polls_per_order: f64,
    pub poll_interval_ms: f64,
    pub loadgen_cpu_s: f64,
    pub loadgen_cpu_us_per_order: Option<f64>,
    /// utime+stime of --pid processes during the orders (accounts excluded)
    pub server_cpu_s: Option<f64>,
    /// server CPU time / wall time (1.0 = one core busy)
    pub server_cpu_util: Option<f64>,
    pub orders_per_server_core: Option<f64>,
    pub server_cpu_us_per_order: Option<f64>,
    pub error_kinds: BTreeMap<String, u64>,
}

/// What one client task measured.
struct TaskStats {
    orders: Histogram<u64>,
    phases: Vec<Histogram<u64>>,
    polls: u64,
    errors: BTreeMap<String, u64>,
}

impl TaskStats {
    fn new() -> Self {
        TaskStats {
            orders: histogram(),
            phases: PHASES.iter().map(|_| histogram()).collect(),
            polls: 0,
            errors: BTreeMap::new(),
        }
    }

    fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min, 3 significant digits; values beyond are clamped.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds")
}

pub fn micros(d: Duration) -> u64 {
    d.as_micros().clamp(1, 600_000_000) as u64
}

struct Shared {
    p: AcmeParams,
    tokens: Tokens,
    next: AtomicU64,
}

pub async fn run(p: AcmeParams) -> Result<AcmeResult, BoxError> {
    let tls = tls_config(&p.ca)?;
    let tokens = Tokens::default();
    let listener = TcpListener::bind(("127.0.0.1", p.http_01_port))
        .await
        .map_err(|e| format!("http-01 responder on 127.0.0.1:{}: {e}", p.http_01_port))?;
    let responder = tokio::spawn(http01::serve(listener, tokens.clone()));
    let dns = match p.dns_listen {
        Some(addr) => {
            let socket = UdpSocket::bind(addr).await.map_err(|e| format!("DNS stub on {addr}: {e}"))?;
            Some(tokio::spawn(dns::serve(socket)))
        }
        None => None,
    };

    let shared = Arc::new(Shared { p, tokens, next: AtomicU64::new(0) });
    let concurrency = shared.p.concurrency.max(1);

    // Accounts first, all at once, so that their cost stays out of the order figures.
    let mut accounts = Vec::new();
    for _ in 0..concurrency {
        let (s, tls) = (shared.clone(), tls.clone());
        accounts.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = tokio::time::timeout(s.p.timeout, new_account(&s.p, &tls)).await;
            (r, t.elapsed())
        }));
    }
    let mut ready = Vec::new();
    let mut account_hist = histogram();
    let mut account_errors = BTreeMap::new();
    for a in accounts {
        match a.await? {
            (Ok(Ok(account)), took) => {
                account_hist.saturating_record(micros(took));
                ready.push(account);
            }
            (Ok(Err(e)), _) => *account_errors.entry(format!("account: {}", error_kind(&e))).or_default() += 1,
            (Err(_), _) => *account_errors.entry("account: timeout".to_owned()).or_default() += 1,
        }
    }
    if ready.is_empty() {
        return Err(format!("no account could be created: {account_errors:?}").into());
    }

    let cpu0 = proc::self_cpu();
    let server0 = if shared.p.pids.is_empty() { None } else { Some(proc::cpu_seconds(&shared.p.pids)?) };
    let start = Instant::now();
    let mut tasks = Vec::new();
    for account in ready {
        let s = shared.clone();
        tasks.push(tokio::spawn(async move { client_task(s, account, start).await }));
    }
    let mut all = TaskStats::new();
    all.errors = account_errors;
    for t in tasks {
        let st = t.await?;
        all.orders.add(&st.orders)?;
        for (a, b) in all.phases.iter_mut().zip(&st.phases) {
            a.add(b)?;
        }
        all.polls += st.polls;
        for (k, v) in st.errors {
            *all.errors.entry(k).or_default() += v;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let loadgen_cpu = (proc::self_cpu() - cpu0).as_secs_f64();
    let server_cpu = match server0 {
        Some(c0) => Some(proc::cpu_seconds(&shared.p.pids)? - c0),
        None => None,
    };
    responder.abort();
    if let Some(d) = dns {
        d.abort();
    }

    let ok = all.orders.len();
    let per_order = |cpu: f64| (ok > 0).then(|| cpu * 1e6 / ok as f64);
    let server_util = server_cpu.map(|c| c / wall);
    let rate = ok as f64 / wall;
    Ok(AcmeResult {
        directory: shared.p.directory.clone(),
        concurrency,
        accounts: account_hist.len(),
        account_p50_us: account_hist.value_at_quantile(0.5),
        account_max_us: account_hist.max(),
        orders: ok,
        errors: all.errors.values().sum(),
        duration_s: wall,
        rate,
        p50_us: all.orders.value_at_quantile(0.5),
        p90_us: all.orders.value_at_quantile(0.9),
        p99_us: all.orders.value_at_quantile(0.99),
        max_us: all.orders.max(),
        phases: PHASES
            .iter()
            .zip(&all.phases)
            .map(|((_, name), h)| {
                (
                    *name,
                    PhaseStat {
                        p50_us: h.value_at_quantile(0.5),
                        p99_us: h.value_at_quantile(0.99),
                        mean_us: h.mean(),
                    },
                )
            })
            .collect(),
        polls_per_order: if ok > 0 { all.polls as f64 / ok as f64 } else { 0.0 },
        poll_interval_ms: shared.p.poll.as_secs_f64() * 1e3,
        loadgen_cpu_s: loadgen_cpu,
        loadgen_cpu_us_per_order: per_order(loadgen_cpu),
        server_cpu_s: server_cpu,
        server_cpu_util: server_util,
        orders_per_server_core: server_util.filter(|u| *u > 0.0).map(|u| rate / u),
        server_cpu_us_per_order: server_cpu.and_then(per_order),
        error_kinds: all.errors,
    })
}

/// Orders in a loop until `--orders` are taken (by all tasks) or `--duration` is over.
async fn client_task(s: Arc<Shared>, account: Account, start: Instant) -> TaskStats {
    let mut st = TaskStats::new();
    loop {
        let n = s.next.fetch_add(1, Ordering::Relaxed);
        if n >= s.p.orders || s.p.duration.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        let name = format!("{}{n}.localhost", s.p.name_prefix);
        let mut phases = [0u64; PHASES.len()];
        let mut polls = 0;
        let mut pending = Vec::new();
        let t = Instant::now();
        let r = tokio::time::timeout(
            s.p.timeout,
            one_order(&account, &name, &s.tokens, s.p.poll, &mut phases, &mut polls, &mut pending),
        )
        .await;
        let took = t.elapsed();
        for token in &pending {
            s.tokens.remove(token);
        }
        st.polls += polls;
        match r {
            Ok(Ok(())) => {
                st.orders.saturating_record(micros(took));
                for (h, v) in st.phases.iter_mut().zip(phases) {
                    h.saturating_record(v.max(1));
                }
            }
            Ok(Err(e)) => st.error(e),
            Err(_) => st.error("order timed out".to_owned()),
        }
    }
    st
}

pub fn print_text(r: &AcmeResult) {
    let ms = |us: u64| us as f64 / 1e3;
    println!("directory        {}", r.directory);
    println!(
        "accounts         {} (median {:.1} ms, max {:.1} ms)",
        r.accounts,
        ms(r.account_p50_us),
        ms(r.account_max_us)
    );
    println!(
        "orders           {} ok, {} errors in {:.2} s, concurrency {}",
        r.orders, r.errors, r.duration_s, r.concurrency
    );
    println!("orders/s         {:.1}", r.rate);
    println!(
        "latency ms       p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        ms(r.p50_us),
        ms(r.p90_us),
        ms(r.p99_us),
        ms(r.max_us)
    );
    println!("phases ms        (median / p99 / mean)");
    for (_, name) in PHASES {
        if let Some(p) = r.phases.get(name) {
            println!("  {name:<14} {:>8.2} {:>8.2} {:>8.2}", ms(p.p50_us), ms(p.p99_us), p.mean_us / 1e3);
        }
    }
    println!("polls/order      {:.2} (every {:.1} ms)", r.polls_per_order, r.poll_interval_ms);
    if let Some(us) = r.loadgen_cpu_us_per_order {
        println!("loadgen CPU      {us:.0} µs/order");
    }
    if let (Some(util), Some(us), Some(core)) = (r.server_cpu_util, r.server_cpu_us_per_order, r.orders_per_server_core)
    {
        println!(
            "server CPU       {us:.0} µs/order, {:.0} % of a core, {core:.0} orders/s per server core",
            util * 100.0
        );
    }
    for (k, v) in &r.error_kinds {
        println!("error            {v} × {k}");
    }
}
