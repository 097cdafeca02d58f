//! `rfc2136 = { ... }`: dynamic updates (RFC 2136) signed with TSIG (RFC 8945), sent to
//! the zone's primary over TCP.
//!
//! The zone is found by asking the primary for the SOA of the record's name and of each
//! parent in turn: the authoritative answer names the zone (the SOA's owner, in the answer
//! at the apex, in the authority section below it). An update adds one RR to the TXT RRset
//! and a cleanup deletes that one RR: a wildcard and its base name put two values at the
//! same `_acme-challenge` name at once, and replacing the RRset would drop the other one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{ResponseCode, update_message};
use hickory_proto::rr::TSigner;
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::tsig::TsigError;
use hickory_proto::rr::{Name, RData, Record, RecordSet, RecordType};

use super::lookup::{ANSWER_LIMIT, Answer, exchange, question, rcode_name};
use super::tsig_key;
use super::{DnsError, UpdateRefused};
use crate::acme_client::config::Rfc2136Config;

/// The TTL of the records written: short, so a resolver does not hold a stale value
/// through the next renewal.
const RECORD_TTL: u32 = 60;

/// The zone's primary and the key it takes updates signed with.
pub(super) struct Primary {
    server: SocketAddr,
    key_name: String,
    secret_file: PathBuf,
    signer: TSigner,
}

impl std::fmt::Debug for Primary {
    // The signer holds the secret: it is left out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Primary")
            .field("server", &self.server)
            .field("key_name", &self.key_name)
            .field("secret_file", &self.secret_file)
            .finish_non_exhaustive()
    }
}

/// The two changes a dns-01 solver makes.
#[derive(Clone, Copy)]
enum Change {
    Add,
    Delete,
}

impl Primary {
    /// Reads the key's secret file now, so a bad one fails at startup.
    pub(super) fn new(config: &Rfc2136Config, base_dir: &Path) -> Result<Primary, DnsError> {
        let secret_file = base_dir.join(&config.key_secret_file);
        let signer = tsig_key::load(&config.key_name, &config.key_algorithm, &secret_file)?;
        Ok(Primary { server: config.server, key_name: config.key_name.clone(), secret_file, signer })
    }

    pub(super) fn server(&self) -> SocketAddr {
        self.server
    }

    /// Adds the TXT RR `value` at `record`.
    pub(super) async fn add(&self, record: &Name, value: &str) -> Result<(), DnsError> {
        self.update(Change::Add, record, value).await
    }

    /// Deletes the TXT RR `value` at `record`; other values there stay.
    pub(super) async fn delete(&self, record: &Name, value: &str) -> Result<(), DnsError> {
        self.update(Change::Delete, record, value).await
    }

