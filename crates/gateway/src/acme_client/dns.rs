//! dns-01 records (RFC 8555 §8.4): the TXT record `_acme-challenge.NAME` that proves
//! control of NAME, written where `[[acme]] dns` says and checked at the zone's
//! authoritative servers before the CA is told to look.
//!
//! - [`tsig_key`]: the TSIG key of `rfc2136 = { ... }`, read from its secret file.
//! - [`rfc2136`]: the zone's primary: finding the zone, signed UPDATEs, what a refusal means.
//! - [`exec`]: the `exec = "PATH"` hook, run as lego's exec provider runs it.
//! - [`lookup`]: one question to one server, the zone's name servers through the
//!   system resolver, and waiting until every one of them answers the record.

mod exec;
mod lookup;
mod rfc2136;
mod tsig_key;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hickory_proto::rr::Name;

use super::config::DnsConfig;
use exec::Hook;
use rfc2136::Primary;

/// The label under which dns-01 records live (RFC 8555 §8.4).
const CHALLENGE_LABEL: &str = "_acme-challenge";

/// Writes and removes dns-01 TXT records for one `[[acme]]` account.
#[derive(Debug)]
pub struct DnsSolver {
    backend: Backend,
}

#[derive(Debug)]
enum Backend {
    Rfc2136(Primary),
    Exec(Hook),
}

/// Why a dns-01 record could not be written, checked or removed.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The TSIG secret file could not be read.
    #[error(
        "cannot read the TSIG secret file {path}: {source}; write the key's secret there \
         (the base64 secret alone, or the block tsig-keygen prints)"
    )]
    SecretFileUnreadable {
        /// The file, as resolved against the config's directory.
        path: PathBuf,
        /// What reading it said.
        #[source]
        source: io::Error,
    },
    /// The TSIG secret file holds no usable secret.
    #[error(
        "the TSIG secret file {path} {reason}; write the base64 secret alone, or the \
         `key \"NAME\" {{ algorithm ...; secret \"...\"; }};` block tsig-keygen prints"
    )]
    SecretFileInvalid {
        /// The file, as resolved against the config's directory.
        path: PathBuf,
        /// What is wrong with its content (never the content itself).
        reason: String,
    },
    /// `key_algorithm` names no TSIG algorithm gatehouse signs with.
    #[error("unknown TSIG algorithm \"{0}\": set key_algorithm to hmac-sha256, hmac-sha384 or hmac-sha512")]
    UnknownAlgorithm(String),
    /// `key_name` is not a DNS name.
    #[error("the TSIG key name \"{name}\" is not a DNS name ({reason}): set key_name to the key's name in named.conf")]
    KeyName {
        /// The configured name.
        name: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The order identifier gives no `_acme-challenge` name.
    #[error("\"{name}\" is not a DNS name a dns-01 record can prove ({reason})")]
    Identifier {
        /// The identifier as the order named it.
        name: String,
        /// Why it does not parse.
        reason: String,
    },
    /// The primary is authoritative for no zone that holds the record.
    #[error(
        "{server} is authoritative for no zone containing {record} (the SOA of it and of every parent \
         name was answered with {rcode}), so key {key} cannot update it: set `server` to the primary \
         of the zone that holds {record}"
    )]
    ZoneNotFound {
        /// The configured primary.
        server: SocketAddr,
        /// The `_acme-challenge` name.
        record: String,
        /// The TSIG key's name.
        key: String,
        /// The last answer's rcode (REFUSED, SERVFAIL, ...).
        rcode: String,
    },
    /// The primary did not answer (connection refused, timeout, garbage).
    #[error(
        "no answer from {server} to {what} (key {key}): {reason}; check that {server} is the zone's \
         primary and takes DNS over TCP"
    )]
    NoAnswer {
        /// The configured primary.
        server: SocketAddr,
        /// The question or update that went unanswered.
        what: String,
        /// The TSIG key's name.
        key: String,
        /// What the transport said.
        reason: String,
    },
    /// The primary answered the UPDATE with an error rcode.
    #[error(transparent)]
    UpdateRefused(Box<UpdateRefused>),
    /// The primary's answer to an UPDATE does not carry a valid TSIG of the key.
    #[error(
        "the answer of {server} to the update of TXT {record} is not signed with TSIG key {key} \
         ({reason}): something between gatehouse and {server} altered it, or another server answered"
    )]
    UnsignedAnswer {
        /// The configured primary.
        server: SocketAddr,
        /// The `_acme-challenge` name.
        record: String,
        /// The TSIG key's name.
        key: String,
        /// What the verification said.
        reason: String,
    },
    /// The record was written but the authoritative servers never answered it.
    #[error(
        "the TXT record {record} never became visible: {looked} did not answer the new value within \
         {}s; check that the update reached the zone's primary and that its secondaries transfer \
         the zone", timeout.as_secs()
    )]
    NotVisible {
        /// The `_acme-challenge` name.
        record: String,
        /// The servers asked, and what each one last said.
        looked: String,
        /// How long they were asked for.
        timeout: Duration,
    },
    /// The exec hook could not be started.
    #[error("cannot run the dns-01 hook {program}: {source}; check that it exists and is executable")]
    HookStart {
        /// The hook's path, as resolved against the config's directory.
        program: PathBuf,
        /// What spawning it said.
        #[source]
        source: io::Error,
    },
    /// The exec hook exited with a failure.
    #[error("the dns-01 hook `{program} {action} {record}` failed ({status}): {stderr}")]
    HookFailed {
        /// The hook's path.
        program: PathBuf,
        /// `present` or `cleanup`.
        action: &'static str,
        /// The `_acme-challenge` name, with its final dot.
        record: String,
        /// How it exited (`exit status: 3`, `signal: 9`).
        status: String,
        /// The last lines it wrote to stderr.
        stderr: String,
    },
    /// The exec hook ran past its time.
    #[error("the dns-01 hook `{program} {action} {record}` did not finish within {}s and was killed", limit.as_secs())]
    HookTimeout {
        /// The hook's path.
        program: PathBuf,
        /// `present` or `cleanup`.
        action: &'static str,
        /// The `_acme-challenge` name, with its final dot.
        record: String,
        /// How long it was given.
        limit: Duration,
    },
}

