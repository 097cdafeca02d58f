//! `gatehouse keyserver --config FILE`: the Keyless SSL key server. The file,
//! the keys and the protocol are the `keyserver` crate's; this reads the file,
//! maps its errors to exit codes and runs the server until SIGTERM or Ctrl-C.
//!
//! Exit codes: 2 the configuration or a file it names is wrong (an unknown key
//! with its line, a key file that cannot be read, `pkcs11`); 1 the server
//! cannot listen; 0 stopped by a signal.

use std::path::Path;
use std::process::ExitCode;

use crate::Failure;

/// `gatehouse keyserver`.
pub async fn run(global: &crate::cli::Global, path: &Path) -> Result<ExitCode, Failure> {
    let in_file = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let config = keyserver::Config::load(path, &global.data_dir).map_err(|e| Failure::usage(in_file(&e)))?;
    let refused = |e: keyserver::ServerError| {
        if e.is_configuration() { Failure::usage(in_file(&e)) } else { Failure::failed(e.to_string()) }
    };
    let prepared = keyserver::Prepared::new(&config).map_err(refused)?;
    let server = keyserver::Server::bind(prepared).await.map_err(refused)?;
    server.run(gateway::wait_for_termination()).await;
    Ok(ExitCode::SUCCESS)
}
