//! `gatehouse`: the command line of the TLS trust edge. It parses arguments
//! and settings and calls the library crates; no protocol logic lives here.

#![forbid(unsafe_code)]

mod acme_keys;
mod agent;
mod batch;
mod bundle;
mod ca;
mod cli;
mod keyserver;
mod serve;
mod shared_ca;
mod storage;

use std::path::Path;
use std::process::ExitCode;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};

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
        // A storage URL that names no database is a usage error; the database failing is not.
        match e {
            store::StoreError::UnknownScheme(_) | store::StoreError::MissingPath(_) => Failure::usage(e.to_string()),
            _ => Failure::failed(e.to_string()),
        }
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

/// `n` with its noun: "1 site", "2 sites".
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Refuses a data dir that is not a directory; `flag` is where it came from (`--data-dir`,
/// `GATEHOUSE_DATA_DIR`, a config file's `data_dir`). A missing one is fine: it is created.
pub fn usable_data_dir(path: &Path, flag: &str) -> Result<(), Failure> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => Err(Failure::usage(format!("{flag} {} is a file; give a directory", path.display()))),
        _ => Ok(()),
    }
}

/// Exit status of a command whose stdout reader went away: what a shell reports for a
/// process SIGPIPE ended (128 + 13).
pub const CLOSED_STDOUT: i32 = 141;

/// `gatehouse ca list | head -1`: once the reader of stdout is gone, the command ends
/// quietly, as Unix tools do when SIGPIPE ends them. Rust ignores SIGPIPE, so `print!`
/// panics on the closed pipe instead; this hook ends the process on that one panic, with
/// no message and SIGPIPE's status, and leaves every other panic to the default hook.
/// (Restoring SIGPIPE's default action would need unsafe code, which this crate forbids,
/// and would let a closed socket kill `serve`; the gateway's own log writer already drops
/// lines stdout does not take.)
fn end_quietly_when_stdout_closes() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = match (info.payload().downcast_ref::<&str>(), info.payload().downcast_ref::<String>()) {
            (Some(s), _) => s,
            (_, Some(s)) => s.as_str(),
            _ => "",
        };
        // std's message for a failed print; EPIPE is os error 32 on Linux and the BSDs.
        if message.starts_with("failed printing to stdout") && message.ends_with("(os error 32)") {
            std::process::exit(CLOSED_STDOUT);
        }
        default(info)
    }));
}

fn current_thread() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))
}

fn main() -> ExitCode {
    end_quietly_when_stdout_closes();
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let data_dir_flag = match matches.value_source("data_dir") {
        Some(ValueSource::EnvVariable) => "GATEHOUSE_DATA_DIR",
        _ => "--data-dir",
    };
    cli.global.storage_flag = match matches.value_source("storage") {
        Some(ValueSource::EnvVariable) => "GATEHOUSE_STORAGE",
        _ => "--storage",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG")
                // Warnings, and the certificate lifecycle (obtained, renewed, scheduled), rare and
                // what an operator looks for first.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new(
                        "warn,gateway::acme_client=info,gateway::certificates=info,gatehouse::agent=info,gatehouse::keyserver=info,keyserver=info,gateway::keyless=info",
                    )
                }),
        )
        .with_writer(std::io::stderr)
        .init();
    // A CA whose intermediate key is in a PKCS#11 token (ca init --key-store) is opened
    // through the key server's token code, by every command that issues.
    pki::set_token_opener(::keyserver::ca_key::open);
    let result = usable_data_dir(&cli.global.data_dir, data_dir_flag).and_then(|()| match cli.command {
        Command::Ca(command) => current_thread().and_then(|rt| rt.block_on(ca::run(&cli.global, command))),
        Command::Store(command) => current_thread().and_then(|rt| rt.block_on(storage::run(&cli.global, command))),
        Command::Config(ConfigCommand::Check { file }) => {
            current_thread().and_then(|rt| rt.block_on(serve::check(&cli.global, &file)))
        }
        Command::Serve { config } => serve::load_config(&config).and_then(|loaded| {
            let rt = serve::runtime_for(&loaded)?;
            rt.block_on(serve::serve(&cli.global, &config, loaded))
        }),
        Command::Agent { config, once } => {
            serve::runtime(None).and_then(|rt| rt.block_on(agent::run(&cli.global, &config, once)))
        }
        Command::Keyserver { config } => {
            serve::runtime(None).and_then(|rt| rt.block_on(keyserver::run(&cli.global, &config)))
        }
        Command::Quickstart { listen, upstream, hostname } => serve::runtime(None).and_then(|rt| {
            rt.block_on(serve::quickstart(&cli.global, serve::Quickstart { listen, upstream, hostname }))
        }),
    });
    match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("gatehouse: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
