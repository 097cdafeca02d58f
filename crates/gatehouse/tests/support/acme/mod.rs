//! The ACME peers of the `acme_*` tests, each a real program: `named` (bind9) as the
//! authoritative server of `example.test` that takes RFC 2136 updates signed with a
//! TSIG key ([`Bind9`]), the certbot of scripts/test.sh's virtualenv ([`Certbot`]),
//! Debian's `lego` ([`Lego`]) and Debian's `pebble` ([`Pebble`], the reference server
//! that proves this harness). [`Issued`] is what a client wrote, judged by openssl;
//! [`GatehouseAcme`] is `gatehouse serve` with an `[acme_server]` table, the server
//! under test.
//!
//! Servers run under a [`Daemon`] guard: it stops them on drop and also when the test
//! binary exits, so a fixture kept in a `static` for all the tests of a file does not
//! outlive them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::ca::{find_serial, list_json};
use super::curl::curl;
use super::encoding::norm_serial;
use super::env::Env;
use super::files::{TempDir, mkdir, read, tmp, write};
use super::gatehouse::gh_cmd;
use super::net::free_port;
use super::openssl::{cert_pubkey, key_pubkey, openssl, openssl_ok, pem_certs, x509_ext};
use super::process::{Out, Proc, require, run_limited};
use super::time::openssl_time;
use super::{Value, s};

/// The certbot of scripts/test.sh's virtualenv (Debian's 2.1 predates ARI and profiles).
pub const CERTBOT: &str = "/opt/gatehouse-test/certbot/bin/certbot";
pub const LEGO: &str = "/usr/bin/lego";
pub const PEBBLE: &str = "/usr/bin/pebble";
pub const NAMED: &str = "/usr/sbin/named";
pub const TSIG_KEYGEN: &str = "/usr/sbin/tsig-keygen";
pub const DIG: &str = "/usr/bin/dig";

/// The zone bind9 serves; every name in it resolves to 127.0.0.1.
pub const ZONE: &str = "example.test";
/// The lifetime of the default profile (`server`): 90 days.
pub const SERVER_PROFILE_HOURS: i64 = 90 * 24;
/// The lifetime of the `shortlived` profile: 160 hours.
pub const SHORTLIVED_PROFILE_HOURS: i64 = 160;
/// The contact address the clients register.
pub const EMAIL: &str = "test@example.test";

/// How long one client run (account, order, validation, download) may take: long
/// enough for a slow machine, short enough that a server that never answers fails.
const CLIENT_LIMIT: Duration = Duration::from_secs(120);
/// How long a server may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(30);

mod bind9;
mod certbot;
mod daemon;
mod edge;
mod gatehouse;
mod issued;
mod lego;
mod pebble;

// Each test binary uses some of these; the rest would warn as unused there.
#[allow(unused_imports)]
pub use bind9::*;
#[allow(unused_imports)]
pub use certbot::*;
#[allow(unused_imports)]
pub use daemon::*;
#[allow(unused_imports)]
pub use edge::*;
#[allow(unused_imports)]
pub use gatehouse::*;
#[allow(unused_imports)]
pub use issued::*;
#[allow(unused_imports)]
pub use lego::*;
#[allow(unused_imports)]
pub use pebble::*;
