//! Subject alternative names: parsing what users type (`DNS:x`, `IP:x`,
//! `email:x`, `URI:x`, or a bare value) and what CSRs carry, refusing
//! characters that have no place in a name, and matching names against the
//! patterns of a profile's policy. What a host name in a certificate may be is
//! [`crate::host`]'s.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::error::{Error, Result, shown};
use crate::host::{ends_in_number, host_name, ip_literal, looks_like_ipv6};

/// One subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubjectAltName {
    /// A DNS name, possibly a wildcard (`*.example.com`).
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
    /// An RFC 822 email address.
    Email(String),
    /// A URI (SPIFFE IDs, for instance).
    Uri(String),
}

impl SubjectAltName {
    /// The prefix used in text form (`DNS`, `IP`, `email`, `URI`), as openssl prints it.
    pub fn kind(&self) -> &'static str {
        match self {
            SubjectAltName::Dns(_) => "DNS",
            SubjectAltName::Ip(_) => "IP",
            SubjectAltName::Email(_) => "email",
            SubjectAltName::Uri(_) => "URI",
        }
    }

    /// Parses `DNS:x`, `IP:x`, `email:x`, `URI:x` (prefix case-insensitive), or a bare
    /// value: an IP if it parses as one (IPv6 also in brackets), URI if it has `://`, email
    /// if it has `@`, an IP address attempt if it looks like one, else DNS. Any other
    /// `WORD:` prefix is an unknown SAN type, and a number after the colon a port.
    pub fn parse(input: &str) -> Result<Self> {
        let input = input.trim();
        if let Some(addr) = ip_literal(input) {
            return Ok(SubjectAltName::Ip(addr));
        }
        if let Some((prefix, value)) = input.split_once(':')
            && !value.starts_with("//")
        {
            let value = value.trim();
            match prefix.to_ascii_lowercase().as_str() {
                "dns" => return dns(value),
                "ip" | "ip address" => return ip(value),
                "email" | "rfc822" => return email(value),
                "uri" => return uri(value),
                _ if looks_like_ipv6(input) => return ip(input),
                _ if !value.is_empty() && value.chars().all(|c| c.is_ascii_digit()) => {
                    return Err(invalid(
                        input,
                        SAN,
                        format!("a certificate names a host without its port; leave out ':{value}'"),
                    ));
                }
                _ if is_type_word(prefix) => {
                    return Err(invalid(
                        input,
                        SAN,
                        format!("unknown SAN type {}; use DNS:, IP:, email: or URI:", shown(prefix)),
                    ));
                }
                _ => {}
            }
        }
        if input.contains("://") {
            uri(input)
        } else if input.contains('@') {
            email(input)
        } else if looks_like_ipv6(input) || ends_in_number(input) {
            ip(input)
        } else {
            dns(input)
        }
    }

    /// Checks a name built without [`parse`](Self::parse) as `parse` would, so that
    /// nothing malformed is signed whichever way a request was put together.
    pub(crate) fn check(&self) -> Result<()> {
        match self {
            SubjectAltName::Dns(v) => match dns(v)? {
                SubjectAltName::Dns(canonical) if canonical.eq_ignore_ascii_case(v) => Ok(()),
                canonical => Err(invalid(v, DNS, format!("a certificate carries it as {canonical}; give that form"))),
            },
            SubjectAltName::Ip(_) => Ok(()),
            SubjectAltName::Email(v) => email(v).map(drop),
            SubjectAltName::Uri(v) => uri(v).map(drop),
        }
    }

    /// The rcgen form, for encoding.
    pub(crate) fn to_rcgen(&self) -> Result<rcgen::SanType> {
        let ia5 = |v: &str, kind| {
            rcgen::string::Ia5String::try_from(v).map_err(|_| invalid(v, kind, "only ASCII characters can be encoded"))
        };
        Ok(match self {
            SubjectAltName::Dns(v) => rcgen::SanType::DnsName(ia5(v, DNS)?),
            SubjectAltName::Ip(v) => rcgen::SanType::IpAddress(*v),
            SubjectAltName::Email(v) => rcgen::SanType::Rfc822Name(ia5(v, EMAIL)?),
            SubjectAltName::Uri(v) => rcgen::SanType::URI(ia5(v, URI)?),
        })
    }
}

impl fmt::Display for SubjectAltName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectAltName::Dns(v) | SubjectAltName::Email(v) | SubjectAltName::Uri(v) => {
                write!(f, "{}:{v}", self.kind())
            }
            SubjectAltName::Ip(v) => write!(f, "IP:{v}"),
        }
    }
}

