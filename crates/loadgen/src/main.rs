//! gatehouse-loadgen: an mTLS load generator for comparing TLS reverse
//! proxies (see bench/gateway/README.md), the tiny backend they proxy to, and
//! full ACME orders against an ACME server (see bench/acme/README.md).

mod acme;
mod acme_order;
mod backend;
mod client;
mod dns;
mod http01;
mod idle;
mod keyless_sign;
mod proc;
mod report;
mod run;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use http::Uri;
use http::header::HeaderValue;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use client::Target;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser)]
#[command(name = "gatehouse-loadgen", version, about = "mTLS load generator and test backend for gatehouse benchmarks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Plain HTTP/1.1 backend answering "ok\n" (keep-alive)
    Backend {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Load for a fixed duration: keep-alive h1/h2 requests or full mTLS handshakes
    Run(RunArgs),
    /// Open N mTLS connections, one request each, hold them idle, report the proxy's RSS
    Idle(IdleArgs),
    /// Print N free TCP ports on 127.0.0.1 (one a line)
    FreePort {
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
    /// Markdown tables (medians) from a JSON-lines file written by bench/gateway/compare.sh
    Report { file: PathBuf },
    /// Full ACME orders (account, order, http-01, finalize, download) against an ACME server
    Acme(AcmeArgs),
    /// ECDSA P-256 signatures/s from a key server over the gokeyless protocol (mTLS)
    Keyless(KeylessArgs),
}

#[derive(Args)]
struct KeylessArgs {
    /// The key server, IP:PORT
    #[arg(long)]
    server: SocketAddr,
    /// The name its certificate carries
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// PEM roots for the key server's certificate
    #[arg(long)]
    ca: PathBuf,
    /// The client certificate (PEM chain) and its key
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    /// The P-256 key's SKI, 40 hex digits (SHA-1 of the certificate's subjectPublicKey)
    #[arg(long)]
    ski: String,
    /// Connections
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Requests in flight per connection
    #[arg(long, default_value_t = 64)]
    depth: usize,
    /// Seconds
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Runtime threads (1 = tokio current_thread)
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Key server process(es) whose CPU time is reported
    #[arg(long = "pid", value_delimiter = ',')]
    pids: Vec<u32>,
    /// Print one JSON object on stdout
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct AcmeArgs {
    /// The ACME directory URL (https://HOST:PORT/...)
    #[arg(long)]
    directory: String,
    /// PEM file with the root that issued the ACME server's TLS certificate
    #[arg(long)]
    ca: PathBuf,
    /// Orders in all (after one account per client)
    #[arg(long, default_value_t = 200)]
    orders: u64,
    /// Concurrent clients, each with its own account and connection
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Seconds: stop starting orders after this long, even if fewer than --orders were made
    #[arg(long)]
    duration: Option<f64>,
    /// Port of the in-process http-01 responder on 127.0.0.1 (the server's http-01 port)
    #[arg(long)]
    http_01_port: u16,
    /// Also answer DNS on this UDP address: A 127.0.0.1 for every name (for servers
    /// that cannot resolve *.localhost themselves, e.g. pebble -dnsserver)
    #[arg(long)]
    dns_listen: Option<SocketAddr>,
    /// Milliseconds between order refreshes while validating or issuing (Retry-After ignored)
    #[arg(long, default_value_t = 5.0)]
    poll_ms: f64,
    /// Seconds one order may take before it counts as an error
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Names are PREFIX{N}.localhost
    #[arg(long, default_value = "o")]
    name_prefix: String,
    /// Runtime threads (1 = tokio current_thread)
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Server process(es) whose CPU time counts (comma-separated or repeated)
    #[arg(long = "pid", value_delimiter = ',')]
    pids: Vec<u32>,
    /// Print one JSON object on stdout
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct TargetArgs {
    /// https://HOST:PORT/PATH of the proxy under test
    #[arg(long)]
    url: String,
    /// PEM file with the root(s) that issued the server certificate
    #[arg(long)]
    ca: PathBuf,
    /// PEM client certificate chain (leaf first, then intermediates)
    #[arg(long)]
    cert: PathBuf,
    /// PEM (PKCS#8, SEC1 or PKCS#1) private key of the client certificate
    #[arg(long)]
    key: PathBuf,
    /// SNI and name to verify (default: the URL's host)
    #[arg(long)]
    server_name: Option<String>,
    /// Address to connect to (default: the URL's host resolved, IPv4 first)
    #[arg(long)]
    connect: Option<SocketAddr>,
    /// Key exchange group
    #[arg(long, value_enum, default_value = "x25519")]
    kx: tls::Kx,
    /// Verify the server chain on every handshake (default: once per distinct chain;
    /// the handshake signature is verified every time either way)
    #[arg(long)]
    no_verify_cache: bool,
    /// Per-operation timeout in seconds
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Runtime threads (1 = tokio current_thread)
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Proxy process(es) to measure: CPU time and peak RSS (comma-separated or repeated)
    #[arg(long = "pid", value_delimiter = ',')]
    pids: Vec<u32>,
    /// More proxy processes whose CPU time counts but whose RSS is shown apart (e.g. nginx master)
    #[arg(long = "aux-pid", value_delimiter = ',')]
    aux_pids: Vec<u32>,
    /// Print one JSON object on stdout
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    t: TargetArgs,
    #[arg(long, value_enum)]
    mode: run::Mode,
    /// Concurrent connections (handshake mode: concurrent workers)
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// h2 only: concurrent streams per connection
    #[arg(long, default_value_t = 1)]
    streams: usize,
}

#[derive(Args)]
struct IdleArgs {
    #[command(flatten)]
    t: TargetArgs,
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Seconds to keep them open and idle
    #[arg(long, default_value_t = 20.0)]
    hold: f64,
    /// Handshakes in flight while opening
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

fn main() {
    let cli = Cli::parse();
    proc::raise_nofile();
    let threads = match &cli.cmd {
        Cmd::Run(a) => a.t.threads,
        Cmd::Idle(a) => a.t.threads,
        Cmd::Acme(a) => a.threads,
        Cmd::Keyless(a) => a.threads,
        _ => 1,
    };
    let result = match cli.cmd {
        Cmd::FreePort { count } => free_ports(count),
        Cmd::Report { file } => report::report(&file),
        cmd => runtime(threads).and_then(|rt| rt.block_on(async_main(cmd))),
    };
    if let Err(e) = result {
        eprintln!("gatehouse-loadgen: {}", client::describe(&e));
        std::process::exit(1);
    }
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, BoxError> {
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?
    };
    Ok(rt)
}

async fn async_main(cmd: Cmd) -> Result<(), BoxError> {
    match cmd {
        Cmd::Backend { listen } => backend::serve(listen).await,
        Cmd::Run(a) => {
            let alpn: &[&[u8]] = if a.mode == run::Mode::H2 { &[b"h2"] } else { &[b"http/1.1"] };
            let target = target(&a.t, alpn).await?;
            let r = run::run(
                target,
                run::RunParams {
                    mode: a.mode,
                    connections: a.connections.max(1),
                    streams: a.streams.max(1),
                    duration: secs(a.duration)?,
                    pids: a.t.pids.clone(),
                    aux_pids: a.t.aux_pids.clone(),
                },
            )
            .await?;
            if a.t.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                run::print_text(&r);
            }
            Ok(())
        }
        Cmd::Idle(a) => {
            let target = target(&a.t, &[b"http/1.1"]).await?;
            let r = idle::idle(
                target,
                idle::IdleParams {
                    connections: a.connections,
                    hold: secs(a.hold)?,
                    concurrency: a.concurrency,
                    settle: Duration::from_millis(500),
                    pids: a.t.pids.clone(),
                    aux_pids: a.t.aux_pids.clone(),
                },
            )
            .await?;
            if a.t.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                idle::print_text(&r);
            }
            Ok(())
        }
        Cmd::Acme(a) => {
            let r = acme::run(acme::AcmeParams {
                directory: a.directory,
                ca: a.ca,
                orders: a.orders,
                concurrency: a.concurrency.max(1),
                duration: a.duration.map(secs).transpose()?,
                http_01_port: a.http_01_port,
                dns_listen: a.dns_listen,
                poll: secs(a.poll_ms / 1e3)?,
                timeout: secs(a.timeout)?,
                name_prefix: a.name_prefix,
                pids: a.pids,
            })
            .await?;
            if a.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                acme::print_text(&r);
            }
            Ok(())
        }
        Cmd::Keyless(a) => {
            let bytes = hex::decode(&a.ski).map_err(|e| format!("--ski {}: {e}", a.ski))?;
            let ski = keyless::Ski(bytes.try_into().map_err(|_| format!("--ski {}: not 20 bytes", a.ski))?);
            let r = keyless_sign::run(keyless_sign::SignParams {
                server: a.server,
                server_name: a.server_name,
                ca: a.ca,
                cert: a.cert,
                key: a.key,
                ski,
                connections: a.connections,
                depth: a.depth,
                duration: secs(a.duration)?,
                pids: a.pids,
            })
            .await?;
            if a.json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                keyless_sign::print_text(&r);
            }
            Ok(())
        }
        Cmd::FreePort { .. } | Cmd::Report { .. } => unreachable!(),
    }
}