    async fn update(&self, change: Change, record: &Name, value: &str) -> Result<(), DnsError> {
        let zone = self.find_zone(record).await?;
        let rr = Record::from_rdata(record.clone(), RECORD_TTL, RData::TXT(TXT::new(vec![value.to_owned()])));
        let rrset = RecordSet::from(rr);
        let mut request = match change {
            Change::Add => update_message::append(rrset, zone.clone(), false, false),
            Change::Delete => update_message::delete_by_rdata(rrset, zone.clone(), false),
        };
        let what = match change {
            Change::Add => "add",
            Change::Delete => "delete",
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let verifier = request
            .finalize(&self.signer, now)
            .map_err(|e| self.no_answer(format!("the UPDATE of {record}"), format!("cannot sign it: {e}")))?;
        let answer = exchange(self.server, &request, ANSWER_LIMIT)
            .await
            .map_err(|reason| self.no_answer(format!("the UPDATE ({what} TXT) of {record}"), reason))?;
        self.judge(&answer, verifier, record, &zone)?;
        tracing::info!(
            server = %self.server, record = %record, zone = %zone, key = %self.key_name,
            "dns-01 record: {what} TXT"
        );
        Ok(())
    }

    /// The zone holding `record` at the primary, walking up from `record` itself.
    async fn find_zone(&self, record: &Name) -> Result<Name, DnsError> {
        let mut last_rcode = ResponseCode::Refused;
        let mut candidate = record.clone();
        while !candidate.is_root() {
            let answer = exchange(self.server, &question(&candidate, RecordType::SOA), ANSWER_LIMIT)
                .await
                .map_err(|reason| self.no_answer(format!("the SOA question for {candidate}"), reason))?;
            let m = &answer.message;
            if m.metadata.authoritative && matches!(m.response_code, ResponseCode::NoError | ResponseCode::NXDomain) {
                let apex = m.answers.iter().chain(&m.authorities).find_map(|r| match r.data {
                    RData::SOA(_) if r.name.zone_of(&candidate) => Some(r.name.clone()),
                    _ => None,
                });
                if let Some(zone) = apex {
                    return Ok(zone);
                }
            }
            last_rcode = m.response_code;
            candidate = candidate.base_name();
        }
        Err(DnsError::ZoneNotFound {
            server: self.server,
            record: record.to_ascii(),
            key: self.key_name.clone(),
            rcode: rcode_name(last_rcode),
        })
    }

    /// `Ok` when the primary applied the update and said so under the key's signature.
    fn judge(
        &self,
        answer: &Answer,
        verifier: Option<hickory_proto::rr::TSigVerifier>,
        record: &Name,
        zone: &Name,
    ) -> Result<(), DnsError> {
        let rcode = answer.message.response_code;
        let tsig_error = answer.message.signature().and_then(|s| s.data.error);
        if rcode == ResponseCode::NoError && tsig_error.is_none() {
            let verified = match verifier {
                Some(mut verifier) => verifier.verify(&answer.bytes).map(drop).map_err(|e| e.to_string()),
                None => Err("the request was not signed".to_owned()),
            };
            return verified.map_err(|reason| DnsError::UnsignedAnswer {
                server: self.server,
                record: record.to_ascii(),
                key: self.key_name.clone(),
                reason,
            });
        }
        // An error answer is not verified: a forged one can only make this fail, which
        // dropping the answer would too.
        let (rcode, hint) = self.explain(rcode, tsig_error, record, zone);
        Err(DnsError::UpdateRefused(Box::new(UpdateRefused {
            server: self.server,
            record: record.to_ascii(),
            zone: zone.to_ascii(),
            key: self.key_name.clone(),
            rcode,
            hint,
        })))
    }

    /// The rcode as an operator reads it, and what to check.
    fn explain(
        &self,
        rcode: ResponseCode,
        tsig_error: Option<TsigError>,
        record: &Name,
        zone: &Name,
    ) -> (String, String) {
        let key = &self.key_name;
        let server = self.server;
        let file = self.secret_file.display();
        if let Some(error) = tsig_error {
            let (name, hint) = match error {
                TsigError::BadSig => (
                    "BADSIG".to_owned(),
                    format!(
                        "the secret in {file} does not match the server's key {key}: copy the key's secret from named.conf"
                    ),
                ),
                TsigError::BadKey => (
                    "BADKEY".to_owned(),
                    format!(
                        "{server} does not know key {key} with algorithm {}: check key_name and key_algorithm against \
                         the server's `key` statement",
                        self.signer.algorithm()
                    ),
                ),
                TsigError::BadTime => (
                    "BADTIME".to_owned(),
                    format!(
                        "the clocks of this host and {server} differ by more than 5 minutes: synchronize them (NTP)"
                    ),
                ),
                other => (format!("{other:?}"), "see the server's log".to_owned()),
            };
            return (format!("{} (TSIG {name})", rcode_name(rcode)), hint);
        }
        let hint = match rcode {
            ResponseCode::Refused => format!(
                "check that zone {zone}'s update-policy grants key {key} TXT at {record} \
                 (`grant {key} name {record} TXT;` or a wildcard above it)"
            ),
            ResponseCode::NotAuth => {
                format!("{server} is not the primary of zone {zone}: set `server` to the zone's primary")
            }
            ResponseCode::NotZone => {
                format!("{record} is not in zone {zone} at {server}: is the name delegated to another zone?")
            }
            ResponseCode::ServFail => format!("{server} failed to apply it: see the server's log"),
            _ => "see the server's log".to_owned(),
        };
        (rcode_name(rcode), hint)
    }

    fn no_answer(&self, what: String, reason: String) -> DnsError {
        DnsError::NoAnswer { server: self.server, what, key: self.key_name.clone(), reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_message_keeps_the_other_values() {
        // A cleanup deletes one RR (class NONE), never the RRset (class ANY).
        let zone = Name::from_ascii("example.test.").unwrap();
        let record = Name::from_ascii("_acme-challenge.example.test.").unwrap();
        let rr = Record::from_rdata(record, 0, RData::TXT(TXT::new(vec!["v".into()])));
        let m: hickory_proto::op::Message = update_message::delete_by_rdata(RecordSet::from(rr), zone, false);
        let update = m.authorities.first().expect("one update RR");
        assert_eq!(update.dns_class, hickory_proto::rr::DNSClass::NONE);
    }
}
