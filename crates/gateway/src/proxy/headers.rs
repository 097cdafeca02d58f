//! What crosses the gateway to the origin and back: the request's headers rewritten
//! for the upstream (phase 3) and the response's for the client (phase 5).

use http::Request;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::Authority;
use hyper::body::Incoming;

use super::Connection;
use crate::identity::{is_spoofable, strip_spoofable};
use crate::sites::Site;
use crate::target::host_of;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Phase 3: headers for the upstream. Host is the authority that was
/// checked, whatever the client sent; an upgrade is kept only for WebSocket.
pub fn upstream_request(
    conn: &Connection,
    req: &mut Request<Incoming>,
    authority: &Authority,
    id: HeaderValue,
    websocket: bool,
) {
    let headers = req.headers_mut();
    // The usual request already says exactly the checked authority: its Host is kept as it is.
    let host_as_checked = headers.get(header::HOST).filter(|v| v.as_bytes() == authority.as_str().as_bytes()).cloned();
    let upgrade = if websocket { headers.get(header::UPGRADE).cloned() } else { None };
    remove_hop_by_hop(headers, true);
    if let Some(protocol) = upgrade {
        headers.insert(header::UPGRADE, protocol);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    conn.identity.apply(headers);
    headers.insert(X_FORWARDED_FOR.clone(), conn.forwarded_for.clone());
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
    let host_as_checked_kept = host_as_checked.is_some();
    let authority_value = host_as_checked.unwrap_or_else(|| {
        HeaderValue::from_str(authority.as_str()).expect("a parsed authority is a valid header value")
    });
    let host = host_of(authority);
    let host_value = if host.len() == authority.as_str().len() {
        authority_value.clone()
    } else {
        HeaderValue::from_str(host).expect("a parsed host is a valid header value")
    };
    headers.insert(X_FORWARDED_HOST.clone(), host_value);
    headers.insert(X_REQUEST_ID.clone(), id);
    if !host_as_checked_kept {
        headers.insert(header::HOST, authority_value);
    }
    *req.version_mut() = http::Version::HTTP_11;
}

/// Phase 5: response headers for the client.
///
/// For an HTTP/2 client the values are copied out of the origin
/// connection's read buffer: HPACK keeps header values in its table for the
/// life of the connection, and each would keep a whole buffer (8 KiB or
/// more) of the origin connection alive with it.
pub fn response_filter(site: &Site, headers: &mut HeaderMap, h2: bool) {
    remove_hop_by_hop(headers, false);
    if h2 {
        for value in headers.values_mut() {
            let sensitive = value.is_sensitive();
            if let Ok(mut copy) = HeaderValue::from_bytes(value.as_bytes()) {
                copy.set_sensitive(sensitive);
                *value = copy;
            }
        }
    }
    if let Some(hsts) = &site.hsts {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
}

static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    // The h2c upgrade's settings: never forwarded, as h2c is not.
    HeaderName::from_static("http2-settings"),
];

/// Removes the hop-by-hop headers, those `Connection` names, and, for a
/// request (`spoofable`), the identity headers only the gateway may set.
fn remove_hop_by_hop(headers: &mut HeaderMap, spoofable: bool) {
    // One pass over the names decides; most messages have none of these.
    let found = headers.keys().any(|name| HOP_BY_HOP.contains(name) || (spoofable && is_spoofable(name)));
    if !found {
        return;
    }
    // Names listed in Connection are hop-by-hop too.
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if spoofable {
        strip_spoofable(headers);
    }
}
