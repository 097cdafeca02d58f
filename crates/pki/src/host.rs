//! What a certificate may name as a host, by the rules browsers apply:
//! - an IP address is an IP SAN; a name whose last label is a number (`999.1.1.1`,
//!   `10.1.2.3.`) is read by browsers as an IPv4 address (WHATWG URL, "ends in a number"),
//!   so it is refused as a DNS name;
//! - labels hold letters, digits and hyphens (RFC 5280's preferred name syntax), no
//!   hyphen first or last, at most 63 characters, 253 in all, no trailing dot;
//! - an underscore is refused: the CA/Browser Forum's rules forbid it in DNS SANs since
//!   2019, and the error says to use a hyphen;
//! - an internationalized name (`bücher.example`) is certified as its A-label
//!   (`xn--bcher-kva.example`, UTS #46 via the `idna` crate), or refused when it is not one;
//! - `*` only as the whole leftmost label, over at least two labels (`*.example.com`);
//! - a single label (`db`) is certified when asked for as a SAN (`--san DNS:db`, for
//!   hosts on a private network); as a server certificate's CN it names no host unless
//!   it is `localhost` (see [`server_cn`]).

use std::net::IpAddr;

use crate::error::{Error, Result, shown};
use crate::name::{SubjectAltName, describe};

/// Longest DNS name (RFC 1035: 255 octets on the wire, 253 characters in text).
const MAX_DNS_NAME: usize = 253;
/// Longest DNS label (RFC 1035).
const MAX_LABEL: usize = 63;

/// `value` as a certificate's DNS name (lowercase, A-labels), or why it cannot be one.
pub(crate) fn host_name(value: &str) -> std::result::Result<String, String> {
    let length = value.chars().count();
    if value.is_empty() {
        return Err("it is empty; give a host name such as www.example.com".to_owned());
    }
    if length > MAX_DNS_NAME {
        return Err(format!("it is {length} characters long, and a DNS name has at most {MAX_DNS_NAME}"));
    }
    if value.ends_with('.') {
        return Err("it ends with '.'; give the name without the trailing dot of the DNS root".to_owned());
    }
    let lower = value.to_ascii_lowercase();
    let (wildcard, rest) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    if rest.contains('*') || lower == "*" {
        return Err(
            "'*' may only be the whole leftmost label of a name of two or more labels, as in *.example.com".to_owned()
        );
    }
    if let Some(c) = rest.chars().find(|c| c.is_ascii() && !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.')) {
        return Err(match c {
            '_' => "it contains '_', which the CA/Browser Forum's rules forbid in certificate host names since 2019 \
                    (letters, digits and hyphens only); use a hyphen instead"
                .to_owned(),
            ':' => "it contains ':', which no host name holds; give an IPv6 address as IP:ADDRESS, and a host \
                    without its port"
                .to_owned(),
            c => format!(
                "it contains {}; a host name holds only letters, digits and hyphens in dot-separated labels",
                describe(c)
            ),
        });
    }
    // UTS #46, the processing browsers apply: maps an IDN to its A-label and checks it, and
    // checks labels that already are A-labels (xn--).
    let ascii = idna::uts46::Uts46::new()
        .to_ascii(
            rest.as_bytes(),
            idna::uts46::AsciiDenyList::STD3,
            idna::uts46::Hyphens::Allow,
            idna::uts46::DnsLength::Ignore,
        )
        .map_err(|_| {
            "it is not a valid internationalized domain name (UTS #46); check its spelling, or give the \
             A-label (xn--...) form its registrar shows"
                .to_owned()
        })?;
    for label in ascii.split('.') {
        if label.is_empty() {
            return Err("it has an empty label (two dots in a row, or a dot first)".to_owned());
        }
        if label.len() > MAX_LABEL {
            return Err(format!(
                "its label '{}' is {} characters long, and a DNS label has at most {MAX_LABEL}",
                shown(label),
                label.len()
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "its label '{}' starts or ends with a hyphen, which no host name label may",
                shown(label)
            ));
        }
    }
    if ascii.len() > MAX_DNS_NAME {
        return Err(format!(
            "its A-label form is {} characters long, and a DNS name has at most {MAX_DNS_NAME}",
            ascii.len()
        ));
    }
    if ends_in_number(&ascii) {
        return Err(IPV4_ATTEMPT.to_owned());
    }
    if wildcard && !ascii.contains('.') {
        return Err(
            "a wildcard stands for one label under a name of two or more labels, as in *.example.com".to_owned()
        );
    }
    Ok(if wildcard { format!("*.{ascii}") } else { ascii.into_owned() })
}