impl FromStr for SubjectAltName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        SubjectAltName::parse(s)
    }
}

const SAN: &str = "subject alternative name";
const DNS: &str = "DNS name";
const IP: &str = "IP address";
const EMAIL: &str = "email address";
const URI: &str = "URI";

fn invalid(value: &str, kind: &'static str, why: impl Into<String>) -> Error {
    Error::InvalidName { value: value.to_owned(), kind, why: why.into() }
}

/// A character as an error message names it; invisible ones by code point.
pub(crate) fn describe(c: char) -> String {
    match c {
        ' ' => "a space".to_owned(),
        c if c.is_control() => format!("the control character U+{:04X}", u32::from(c)),
        c if c.is_whitespace() => format!("the white space character U+{:04X}", u32::from(c)),
        c => format!("'{c}'"),
    }
}

/// Refuses a control character anywhere in a name or subject attribute (`kind`): none has
/// one, and copied into a header, a log line or a terminal it changes what the reader sees.
pub(crate) fn refuse_control(value: &str, kind: &'static str) -> Result<()> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => {
            Err(invalid(value, kind, format!("it contains {}, which no name may hold; leave it out", describe(c))))
        }
        None => Ok(()),
    }
}

/// Where `uri` breaks RFC 3986 (section 2 and 3), as a reason for an error message: a
/// character that is neither unreserved, a delimiter nor part of a `%XX` escape, a second
/// `#`, or `[` `]` outside the authority (where they enclose an IP literal). A URI may hold
/// `,` `;` `=` in its path legally; whether a profile certifies them is policy
/// ([`ProfilePolicy::check_name`](crate::ProfilePolicy::check_name)).
fn rfc3986_violation(uri: &str) -> Option<String> {
    let authority_end = uri.split_once(':').and_then(|(scheme, rest)| {
        let authority = rest.strip_prefix("//")?;
        Some(scheme.len() + 3 + authority.find(['/', '?', '#']).unwrap_or(authority.len()))
    });
    let bytes = uri.as_bytes();
    let mut fragment = false;
    for (i, c) in uri.char_indices() {
        let why = match c {
            c if c.is_ascii_alphanumeric() || "-._~:/?@!$&'()*+,;=".contains(c) => continue,
            '%' if bytes.get(i + 1..i + 3).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) => continue,
            '#' if !fragment => {
                fragment = true;
                continue;
            }
            '[' | ']' if authority_end.is_some_and(|end| i < end) => continue,
            '%' => "which RFC 3986 allows only to start a %XX escape; write a literal '%' as %25".to_owned(),
            '#' => "a second one, which RFC 3986 does not allow (the fragment starts at the first); write it as %23"
                .to_owned(),
            '[' | ']' => {
                "which RFC 3986 allows only around an IP literal host; percent-encode it (%5B, %5D)".to_owned()
            }
            c if c.is_ascii() => format!(
                "which RFC 3986 does not allow in a URI; percent-encode it as %{:02X} or leave it out",
                u32::from(c)
            ),
            _ => "which RFC 3986 does not allow in a URI; percent-encode its UTF-8 bytes or leave it out".to_owned(),
        };
        return Some(format!("it contains {}, {why}", describe(c)));
    }
    None
}

/// Whether `name` is a syntactically valid DNS name, a leftmost `*` label allowed: the
/// loose check of host patterns in the gateway's configuration, which match what clients
/// send (SNI, Host). What a certificate may name is stricter (pki's `host` module).
pub fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    name.split('.').enumerate().all(|(i, label)| {
        (i == 0 && label == "*")
            || (!label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    })
}

// The checks of one kind of name take the value as it is, untrimmed: [`SubjectAltName::parse`]
// trims what a person typed, a CSR's names are certified exactly as requested or not at all.

/// A DNS name, as a certificate may carry it: lowercase, an IDN as its A-label.
pub(crate) fn dns(value: &str) -> Result<SubjectAltName> {
    refuse_control(value, DNS)?;
    if let Some(addr) = ip_literal(value) {
        return Err(invalid(value, DNS, format!("it is an IP address, which a certificate names as IP:{addr}")));
    }
    host_name(value).map(SubjectAltName::Dns).map_err(|why| invalid(value, DNS, why))
}