/// The primary's refusal of an UPDATE: what was refused, why, and what to check.
#[derive(Debug, thiserror::Error)]
#[error("{server} refused the update of TXT {record} in zone {zone} signed with TSIG key {key}: {rcode}; {hint}")]
pub struct UpdateRefused {
    /// The configured primary.
    pub server: SocketAddr,
    /// The `_acme-challenge` name.
    pub record: String,
    /// The zone the update was for.
    pub zone: String,
    /// The TSIG key's name.
    pub key: String,
    /// The rcode, with the TSIG error when there is one (`NOTAUTH (TSIG BADSIG)`).
    pub rcode: String,
    /// What to check.
    pub hint: String,
}

impl DnsSolver {
    /// Relative paths resolve against `base_dir` (the config file's directory). Reads the
    /// TSIG secret file now: a missing/unreadable/garbage file is an error naming the file.
    pub fn new(config: &DnsConfig, base_dir: &Path) -> Result<DnsSolver, DnsError> {
        let backend = match config {
            DnsConfig::Rfc2136(c) => Backend::Rfc2136(Primary::new(c, base_dir)?),
            DnsConfig::Exec(program) => {
                let mut program = base_dir.join(program);
                // A bare name would be looked up in $PATH; the config means the file.
                if program.components().count() == 1 && program.is_relative() {
                    program = Path::new(".").join(program);
                }
                Backend::Exec(Hook::new(program))
            }
        };
        Ok(DnsSolver { backend })
    }

    /// `name` is the order identifier: "example.test" or "*.example.test"; the record is the
    /// TXT `value` at `_acme-challenge.example.test.` (wildcard prefix dropped). Writes it, then
    /// waits until the zone's authoritative server answers it (polling ~every 500 ms, giving up
    /// after `timeout` with an error saying the record never became visible and where it looked).
    pub async fn present(&self, name: &str, value: &str, timeout: Duration) -> Result<(), DnsError> {
        let record = challenge_record(name)?;
        let started = Instant::now();
        match &self.backend {
            Backend::Rfc2136(primary) => {
                primary.add(&record, value).await?;
                lookup::wait_visible(&[primary.server()], &record, value, started, timeout).await
            }
            Backend::Exec(hook) => {
                hook.run("present", &record, value, timeout).await?;
                match lookup::authoritative_servers(&record).await {
                    Ok(servers) => lookup::wait_visible(&servers, &record, value, started, timeout).await,
                    Err(why) => {
                        tracing::warn!(
                            record = %record,
                            "the dns-01 hook succeeded but the record could not be checked: {why}; \
                             going on without waiting for it to be visible"
                        );
                        Ok(())
                    }
                }
            }
        }
    }

    /// Removes exactly that TXT value (other values at the same name stay).
    pub async fn cleanup(&self, name: &str, value: &str) -> Result<(), DnsError> {
        let record = challenge_record(name)?;
        match &self.backend {
            Backend::Rfc2136(primary) => primary.delete(&record, value).await,
            Backend::Exec(hook) => hook.run("cleanup", &record, value, exec::CLEANUP_LIMIT).await,
        }
    }
}

/// `_acme-challenge.NAME.` for an order identifier; a wildcard's record is its base name's.
fn challenge_record(identifier: &str) -> Result<Name, DnsError> {
    let invalid = |reason: &str| DnsError::Identifier { name: identifier.to_owned(), reason: reason.to_owned() };
    let base = identifier.strip_prefix("*.").unwrap_or(identifier);
    let base = base.strip_suffix('.').unwrap_or(base);
    if base.is_empty() {
        return Err(invalid("it is empty"));
    }
    if base.contains('*') {
        return Err(invalid("only a leading `*.` may be a wildcard"));
    }
    Name::from_ascii(format!("{CHALLENGE_LABEL}.{base}.")).map_err(|e| invalid(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_and_its_base_share_one_record() {
        let base = challenge_record("b.example.test").unwrap();
        assert_eq!(base.to_ascii(), "_acme-challenge.b.example.test.");
        assert_eq!(challenge_record("*.b.example.test").unwrap(), base);
        assert_eq!(challenge_record("b.example.test.").unwrap(), base);
    }

    #[test]
    fn names_that_are_not_identifiers_are_refused() {
        for bad in ["", "*.", "a.*.example.test", "a..example.test"] {
            let e = challenge_record(bad).unwrap_err();
            assert!(e.to_string().contains("not a DNS name"), "{bad}: {e}");
        }
    }
}
