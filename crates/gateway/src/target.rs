//! The request target the gateway decides on, which is the one it forwards:
//! the canonical path (RFC 3986 normalization, made strict) and the one
//! authority of a request (RFC 9112 3.2, RFC 9113 8.3.1).
//!
//! A route chosen on one spelling of a path or host and forwarded as another
//! is a way around the policy: `//admin`, `/x/../admin`, `/%61dmin` are all
//! `/admin` to nginx, Express or Rails. So the request is routed on its
//! canonical form and that same form is what the origin receives; whatever
//! cannot be made unambiguous is refused with 400 rather than guessed at.

use std::fmt;

use http::Uri;
use http::header::{self, HeaderMap, HeaderValue};
use http::uri::Authority;

use crate::labels::labelled;

/// Why a request target was refused (400). Its label (`path_encoded_slash`, ...) is the
/// access line's `refused` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetError {
    /// The path is not origin-form (`/...`): `*`, or empty.
    NotOriginForm,
    /// A `%` not followed by two hex digits.
    BadPercentEncoding,
    /// `%2F`: an encoded `/` means one thing to the gateway and another to many origins.
    EncodedSlash,
    /// A backslash, raw or `%5C`: Windows servers and some frameworks read it as `/`.
    Backslash,
    /// `%00` or another control character.
    ControlCharacter,
    /// The decoded path is not UTF-8.
    NotUtf8,
    /// `..` above the root.
    AboveRoot,
    /// A dot segment with parameters (`..;x`): Java servers strip the
    /// parameters and then apply the dot segment.
    DotSegmentWithParameters,
    /// No Host (HTTP/1.1) and no `:authority` (HTTP/2).
    MissingHost,
    /// More than one Host header.
    DuplicateHost,
    /// Host and `:authority` (or an absolute-form target) name different authorities.
    ConflictingHost,
    /// A Host that is not `host[:port]`.
    BadHost,
}

labelled! {
    TargetError {
        NotOriginForm => "path_not_origin_form",
        BadPercentEncoding => "path_bad_percent_encoding",
        EncodedSlash => "path_encoded_slash",
        Backslash => "path_backslash",
        ControlCharacter => "path_control_character",
        NotUtf8 => "path_not_utf8",
        AboveRoot => "path_above_root",
        DotSegmentWithParameters => "path_dot_segment_parameters",
        MissingHost => "host_missing",
        DuplicateHost => "host_duplicate",
        ConflictingHost => "host_conflicting",
        BadHost => "host_malformed",
    }
}

impl fmt::Display for TargetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetError::NotOriginForm => "the request target must be a path starting with '/'",
            TargetError::BadPercentEncoding => "the path has a '%' that is not followed by two hex digits",
            TargetError::EncodedSlash => "the path has an encoded '/' (%2F), which origins read differently",
            TargetError::Backslash => "the path has a backslash, which origins read differently",
            TargetError::ControlCharacter => "the path has a control character or a space",
            TargetError::NotUtf8 => "the path does not decode to UTF-8",
            TargetError::AboveRoot => "the path's '..' segments go above the root",
            TargetError::DotSegmentWithParameters => "the path has a '.' or '..' segment with ';' parameters",
            TargetError::MissingHost => "the request names no host",
            TargetError::DuplicateHost => "the request has more than one Host header",
            TargetError::ConflictingHost => "the request's Host and its target name different hosts",
            TargetError::BadHost => "the Host is not a host name with an optional port",
        })
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether a path needs any work: most do not, and are used as they are.
fn is_plain(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.first() == Some(&b'/')
        && bytes.iter().all(|b| b.is_ascii_graphic() && !matches!(b, b'%' | b'\\' | b';'))
        && !bytes.windows(2).any(|w| w == b"//" || w == b"/.")
}