/// Whether a `WORD:` prefix names a SAN type (`DNS`, `IP Address`, ...) rather than starting a value.
fn is_type_word(prefix: &str) -> bool {
    prefix.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-' || c == '_')
}

fn ip(value: &str) -> Result<SubjectAltName> {
    ip_literal(value).map(SubjectAltName::Ip).ok_or_else(|| {
        let why = if looks_like_ipv6(value) {
            "it is not an IPv6 address; give eight groups of hex digits separated by ':', '::' standing for \
             a run of zero groups, such as 2001:db8::1 (without a %zone)"
        } else if value.contains('.') && !value.contains(':') {
            "an IPv4 address is four numbers from 0 to 255 separated by dots, such as 10.1.2.3, without \
             leading zeros"
        } else {
            "give an IPv4 address such as 10.1.2.3 or an IPv6 address such as 2001:db8::1"
        };
        invalid(value, IP, why)
    })
}

/// An RFC 822 email address.
pub(crate) fn email(value: &str) -> Result<SubjectAltName> {
    refuse_control(value, EMAIL)?;
    match value.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && host_name(domain).is_ok_and(|d| d == domain.to_ascii_lowercase())
                && !domain.contains('*')
                && value.is_ascii()
                && !value.contains(char::is_whitespace) =>
        {
            Ok(SubjectAltName::Email(value.to_owned()))
        }
        _ => Err(invalid(value, EMAIL, "expected local@domain")),
    }
}

/// A URI, RFC 3986 syntax.
pub(crate) fn uri(value: &str) -> Result<SubjectAltName> {
    refuse_control(value, URI)?;
    let has_scheme = value.split_once(':').is_some_and(|(scheme, rest)| {
        !rest.is_empty()
            && scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if !has_scheme {
        return Err(invalid(value, URI, "expected scheme:rest, e.g. spiffe://example.org/service"));
    }
    if let Some(why) = rfc3986_violation(value) {
        return Err(invalid(value, URI, why));
    }
    Ok(SubjectAltName::Uri(value.to_owned()))
}

/// Matches a DNS name against a policy pattern: `*` (anything), an exact name,
/// or `*.example.com` (exactly one label under example.com, or that literal wildcard).
pub fn dns_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.trim().to_ascii_lowercase();
    if pattern == "*" {
        return true;
    }
    wildcard_matches(&pattern, name)
}

/// Whether `pattern`, an exact name or a `*.` wildcard standing for exactly one label,
/// covers `name` (both lowercase): `*.example.com` covers `www.example.com` and the literal
/// The reverse-DNS name of an address: `d.c.b.a.in-addr.arpa`, or the nibbles of an
/// IPv6 address under `ip6.arpa` (the SNI of tls-alpn-01 for an IP identifier, RFC 8738).
pub fn reverse_dns_name(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        std::net::IpAddr::V6(v6) => {
            let mut labels: Vec<String> = Vec::with_capacity(34);
            for byte in v6.octets().iter().rev() {
                labels.push(format!("{:x}", byte & 0xf));
                labels.push(format!("{:x}", byte >> 4));
            }
            format!("{}.ip6.arpa", labels.join("."))
        }
    }
}

/// `*.example.com`, not `example.com` nor `a.b.example.com` (RFC 6125 §6.4.3, as browsers match).
pub fn wildcard_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => name.split_once('.').is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        None => pattern == name,
    }
}

