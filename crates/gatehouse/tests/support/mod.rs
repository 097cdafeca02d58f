//! The one harness of the `gatehouse` integration tests (`ca_*`, `gw_*`, `peers_*`).
//!
//! Everything is a real process: the `gatehouse` binary, openssl, sqlite3, curl,
//! python3 servers, nginx and Chromium. Helpers read like the shell session a
//! person would type; every long-running child is owned by a guard that kills it
//! on drop, and every finished command has a time limit so a hang fails its test.
//!
//! - [`process`]: finished commands ([`Out`]) and long-running children ([`Proc`]).
//! - [`net`]: free ports and waiting (for a port, a condition, a closed socket).
//! - [`files`]: temp dirs and one-line file helpers.
//! - [`gatehouse`]: running the binary with a data dir.
//! - [`ca`]: a CA data dir used directly (`ca_*` tests): its layout, `ca.toml`, `ca list`.
//! - [`env`]: a temp dir with a CA in `T/data` and the certificates it issues ([`Cert`]).
//! - [`openssl`]: openssl runs: certificates, CSRs, `openssl ca`, `s_client`.
//! - [`encoding`]: base64, serial number forms, JSON.
//! - [`time`]: Unix times and the date forms of openssl and RFC 3339.
//! - [`curl`]: curl runs and what the echo upstream received.
//! - [`upstream`]: servers the gateway forwards to (python echo, static files, nginx).
//! - [`acme`]: ACME peers (bind9, certbot, lego, pebble) and gatehouse's ACME server as a fixture.
//! - [`gateway`]: `gatehouse serve` as a fixture, its config pieces and /metrics.
//! - [`postgres`]: a CA kept in PostgreSQL (storage URL and passphrase), serials of many certificates.

// Each test binary compiles this module on its own and uses only a part of it;
// without this, every binary warns about the helpers the others use.
#![allow(dead_code)]

pub mod acme;
pub mod ca;
pub mod curl;
pub mod encoding;
pub mod env;
pub mod files;
pub mod gatehouse;
pub mod gateway;
pub mod keyless;
pub mod net;
pub mod openssl;
pub mod postgres;
pub mod process;
pub mod time;
pub mod upstream;

// One glob a test file takes in with `use support::*;`; a binary that leaves a module
// unused would otherwise warn about its re-export.
#[allow(unused_imports)]
pub use self::{
    acme::*, ca::*, curl::*, encoding::*, env::*, files::*, gatehouse::*, gateway::*, net::*, openssl::*, process::*,
    time::*, upstream::*,
};

pub use serde_json::Value;

use std::path::Path;
use std::time::Duration;

/// A path as the `&str` a command line takes.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Milliseconds, for messages.
pub fn ms(d: Duration) -> u128 {
    d.as_millis()
}
