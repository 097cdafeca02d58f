//! Asking DNS servers directly: one message to one server over TCP, the zone's
//! authoritative servers found through the system resolver, and waiting until all of
//! them answer a TXT value.
//!
//! The servers are asked directly, not through a recursive resolver, so no cache can
//! hide a record that was just written, and "visible" means what the CA will see.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::xfer::DnsStreamHandle;
use hickory_proto::op::{Message, MessageType, Query, ResponseCode, SerialMessage};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::ResolverOpts;

use super::DnsError;

/// How long one question may wait for its answer.
pub(super) const ANSWER_LIMIT: Duration = Duration::from_secs(5);
/// How often the authoritative servers are asked for a record that is not there yet.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// How long finding a zone's servers through the system resolver may take: a private
/// zone the resolver cannot see must not hold up the order for long.
const DISCOVERY_LIMIT: Duration = Duration::from_secs(4);

/// An answer and the bytes it came in (which its TSIG covers).
pub(super) struct Answer {
    pub message: Message,
    pub bytes: Vec<u8>,
}

/// Sends `request` to `server` over TCP and returns the answer with the same id;
/// `Err` says why there is none.
pub(super) async fn exchange(server: SocketAddr, request: &Message, limit: Duration) -> Result<Answer, String> {
    let bytes = request.to_vec().map_err(|e| format!("cannot encode the message: {e}"))?;
    let attempt = async {
        let (connect, mut handle) = TcpClientStream::new(server, None, Some(limit), TokioRuntimeProvider::default());
        let mut stream = connect.await.map_err(|e| format!("cannot connect: {e}"))?;
        handle.send(SerialMessage::new(bytes, server)).map_err(|e| format!("cannot send: {e}"))?;
        while let Some(reply) = stream.next().await {
            let (bytes, _) = reply.map_err(|e| e.to_string())?.into_parts();
            let message = Message::from_vec(&bytes).map_err(|e| format!("undecodable answer: {e}"))?;
            if message.id == request.id && message.message_type == MessageType::Response {
                return Ok(Answer { message, bytes });
            }
        }
        Err("the connection closed before an answer came".to_owned())
    };
    tokio::time::timeout(limit, attempt).await.map_err(|_| format!("no answer within {}s", limit.as_secs()))?
}

/// A non-recursive question for `name`'s `rtype` records, as a primary is asked.
pub(super) fn question(name: &Name, rtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = false;
    message.add_query(Query::query(name.clone(), rtype));
    message
}

/// The RFC 1035 / 2136 / 8945 mnemonic of an rcode, as dig and named's log spell it.
pub(super) fn rcode_name(rcode: ResponseCode) -> String {
    match rcode {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::YXDomain => "YXDOMAIN".into(),
        ResponseCode::YXRRSet => "YXRRSET".into(),
        ResponseCode::NXRRSet => "NXRRSET".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::NotZone => "NOTZONE".into(),
        other => format!("{} ({})", other.to_str(), u16::from(other)),
    }
}

/// Whether the TXT records of `answer` hold `value` (a record's strings joined, RFC 7208 style).
fn holds_value(answer: &Message, value: &str) -> bool {
    answer.answers.iter().any(|r| match &r.data {
        RData::TXT(txt) => txt.txt_data.concat() == value.as_bytes(),
        _ => false,
    })
}