/// Matches text against a glob where `*` stands for any run of characters.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// An IP network in CIDR form, for IP SAN policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(*ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(*ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| format!("'{s}' is not an IP network (e.g. 10.0.0.0/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{s}' has a bad prefix length"))?,
        };
        Ok(IpNet { addr, prefix })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names_of_addresses() {
        assert_eq!(reverse_dns_name("10.1.2.3".parse().unwrap()), "3.2.1.10.in-addr.arpa");
        let v6 = reverse_dns_name("2001:db8::1".parse().unwrap());
        assert!(v6.starts_with("1.0.0.0.") && v6.ends_with(".8.b.d.0.1.0.0.2.ip6.arpa"), "{v6}");
    }

    #[test]
    fn parses_prefixed_and_bare_names() {
        assert_eq!(SubjectAltName::parse("DNS:Example.COM").unwrap(), SubjectAltName::Dns("example.com".into()));
        assert_eq!(SubjectAltName::parse("*.example.com").unwrap(), SubjectAltName::Dns("*.example.com".into()));
        assert_eq!(SubjectAltName::parse("127.0.0.1").unwrap().to_string(), "IP:127.0.0.1");
        assert_eq!(SubjectAltName::parse("IP:::1").unwrap().to_string(), "IP:::1");
        assert_eq!(SubjectAltName::parse("a@b.example").unwrap().to_string(), "email:a@b.example");
        assert_eq!(SubjectAltName::parse("spiffe://td/svc").unwrap().to_string(), "URI:spiffe://td/svc");
        assert!(SubjectAltName::parse("DNS:foo..bar").is_err());
        assert!(SubjectAltName::parse("DNS:a.*.b").is_err());
        assert!(SubjectAltName::parse("email:nobody").is_err());
        assert!(SubjectAltName::parse("IP:1.2.3").is_err());
    }

    #[test]
    fn uris_follow_rfc3986() {
        for ok in [
            "spiffe://example.org/ns/prod/sa/web",
            "https://[::1]:8443/a?b=c&d=e#f",
            "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
            "https://example.org/a%20b;v=1,2",
            "mailto:alice@example.org",
        ] {
            assert_eq!(SubjectAltName::parse(&format!("URI:{ok}")).unwrap(), SubjectAltName::Uri(ok.into()), "{ok}");
        }
        for (bad, named) in [
            ("spiffe://t/a b", "a space"),
            ("spiffe://t/\"admin\"", "'\"'"),
            ("spiffe://t/a\u{7}", "U+0007"),
            ("spiffe://t/a\r\nX-Evil: 1", "U+000D"),
            ("spiffe://t/caf\u{e9}", "'\u{e9}'"),
            ("spiffe://t/a%2", "'%'"),
            ("spiffe://t/a%zz", "'%'"),
            ("spiffe://t/a#b#c", "'#'"),
            ("spiffe://t/[x]", "'['"),
            ("spiffe://t/a|b", "'|'"),
            ("spiffe://t/a\\b", "'\\'"),
            ("spiffe://t/{a}", "'{'"),
        ] {
            let err = SubjectAltName::parse(&format!("URI:{bad}")).unwrap_err();
            assert!(matches!(err, Error::InvalidName { kind: "URI", .. }), "{bad}: {err:?}");
            let msg = err.to_string();
            assert!(msg.contains(named), "{bad}: the message must name the character {named}: {msg}");
            assert!(!msg.chars().any(char::is_control), "{bad}: control characters must be escaped: {msg:?}");
        }
    }

    #[test]
    fn control_characters_are_refused_untrimmed_names_are_not_guessed() {
        assert!(SubjectAltName::parse("email:a\u{7}b@example.org").is_err());
        assert!(SubjectAltName::parse("DNS:a\u{0}.example.org").is_err());
        // Typed input is trimmed; the value a CSR carries is taken as it is.
        assert!(SubjectAltName::parse(" URI: spiffe://t/x ").is_ok());
        assert!(uri("spiffe://t/x\n").is_err());
        assert!(dns(" a.example").is_err());
        assert!(email("a@example.org ").is_err());
        assert!(SubjectAltName::Uri("spiffe://t/a b".into()).check().is_err());
        assert!(SubjectAltName::Uri("spiffe://t/a".into()).check().is_ok());
    }

    fn refusal(input: &str) -> (&'static str, String) {
        match SubjectAltName::parse(input) {
            Err(Error::InvalidName { kind, why, .. }) => (kind, why),
            other => panic!("{input:?} should be refused as a name, got {other:?}"),
        }
    }

    #[test]
    fn ip_literals_are_ip_names_and_ipv4_attempts_are_refused() {
        for (input, want) in [
            ("10.1.2.3", "IP:10.1.2.3"),
            ("2001:db8::1", "IP:2001:db8::1"),
            ("[2001:db8::1]", "IP:2001:db8::1"),
            ("fe80::1", "IP:fe80::1"),
            ("IP:[::1]", "IP:::1"),
        ] {
            assert_eq!(SubjectAltName::parse(input).unwrap().to_string(), want, "{input}");
        }
        // The WHATWG rule: a last label that is a number makes the name an IPv4 attempt.
        for input in ["999.1.1.1", "1.2.3", "10.1.2.3.4", "010.1.2.3", "host.0x1f", "DNS:999.1.1.1", "a.b.123"] {
            let (_, why) = refusal(input);
            assert!(why.contains("10.1.2.3") && (why.contains("IPv4") || why.contains("0 to 255")), "{input}: {why}");
        }
        let (kind, why) = refusal("DNS:10.1.2.3");
        assert_eq!(kind, DNS);
        assert!(why.contains("IP:10.1.2.3"), "{why}");
        assert_eq!(refusal("2001:db8::zz").0, IP);
        assert_eq!(refusal("fe80::1%eth0").0, IP);
    }

    #[test]
    fn unknown_types_and_ports_are_named_as_such() {
        let (kind, why) = refusal("FOO:bar");
        assert_eq!(kind, SAN);
        assert_eq!(why, "unknown SAN type FOO; use DNS:, IP:, email: or URI:");
        assert!(refusal("mailto:alice@example.org").1.starts_with("unknown SAN type mailto;"));
        assert!(refusal("www.example.com:8443").1.contains("leave out ':8443'"));
        // A URI without the prefix still reads as one; "IP Address:" is openssl's spelling.
        assert!(matches!(SubjectAltName::parse("spiffe://td/x"), Ok(SubjectAltName::Uri(_))));
        assert!(matches!(SubjectAltName::parse("IP Address:10.0.0.1"), Ok(SubjectAltName::Ip(_))));
    }

    #[test]
    fn host_names_follow_the_stated_rules() {
        let dns_of = |input: &str| match SubjectAltName::parse(input) {
            Ok(SubjectAltName::Dns(name)) => name,
            other => panic!("{input}: {other:?}"),
        };
        assert_eq!(dns_of("bücher.example"), "xn--bcher-kva.example");
        assert_eq!(dns_of("DNS:BÜCHER.Example"), "xn--bcher-kva.example");
        assert_eq!(dns_of("xn--bcher-kva.example"), "xn--bcher-kva.example");
        assert_eq!(dns_of("*.bücher.example"), "*.xn--bcher-kva.example");
        assert_eq!(dns_of("db"), "db", "a single label asked for as a SAN is certified");
        assert_eq!(dns_of("localhost"), "localhost");
        assert_eq!(dns_of("a-b.example"), "a-b.example");
        for (input, named) in [
            ("foo_bar.example.com", "use a hyphen instead"),
            ("hello world", "a space"),
            ("example.com.", "trailing dot"),
            ("a..example", "empty label"),
            ("-a.example", "hyphen"),
            ("f*.example.com", "whole leftmost label"),
            ("a.*.example.com", "whole leftmost label"),
            ("*", "whole leftmost label"),
            ("*.com", "two or more labels"),
            ("xn--zz.example", "internationalized"),
            ("\u{2603}\u{fe0f}.", "trailing dot"),
        ] {
            let (kind, why) = refusal(&format!("DNS:{input}"));
            assert_eq!(kind, DNS, "{input}");
            assert!(why.contains(named), "{input}: {why}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(refusal(&long_label).1.contains("at most 63"));
    }

    #[test]
    fn an_error_quotes_a_huge_value_only_in_part() {
        let huge = format!("{}.example", "a_".repeat(500_000));
        let message = SubjectAltName::parse(&huge).unwrap_err().to_string();
        assert!(message.len() < 400, "{} bytes", message.len());
        assert!(message.contains("characters)") && message.contains("at most 253"), "{message}");
    }

    #[test]
    fn dns_patterns() {
        assert!(dns_matches("*", "anything.example"));
        assert!(dns_matches("*.example.com", "www.example.com"));
        assert!(dns_matches("*.example.com", "*.example.com"));
        assert!(!dns_matches("*.example.com", "a.b.example.com"));
        assert!(!dns_matches("*.example.com", "example.com"));
        assert!(!dns_matches("*.example.com", "evilexample.com"));
        assert!(dns_matches("example.com", "example.com"));
    }

    #[test]
    fn globs_and_networks() {
        assert!(glob_matches("*@example.com", "alice@example.com"));
        assert!(!glob_matches("*@example.com", "alice@example.org"));
        assert!(glob_matches("spiffe://td/*", "spiffe://td/a/b"));
        assert!(glob_matches("a*b*c", "axxbyyc"));
        assert!(!glob_matches("a*b*c", "ac"));
        let net: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(&"10.1.2.3".parse().unwrap()));
        assert!(!net.contains(&"11.0.0.1".parse().unwrap()));
        assert!("::/0".parse::<IpNet>().unwrap().contains(&"::1".parse().unwrap()));
        assert!("0.0.0.0/0".parse::<IpNet>().unwrap().contains(&"8.8.8.8".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpNet>().is_err());
    }
}