fn secs(v: f64) -> Result<Duration, BoxError> {
    Duration::try_from_secs_f64(v).map_err(|e| format!("bad duration {v}: {e}").into())
}

async fn target(a: &TargetArgs, alpn: &[&[u8]]) -> Result<Arc<Target>, BoxError> {
    let uri: Uri = a.url.parse().map_err(|e| format!("--url {}: {e}", a.url))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("--url {}: only https:// URLs", a.url).into());
    }
    let host = uri.host().ok_or_else(|| format!("--url {}: no host", a.url))?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let port = uri.port_u16().unwrap_or(443);
    let authority = uri.authority().map(|a| a.as_str().to_string()).unwrap_or_default();
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();

    let addr = match a.connect {
        Some(addr) => addr,
        None => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port)).await?.collect();
            addrs
                .iter()
                .find(|a| a.is_ipv4())
                .or(addrs.first())
                .copied()
                .ok_or_else(|| format!("{host}: no address"))?
        }
    };
    let name = a.server_name.clone().unwrap_or(host);
    let server_name = ServerName::try_from(name.clone()).map_err(|e| format!("server name {name}: {e}"))?;

    let config = tls::client_config(&tls::TlsOptions {
        ca: &a.ca,
        cert: &a.cert,
        key: &a.key,
        alpn,
        kx: a.kx,
        verify_cache: !a.no_verify_cache,
    })?;
    Ok(Arc::new(Target {
        addr,
        server_name,
        connector: TlsConnector::from(config),
        uri_h1: path.parse()?,
        uri_h2: format!("https://{authority}{path}").parse()?,
        host: HeaderValue::from_str(&authority)?,
        timeout: secs(a.timeout)?,
    }))
}

fn free_ports(count: usize) -> Result<(), BoxError> {
    // Hold all listeners at once so the ports are distinct.
    let mut held = Vec::new();
    for _ in 0..count {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        println!("{}", l.local_addr()?.port());
        held.push(l);
    }
    Ok(())
}
