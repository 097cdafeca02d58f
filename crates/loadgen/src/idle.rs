//! `idle`: open N mTLS connections (full handshakes), one request on each,
//! hold them idle, and measure the proxy's RSS per idle connection.

use std::collections::BTreeMap;
use std::pin::pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{sleep, timeout};

use crate::client::{Body, Target, check, describe};
use crate::{BoxError, proc};

pub struct IdleParams {
    pub connections: usize,
    pub hold: Duration,
    pub concurrency: usize,
    pub settle: Duration,
    pub pids: Vec<u32>,
    pub aux_pids: Vec<u32>,
}

#[derive(Serialize)]
pub struct IdleResult {
    pub mode: &'static str,
    pub connections: usize,
    /// connections that completed the handshake and the request
    pub opened: u64,
    pub failed: u64,
    /// seconds to open them all
    pub open_s: f64,
    /// still open at the end of the hold (the ones the RSS figure is for)
    pub open_after_hold: i64,
    pub hold_s: f64,
    pub loadgen_cpu_us_per_handshake: Option<f64>,
    /// VmRSS of --pid and --aux-pid processes before opening
    pub rss_before_kib: Option<u64>,
    /// VmRSS with the connections open, at the end of the hold
    pub rss_idle_kib: Option<u64>,
    /// (rss_idle - rss_before) / connections held
    pub rss_per_conn_bytes: Option<f64>,
    pub error_kinds: BTreeMap<String, u64>,
}

struct Shared {
    opened: AtomicU64,
    failed: AtomicU64,
    open_now: AtomicI64,
    kinds: Mutex<BTreeMap<String, u64>>,
}

impl Shared {
    fn fail(&self, e: &BoxError) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut k = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        *k.entry(describe(e)).or_insert(0) += 1;
    }
}

pub async fn idle(t: Arc<Target>, p: IdleParams) -> Result<IdleResult, BoxError> {
    let all: Vec<u32> = p.pids.iter().chain(&p.aux_pids).copied().collect();
    let rss_before = if all.is_empty() { None } else { Some(proc::sum_status_kib(&all, "VmRSS")?) };

    let shared = Arc::new(Shared {
        opened: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        open_now: AtomicI64::new(0),
        kinds: Mutex::new(BTreeMap::new()),
    });
    let concurrency = p.concurrency.max(1);
    let sem = Arc::new(Semaphore::new(concurrency));
    let self0 = proc::self_cpu();
    let start = Instant::now();
    let mut handles = Vec::with_capacity(p.connections);
    for _ in 0..p.connections {
        let permit = sem.clone().acquire_owned().await?;
        handles.push(tokio::spawn(hold_one(t.clone(), permit, shared.clone())));
    }
    // Every permit back: each connection is open (or failed).
    let all_permits = sem.acquire_many(concurrency as u32).await?;
    drop(all_permits);
    let open_s = start.elapsed().as_secs_f64();
    let self_cpu = (proc::self_cpu() - self0).as_secs_f64();
    let opened = shared.opened.load(Ordering::Relaxed);
    eprintln!(
        "opened {opened}/{} connections in {open_s:.1} s; holding them idle for {:.0} s",
        p.connections,
        p.hold.as_secs_f64()
    );

    sleep(p.hold.max(p.settle)).await;
    let open_after_hold = shared.open_now.load(Ordering::Relaxed);
    let rss_idle = if all.is_empty() { None } else { Some(proc::sum_status_kib(&all, "VmRSS")?) };
    for h in &handles {
        h.abort();
    }
    for h in handles {
        let _ = h.await;
    }

    let per_conn = match (rss_before, rss_idle) {
        (Some(b), Some(i)) if open_after_hold > 0 => Some((i as f64 - b as f64) * 1024.0 / open_after_hold as f64),
        _ => None,
    };
    let kinds = std::mem::take(&mut *shared.kinds.lock().unwrap_or_else(|e| e.into_inner()));
    Ok(IdleResult {
        mode: "idle",
        connections: p.connections,
        opened,
        failed: shared.failed.load(Ordering::Relaxed),
        open_s,
        open_after_hold,
        hold_s: p.hold.as_secs_f64(),
        loadgen_cpu_us_per_handshake: if opened > 0 { Some(self_cpu * 1e6 / opened as f64) } else { None },
        rss_before_kib: rss_before,
        rss_idle_kib: rss_idle,
        rss_per_conn_bytes: per_conn,
        error_kinds: kinds,
    })
}

async fn hold_one(t: Arc<Target>, permit: OwnedSemaphorePermit, shared: Arc<Shared>) {
    let establish = async {
        let tls = t.connect_tls().await?;
        let (mut tx, conn) = http1::handshake::<_, Body>(TokioIo::new(tls)).await?;
        let mut conn = Box::pin(conn);
        let res: Result<(), BoxError> = {
            let mut fut = pin!(async {
                let resp = tx.send_request(t.request_h1(false)).await?;
                check(resp).await
            });
            tokio::select! {
                r = &mut fut => r,
                c = &mut conn => Err(match c {
                    Ok(()) => "connection closed before the response".into(),
                    Err(e) => e.into(),
                }),
            }
        };
        res.map(|()| (tx, conn))
    };
    let (tx, conn) = match timeout(t.timeout, establish).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            shared.fail(&e);
            return;
        }
        Err(_) => {
            shared.fail(&BoxError::from("timeout"));
            return;
        }
    };
    drop(permit);
    shared.opened.fetch_add(1, Ordering::Relaxed);
    shared.open_now.fetch_add(1, Ordering::Relaxed);
    // Keep driving the connection: it ends when the server closes it (or on abort).
    let _ = conn.await;
    shared.open_now.fetch_sub(1, Ordering::Relaxed);
    drop(tx);
}

pub fn print_text(r: &IdleResult) {
    println!(
        "opened {}/{} connections in {:.1} s ({} failed); open after {:.0} s hold: {}",
        r.opened, r.connections, r.open_s, r.failed, r.hold_s, r.open_after_hold
    );
    if let Some(v) = r.loadgen_cpu_us_per_handshake {
        println!("loadgen cpu {v:.1} us per connection opened");
    }
    if let (Some(b), Some(i)) = (r.rss_before_kib, r.rss_idle_kib) {
        println!(
            "proxy RSS {:.1} MiB before, {:.1} MiB with the connections idle: {} per idle connection",
            b as f64 / 1024.0,
            i as f64 / 1024.0,
            r.rss_per_conn_bytes.map_or("-".into(), |v| format!("{:.1} KiB", v / 1024.0))
        );
    }
    for (k, v) in &r.error_kinds {
        println!("error x{v}: {k}");
    }
}