/// The canonical form of an origin-form path (no query):
///
/// - `%XX` of an unreserved character is decoded, every other `%XX` kept
///   with uppercase hex digits (RFC 3986 6.2.2);
/// - `%2F`, `\` or `%5C`, `%00` and other control characters, and
///   percent-encodings that are not UTF-8 are refused;
/// - repeated slashes are merged;
/// - `.` and `..` segments are removed (RFC 3986 5.2.4); `..` above the root
///   is refused, and so is a dot segment carrying `;` parameters.
///
/// Returns `None` when the path is already canonical.
pub fn canonical_path(path: &str) -> Result<Option<String>, TargetError> {
    if is_plain(path) {
        return Ok(None);
    }
    if !path.starts_with('/') {
        return Err(TargetError::NotOriginForm);
    }
    // Percent-decoding of unreserved characters; every decoded byte run must be UTF-8.
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut raw = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let (Some(hi), Some(lo)) =
                    (bytes.get(i + 1).copied().and_then(hex_value), bytes.get(i + 2).copied().and_then(hex_value))
                else {
                    return Err(TargetError::BadPercentEncoding);
                };
                let value = hi << 4 | lo;
                match value {
                    b'/' => return Err(TargetError::EncodedSlash),
                    b'\\' => return Err(TargetError::Backslash),
                    0..=0x1f | 0x7f => return Err(TargetError::ControlCharacter),
                    _ => {}
                }
                raw.push(value);
                if is_unreserved(value) {
                    decoded.push(value as char);
                } else {
                    decoded.push('%');
                    decoded.push(char::from(b"0123456789ABCDEF"[usize::from(hi)]));
                    decoded.push(char::from(b"0123456789ABCDEF"[usize::from(lo)]));
                }
                i += 3;
            }
            b'\\' => return Err(TargetError::Backslash),
            // A request cannot carry these raw; a route prefix that has them would never match.
            0..=0x20 | 0x7f => return Err(TargetError::ControlCharacter),
            _ => {
                raw.push(b);
                if b.is_ascii() {
                    decoded.push(b as char);
                } else {
                    // Raw UTF-8 is written percent-encoded, as an encoded spelling of it would be.
                    decoded.push('%');
                    decoded.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
                    decoded.push(char::from(b"0123456789ABCDEF"[usize::from(b & 0xf)]));
                }
                i += 1;
            }
        }
    }
    if std::str::from_utf8(&raw).is_err() {
        return Err(TargetError::NotUtf8);
    }
    let mut segments: Vec<&str> = Vec::new();
    let ends_in_slash = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    for segment in decoded.split('/').skip(1) {
        let bare = segment.split(';').next().unwrap_or_default();
        if (bare == "." || bare == "..") && bare != segment {
            return Err(TargetError::DotSegmentWithParameters);
        }
        match segment {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(TargetError::AboveRoot);
                }
            }
            _ => segments.push(segment),
        }
    }
    let mut canonical = String::with_capacity(decoded.len());
    for segment in &segments {
        canonical.push('/');
        canonical.push_str(segment);
    }
    if ends_in_slash || segments.is_empty() {
        canonical.push('/');
    }
    Ok((canonical != path).then_some(canonical))
}

/// Whether `path` (canonical) is under the route prefix `prefix` (canonical,
/// without a trailing slash; `""` is the site default): equal, or followed by
/// `/` or `;` (path parameters belong to the segment they follow).
pub fn under_prefix(path: &str, prefix: &str, case_insensitive: bool) -> bool {
    if prefix.is_empty() || prefix == "/" {
        return true;
    }
    let Some(head) = path.get(..prefix.len()) else {
        return false;
    };
    let same = if case_insensitive { head.eq_ignore_ascii_case(prefix) } else { head == prefix };
    same && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/') | Some(b';'))
}

/// The one authority of a request, lowercase: from `:authority` (HTTP/2) or
/// an absolute-form target (HTTP/1.1), else from the single Host header;
/// a Host that names another authority is a conflict.
pub fn authority(uri: &Uri, headers: &HeaderMap) -> Result<Authority, TargetError> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(TargetError::DuplicateHost);
    }
    let from_host = host.map(parse_authority).transpose()?;
    // `:authority` and an absolute-form target were parsed by hyper already.
    let from_target = uri.authority().map(|a| checked_authority(a.clone())).transpose()?;
    match (from_target, from_host) {
        (Some(target), Some(host)) if target != host => Err(TargetError::ConflictingHost),
        (Some(target), _) => Ok(target),
        (None, Some(host)) => Ok(host),
        (None, None) => Err(TargetError::MissingHost),
    }
}