/// Asks every server in `servers` for the TXT records at `record` every [`POLL_EVERY`]
/// until all of them answer with `value`, or `timeout` after `started` passes.
pub(super) async fn wait_visible(
    servers: &[SocketAddr],
    record: &Name,
    value: &str,
    started: Instant,
    timeout: Duration,
) -> Result<(), DnsError> {
    let deadline = started + timeout;
    // The servers that have not answered the value yet, with what each said last.
    let mut pending: Vec<(SocketAddr, String)> = servers.iter().map(|s| (*s, "not asked".to_owned())).collect();
    loop {
        for (server, said) in pending.iter_mut() {
            let limit = ANSWER_LIMIT.min(deadline.saturating_duration_since(Instant::now())).max(POLL_EVERY);
            *said = match exchange(*server, &question(record, RecordType::TXT), limit).await {
                Ok(a) if holds_value(&a.message, value) => String::new(),
                Ok(a) if a.message.response_code == ResponseCode::NoError => {
                    format!("answered {} other TXT values", a.message.answers.len())
                }
                Ok(a) => format!("answered {}", rcode_name(a.message.response_code)),
                Err(e) => e,
            };
        }
        pending.retain(|(_, said)| !said.is_empty());
        if pending.is_empty() {
            tracing::debug!(record = %record, servers = ?servers, "the dns-01 record is visible");
            return Ok(());
        }
        if Instant::now() + POLL_EVERY > deadline {
            let looked = pending.iter().map(|(server, said)| format!("{server} ({said})")).collect::<Vec<_>>();
            return Err(DnsError::NotVisible { record: record.to_ascii(), looked: looked.join(", "), timeout });
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The addresses (port 53) of the name servers of the zone holding `record`, found through
/// the system resolver: the SOA walking up from `record`, then the zone's NS and their
/// addresses. `Err` says why there are none, within [`DISCOVERY_LIMIT`].
pub(super) async fn authoritative_servers(record: &Name) -> Result<Vec<SocketAddr>, String> {
    match tokio::time::timeout(DISCOVERY_LIMIT, discover(record)).await {
        Ok(found) => found,
        Err(_) => {
            Err(format!("the system resolver found no name servers for it within {}s", DISCOVERY_LIMIT.as_secs()))
        }
    }
}

async fn discover(record: &Name) -> Result<Vec<SocketAddr>, String> {
    let mut builder =
        TokioResolver::builder_tokio().map_err(|e| format!("cannot read the system's DNS configuration: {e}"))?;
    let options: &mut ResolverOpts = builder.options_mut();
    options.cache_size = 0;
    options.timeout = Duration::from_secs(2);
    options.attempts = 1;
    let resolver = builder.build().map_err(|e| format!("cannot set up the system resolver: {e}"))?;

    let mut zone = None;
    let mut candidate = record.clone();
    while !candidate.is_root() {
        if let Ok(soa) = resolver.lookup(candidate.clone(), RecordType::SOA).await
            && soa.answers().iter().any(|r| matches!(r.data, RData::SOA(_)) && r.name == candidate)
        {
            zone = Some(candidate);
            break;
        }
        candidate = candidate.base_name();
    }
    let zone = zone.ok_or("the system resolver knows no zone (SOA) holding it")?;

    let ns =
        resolver.lookup(zone.clone(), RecordType::NS).await.map_err(|e| format!("no NS records for {zone}: {e}"))?;
    let mut servers = Vec::new();
    for host in ns.answers().iter().filter_map(|r| match &r.data {
        RData::NS(ns) => Some(ns.0.clone()),
        _ => None,
    }) {
        if let Ok(ips) = resolver.lookup_ip(host).await {
            servers.extend(ips.iter().map(|ip: IpAddr| SocketAddr::new(ip, 53)));
        }
    }
    servers.sort();
    servers.dedup();
    if servers.is_empty() {
        return Err(format!("no addresses for the name servers of zone {zone}"));
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_server_that_never_answers_is_named_when_the_time_is_up() {
        // The kernel accepts the connection; nothing ever answers on it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = listener.local_addr().unwrap();
        let record = Name::from_ascii("_acme-challenge.x.example.test.").unwrap();
        let e = wait_visible(&[server], &record, "v", Instant::now(), Duration::from_secs(1)).await.unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, DnsError::NotVisible { .. }), "{m}");
        assert!(m.contains("never became visible") && m.contains(&server.to_string()), "{m}");
        assert!(m.contains("_acme-challenge.x.example.test."), "{m}");
    }
}