/// Why a name that ends in a number is neither a host name nor an IP address.
const IPV4_ATTEMPT: &str = "its last label is a number, so browsers read it as an IPv4 address, and it is not \
                            one; give four numbers from 0 to 255 such as 10.1.2.3 (IP:ADDRESS), or a host \
                            name whose last label has a letter";

/// Whether browsers parse `host` as an IPv4 address: its last label (a trailing dot
/// aside) is a decimal number or a `0x` hex number (WHATWG URL, "ends in a number checker").
pub(crate) fn ends_in_number(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let last = host.rsplit('.').next().unwrap_or(host);
    let hex = last.strip_prefix("0x").or_else(|| last.strip_prefix("0X"));
    (!last.is_empty() && last.chars().all(|c| c.is_ascii_digit()))
        || hex.is_some_and(|h| h.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Whether `value` was meant as an IPv6 address: two colons or more between letters and
/// digits (a `%zone` aside).
pub(crate) fn looks_like_ipv6(value: &str) -> bool {
    let address = value.split('%').next().unwrap_or(value);
    let address = address.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(address);
    address.matches(':').count() >= 2 && address.chars().all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '.')
}

/// An IP address as people write it: dotted IPv4, IPv6, or IPv6 in brackets (`[::1]`).
pub(crate) fn ip_literal(value: &str) -> Option<IpAddr> {
    match value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6),
        None => value.parse().ok(),
    }
}

/// What the common name of a server certificate names (see [`server_cn`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CnName {
    /// A host, to be certified as this SAN.
    Host(SubjectAltName),
    /// A display name only, and why it names no host.
    Label(String),
}

/// What the CN of a server certificate names: an IP address (an IP SAN), `localhost`, or a
/// DNS name of two or more labels (a DNS SAN, an IDN as its A-label). A single label is a
/// display name here (browsers take a bare word for a search), as is anything that is not a
/// host name ('Internal Service'). A CN that reads as an IPv4 address and is none
/// (`999.1.1.1`) is refused, whatever else the request names.
pub(crate) fn server_cn(cn: &str) -> Result<CnName> {
    if let Some(addr) = ip_literal(cn) {
        return Ok(CnName::Host(SubjectAltName::Ip(addr)));
    }
    if cn.contains('.') && ends_in_number(cn) && cn.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-') {
        return Err(Error::InvalidName { value: cn.to_owned(), kind: "IP address", why: IPV4_ATTEMPT.to_owned() });
    }
    Ok(match host_name(cn) {
        Ok(name) if name.contains('.') || name == "localhost" => CnName::Host(SubjectAltName::Dns(name)),
        Ok(_) => CnName::Label(
            "it is a single label, which browsers do not take for a host name (localhost aside), so give the \
             full name such as NAME.example.com, or the single label as --san DNS:NAME"
                .to_owned(),
        ),
        Err(why) => CnName::Label(why),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_cn_names_a_host_or_is_a_display_name() {
        let host = |cn: &str| match server_cn(cn) {
            Ok(CnName::Host(san)) => san.to_string(),
            other => panic!("{cn}: {other:?}"),
        };
        assert_eq!(host("10.1.2.3"), "IP:10.1.2.3");
        assert_eq!(host("::1"), "IP:::1");
        assert_eq!(host("localhost"), "DNS:localhost");
        assert_eq!(host("WWW.Example.com"), "DNS:www.example.com");
        assert_eq!(host("bücher.example"), "DNS:xn--bcher-kva.example");
        for cn in ["single", "hello world", "Internal Service", "foo_bar.example"] {
            assert!(matches!(server_cn(cn), Ok(CnName::Label(_))), "{cn}");
        }
        assert!(matches!(server_cn("single"), Ok(CnName::Label(why)) if why.contains("single label")));
        assert!(server_cn("999.1.1.1").is_err());
    }
}