/// `host[:port]`, lowercase; no userinfo, path or empty port.
fn parse_authority(value: &HeaderValue) -> Result<Authority, TargetError> {
    checked_authority(Authority::try_from(value.as_bytes()).map_err(|_| TargetError::BadHost)?)
}

/// A parsed authority as [`parse_authority`] accepts it: `host[:port]`, lowercase.
fn checked_authority(authority: Authority) -> Result<Authority, TargetError> {
    let s = authority.as_str().as_bytes();
    if s.is_empty() || s[0] == b':' || s[s.len() - 1] == b':' {
        return Err(TargetError::BadHost);
    }
    // One pass for what the parser lets through: userinfo, and upper case to fold.
    let (mut userinfo, mut upper) = (false, false);
    for &b in s {
        userinfo |= b == b'@';
        upper |= b.is_ascii_uppercase();
    }
    if userinfo {
        return Err(TargetError::BadHost);
    }
    if upper {
        return Authority::try_from(authority.as_str().to_ascii_lowercase()).map_err(|_| TargetError::BadHost);
    }
    Ok(authority)
}

/// The host of an authority checked by [`authority`] (no userinfo), brackets
/// kept around an IPv6 literal: `host[:port]` split without parsing it again.
pub fn host_of(authority: &Authority) -> &str {
    let s = authority.as_str();
    let bytes = s.as_bytes();
    let end = if bytes.first() == Some(&b'[') {
        bytes.iter().position(|&b| b == b']').map_or(s.len(), |close| close + 1)
    } else {
        bytes.iter().position(|&b| b == b':').unwrap_or(s.len())
    };
    &s[..end]
}

