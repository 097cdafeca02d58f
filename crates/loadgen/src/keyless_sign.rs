//! `gatehouse-loadgen keyless`: ECDSA P-256 signatures/s from a key server over
//! the gokeyless protocol (issue 11's "key server signatures/s against
//! `openssl speed ecdsap256`"). Each of `connections` mTLS connections keeps
//! `depth` requests in flight: a response is answered by the next request at
//! once, so the key server, not the client's round trips, sets the rate.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use keyless::{Decoded, KeySelector, Message, Opcode, Ski};
use rustls::pki_types::ServerName;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::BoxError;
use crate::tls::{Kx, TlsOptions, client_config};

/// What to load and how hard.
pub struct SignParams {
    pub server: SocketAddr,
    pub server_name: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ski: Ski,
    pub connections: usize,
    pub depth: usize,
    pub duration: Duration,
    pub pids: Vec<u32>,
}

/// What was seen.
#[derive(Debug, Serialize)]
pub struct SignReport {
    pub connections: usize,
    pub depth: usize,
    pub seconds: f64,
    pub signatures: u64,
    pub errors: u64,
    pub signatures_per_sec: f64,
    /// CPU seconds of `pids` (the key server) per second of the run.
    pub server_cpu: Option<f64>,
}

/// Runs the load and reports.
pub async fn run(p: SignParams) -> Result<SignReport, BoxError> {
    let tls = client_config(&TlsOptions {
        ca: &p.ca,
        cert: &p.cert,
        key: &p.key,
        alpn: &[],
        kx: Kx::X25519,
        verify_cache: false,
    })?;
    let connector = TlsConnector::from(tls);
    let name = ServerName::try_from(p.server_name.clone())?;
    let mut streams = Vec::new();
    for _ in 0..p.connections.max(1) {
        let tcp = TcpStream::connect(p.server).await?;
        tcp.set_nodelay(true)?;
        streams.push(connector.connect(name.clone(), tcp).await?);
    }
    // A SHA-256 digest's worth of bytes: the key server signs whatever 32 bytes it gets.
    let digest = vec![0x5a; 32];
    let cpu_before = crate::proc::cpu_seconds(&p.pids).ok();
    let start = Instant::now();
    let deadline = start + p.duration;
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|stream| {
            let (ski, digest, depth) = (p.ski, digest.clone(), p.depth.max(1));
            tokio::spawn(async move { one_connection(stream, ski, digest, depth, deadline).await })
        })
        .collect();
    let (mut signatures, mut errors) = (0, 0);
    for t in tasks {
        let (ok, failed) = t.await??;
        signatures += ok;
        errors += failed;
    }
    let seconds = start.elapsed().as_secs_f64();
    let server_cpu = match (cpu_before, crate::proc::cpu_seconds(&p.pids).ok()) {
        (Some(a), Some(b)) if !p.pids.is_empty() => Some((b - a) / seconds),
        _ => None,
    };
    Ok(SignReport {
        connections: p.connections.max(1),
        depth: p.depth.max(1),
        seconds,
        signatures,
        errors,
        signatures_per_sec: signatures as f64 / seconds,
        server_cpu,
    })
}

/// Keeps `depth` requests in flight until `deadline`; then reads what is left.
async fn one_connection(
    stream: tokio_rustls::client::TlsStream<TcpStream>,
    ski: Ski,
    digest: Vec<u8>,
    depth: usize,
    deadline: Instant,
) -> Result<(u64, u64), BoxError> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let request =
        |id: u32| Message::request(id, Opcode::EcdsaSignSha256, KeySelector::Ski(ski), digest.clone()).encode();
    let mut next_id = 1u32;
    let mut batch = Vec::new();
    for _ in 0..depth {
        batch.extend_from_slice(&request(next_id)?);
        next_id += 1;
    }
    writer.write_all(&batch).await?;
    let (mut in_flight, mut ok, mut failed) = (depth, 0u64, 0u64);
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    while in_flight > 0 {
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Err("the key server closed the connection".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut answered = 0;
        let mut used = 0;
        while let Decoded::Complete { message, consumed } = keyless::decode(&buf[used..])? {
            used += consumed;
            answered += 1;
            if message.opcode == Some(Opcode::Response) { ok += 1 } else { failed += 1 }
        }
        buf.drain(..used);
        in_flight -= answered;
        // Every answer is replaced at once, until the deadline.
        if Instant::now() < deadline && answered > 0 {
            batch.clear();
            for _ in 0..answered {
                batch.extend_from_slice(&request(next_id)?);
                next_id = next_id.wrapping_add(1);
            }
            writer.write_all(&batch).await?;
            in_flight += answered;
        }
    }
    Ok((ok, failed))
}

pub fn print_text(r: &SignReport) {
    println!(
        "{} connections x {} in flight: {} signatures in {:.1} s = {:.0}/s, {} errors{}",
        r.connections,
        r.depth,
        r.signatures,
        r.seconds,
        r.signatures_per_sec,
        r.errors,
        r.server_cpu.map(|c| format!(", key server {:.2} CPU", c)).unwrap_or_default()
    );
}