/// The host of an authority without brackets around an IPv6 literal.
pub fn bare_host(authority: &Authority) -> &str {
    let host = host_of(authority);
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(path: &str) -> Result<String, TargetError> {
        canonical_path(path).map(|c| c.unwrap_or_else(|| path.to_owned()))
    }

    #[test]
    fn spellings_of_one_path_become_that_path() {
        for spelling in ["/admin", "//admin", "/x/../admin", "/./admin", "/%61dmin", "/%61%64%6D%69%6E", "///admin/."] {
            let want = if spelling.ends_with("/.") { "/admin/" } else { "/admin" };
            assert_eq!(canon(spelling).as_deref(), Ok(want), "{spelling}");
        }
        assert_eq!(canon("/a/b/../../admin/x/..").as_deref(), Ok("/admin/"));
        assert_eq!(canon("/").as_deref(), Ok("/"));
        assert_eq!(canon("/..%2e/").as_deref(), Ok("/.../"), "three dots are a name");
        assert_eq!(canon("/caf\u{e9}").as_deref(), Ok("/caf%C3%A9"), "raw UTF-8 is written encoded");
    }

    #[test]
    fn reserved_encodings_stay_encoded_in_uppercase() {
        assert_eq!(canon("/a%3fb%2c").as_deref(), Ok("/a%3Fb%2C"));
        assert_eq!(canon("/caf%C3%A9").as_deref(), Ok("/caf%C3%A9"));
        assert_eq!(canonical_path("/a%3Fb"), Ok(None), "already canonical: no copy");
        assert_eq!(canonical_path("/plain/path.html"), Ok(None));
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        let cases = [
            ("/a%2fb", TargetError::EncodedSlash),
            ("/a%2Fb", TargetError::EncodedSlash),
            ("/a\\b", TargetError::Backslash),
            ("/a%5cb", TargetError::Backslash),
            ("/a%00b", TargetError::ControlCharacter),
            ("/a%0ab", TargetError::ControlCharacter),
            ("/a\nb", TargetError::ControlCharacter),
            ("/a b", TargetError::ControlCharacter),
            ("/a%zz", TargetError::BadPercentEncoding),
            ("/a%4", TargetError::BadPercentEncoding),
            ("/%ff%fe", TargetError::NotUtf8),
            ("/..", TargetError::AboveRoot),
            ("/a/../../admin", TargetError::AboveRoot),
            ("/%2e%2e/admin", TargetError::AboveRoot),
            ("/public/..;/admin", TargetError::DotSegmentWithParameters),
            ("/.;x/admin", TargetError::DotSegmentWithParameters),
            ("*", TargetError::NotOriginForm),
        ];
        for (path, want) in cases {
            assert_eq!(canonical_path(path), Err(want), "{path}");
        }
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(under_prefix("/admin", "/admin", false));
        assert!(under_prefix("/admin/x", "/admin", false));
        assert!(under_prefix("/admin;jsessionid=1", "/admin", false));
        assert!(!under_prefix("/administrator", "/admin", false));
        assert!(!under_prefix("/ADMIN", "/admin", false));
        assert!(under_prefix("/ADMIN/x", "/admin", true));
        assert!(under_prefix("/anything", "", false));
        assert!(!under_prefix("/adm", "/admin", false));
    }

    /// Random paths built from the pieces that make spellings differ: whatever
    /// is accepted comes out canonical, and canonical is a fixed point.
    #[test]
    fn canonical_paths_are_a_fixed_point() {
        const PIECES: [&str; 24] = [
            "/", "//", "/.", "/..", ".", "..", "a", "admin", "A", "%61", "%2e", "%2E", "%2f", "%5c", "%00", "%41",
            "%7e", "%c3%a9", "\u{e9}", ";", ";x=1", "%", "%zz", "~",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..200_000 {
            let mut path = String::from("/");
            for _ in 0..(next() % 8) {
                path.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            let Ok(canonical) = canonical_path(&path) else {
                refused += 1;
                continue;
            };
            accepted += 1;
            let canonical = canonical.unwrap_or(path.clone());
            assert_eq!(canonical_path(&canonical), Ok(None), "{path:?} gave {canonical:?}, which is not canonical");
            assert!(canonical.starts_with('/') && !canonical.contains("//"), "{path:?} -> {canonical:?}");
            for segment in canonical.split('/') {
                assert!(segment != "." && segment != "..", "{path:?} -> {canonical:?}");
            }
            let bytes = canonical.as_bytes();
            for (i, _) in canonical.match_indices('%') {
                let (hi, lo) = (bytes[i + 1], bytes[i + 2]);
                assert!(hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit(), "{canonical:?}");
                assert!(!hi.is_ascii_lowercase() && !lo.is_ascii_lowercase(), "{canonical:?}");
                let value = hex_value(hi).unwrap() << 4 | hex_value(lo).unwrap();
                assert!(!is_unreserved(value), "{path:?} -> {canonical:?} keeps an encoded unreserved character");
            }
        }
        assert!(accepted > 10_000 && refused > 10_000, "accepted {accepted}, refused {refused}");
    }

    fn headers(hosts: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for h in hosts {
            map.append(header::HOST, h.parse().unwrap());
        }
        map
    }

    #[test]
    fn one_authority_or_a_refusal() {
        let origin: Uri = "/x".parse().unwrap();
        let absolute: Uri = "https://localhost:8443/x".parse().unwrap();
        assert_eq!(authority(&origin, &headers(&["LocalHost:8443"])).unwrap().as_str(), "localhost:8443");
        assert_eq!(authority(&absolute, &headers(&["localhost:8443"])).unwrap().as_str(), "localhost:8443");
        assert_eq!(authority(&absolute, &headers(&[])).unwrap().as_str(), "localhost:8443");
        assert_eq!(authority(&absolute, &headers(&["other.localhost"])), Err(TargetError::ConflictingHost));
        assert_eq!(authority(&origin, &headers(&["a", "a"])), Err(TargetError::DuplicateHost));
        assert_eq!(authority(&origin, &headers(&[])), Err(TargetError::MissingHost));
        for bad in ["evil.example/foo?", "user@localhost", "localhost:", "", "a b"] {
            assert_eq!(authority(&origin, &headers(&[bad])), Err(TargetError::BadHost), "{bad:?}");
        }
        let v6 = authority(&origin, &headers(&["[::1]:8443"])).unwrap();
        assert_eq!((host_of(&v6), bare_host(&v6)), ("[::1]", "::1"));
        let v4 = authority(&origin, &headers(&["10.0.0.1:80"])).unwrap();
        assert_eq!((host_of(&v4), bare_host(&v4)), ("10.0.0.1", "10.0.0.1"));
        let name = authority(&origin, &headers(&["example.com"])).unwrap();
        assert_eq!(host_of(&name), "example.com");
    }
}
