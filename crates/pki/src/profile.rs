//! Certificate profiles (server, client) and the issuance policy of each: which
//! subject fields a CSR may set, which names may be certified, how long
//! certificates may live. The CA settings file `ca.toml` that holds them is read
//! in `settings`.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::name::{IpNet, SubjectAltName, dns_matches, glob_matches};

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// A TLS server: EKU serverAuth.
    Server,
    /// A TLS client (a person or a service): EKU clientAuth.
    Client,
}

impl Profile {
    /// The profile's name as the CLI and the database spell it.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Server => "server",
            Profile::Client => "client",
        }
    }
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "server" => Ok(Profile::Server),
            "client" => Ok(Profile::Client),
            other => Err(format!("unknown profile '{other}'; use server or client")),
        }
    }
}

/// Subject attributes a profile may copy from a CSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum DnField {
    /// commonName
    #[serde(rename = "CN")]
    CommonName,
    /// organizationName
    #[serde(rename = "O")]
    Organization,
    /// organizationalUnitName
    #[serde(rename = "OU")]
    OrganizationalUnit,
    /// countryName
    #[serde(rename = "C")]
    Country,
    /// stateOrProvinceName
    #[serde(rename = "ST")]
    State,
    /// localityName
    #[serde(rename = "L")]
    Locality,
}

impl DnField {
    /// The short name used in RFC 4514 strings.
    pub fn short_name(self) -> &'static str {
        match self {
            DnField::CommonName => "CN",
            DnField::Organization => "O",
            DnField::OrganizationalUnit => "OU",
            DnField::Country => "C",
            DnField::State => "ST",
            DnField::Locality => "L",
        }
    }

    /// The attribute as an error message names it: `common name (CN)`.
    pub fn description(self) -> &'static str {
        match self {
            DnField::CommonName => "common name (CN)",
            DnField::Organization => "organization (O)",
            DnField::OrganizationalUnit => "organizational unit (OU)",
            DnField::Country => "country (C)",
            DnField::State => "state or province (ST)",
            DnField::Locality => "locality (L)",
        }
    }

    /// The most characters RFC 5280 (Appendix A, the `ub-` bounds) allows in the attribute.
    pub fn upper_bound(self) -> usize {
        match self {
            DnField::CommonName | DnField::Organization | DnField::OrganizationalUnit => 64,
            DnField::State | DnField::Locality => 128,
            DnField::Country => 2,
        }
    }

    /// Refuses a value longer than [`upper_bound`](Self::upper_bound), or a country that is not two letters.
    pub(crate) fn check_length(self, value: &str) -> Result<()> {
        let length = value.chars().count();
        let why = match self {
            DnField::Country if length != 2 || !value.chars().all(|c| c.is_ascii_alphabetic()) => {
                "a country is its two-letter ISO 3166 code, such as DE or US".to_owned()
            }
            DnField::CommonName if length > self.upper_bound() => format!(
                "it is {length} characters long, and RFC 5280 allows at most {} (ub-common-name); give a shorter \
                 CN, and put a longer host name in a subject alternative name (--san DNS:NAME)",
                self.upper_bound()
            ),
            _ if length > self.upper_bound() => format!(
                "it is {length} characters long, and RFC 5280 allows at most {}; shorten it",
                self.upper_bound()
            ),
            _ => return Ok(()),
        };
        Err(Error::InvalidName { value: value.to_owned(), kind: self.description(), why })
    }

    pub(crate) fn to_rcgen(self) -> rcgen::DnType {
        match self {
            DnField::CommonName => rcgen::DnType::CommonName,
            DnField::Organization => rcgen::DnType::OrganizationName,
            DnField::OrganizationalUnit => rcgen::DnType::OrganizationalUnitName,
            DnField::Country => rcgen::DnType::CountryName,
            DnField::State => rcgen::DnType::StateOrProvinceName,
            DnField::Locality => rcgen::DnType::LocalityName,
        }
    }
}

/// The issuance policy of one profile.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfilePolicy {
    /// Lifetime when none is asked for.
    pub default_days: u32,
    /// Longest lifetime allowed.
    pub max_days: u32,
    /// Subject attributes taken from a CSR; others are dropped.
    pub subject_fields: Vec<DnField>,
    /// DNS name patterns (`*`, exact, `*.example.com`).
    pub allowed_dns: Vec<String>,
    /// IP networks.
    pub allowed_ips: Vec<IpNet>,
    /// Email globs (`*`, `*@example.com`).
    pub allowed_emails: Vec<String>,
    /// URI globs (`*`, `spiffe://example.org/*`).
    pub allowed_uris: Vec<String>,
    /// Whether a URI SAN may hold `,` or `;` (legal in RFC 3986 paths). Off by default:
    /// identity headers such as X-Forwarded-Client-Cert separate identities and their
    /// fields with them, and no SPIFFE ID contains them.
    pub allow_uri_separators: bool,
}

impl ProfilePolicy {
    pub(crate) fn defaults(profile: Profile) -> ProfilePolicy {
        let any = || vec!["*".to_owned()];
        ProfilePolicy {
            default_days: match profile {
                Profile::Server => 90,
                Profile::Client => 365,
            },
            max_days: match profile {
                Profile::Server => 398,
                Profile::Client => 3650,
            },
            subject_fields: vec![
                DnField::CommonName,
                DnField::Organization,
                DnField::OrganizationalUnit,
                DnField::Country,
                DnField::State,
                DnField::Locality,
            ],
            allowed_dns: any(),
            allowed_ips: vec!["0.0.0.0/0".parse().expect("valid"), "::/0".parse().expect("valid")],
            allowed_emails: any(),
            allowed_uris: any(),
            allow_uri_separators: false,
        }
    }

    /// The lifetime to issue for, refusing more than `max_days`.
    pub fn lifetime_days(&self, profile: Profile, asked: Option<u32>) -> Result<u32> {
        let days = asked.unwrap_or(self.default_days);
        if days == 0 {
            return Err(Error::ZeroLifetime);
        }
        if days > self.max_days {
            return Err(Error::LifetimeTooLong { profile: profile.name(), days, max: self.max_days });
        }
        Ok(days)
    }

    /// Refuses a name that no pattern of the policy allows, and a URI with a separator
    /// (`,` `;`) unless [`allow_uri_separators`](Self::allow_uri_separators) is set.
    pub fn check_name(&self, profile: Profile, name: &SubjectAltName) -> Result<()> {
        let (allowed, key) = match name {
            SubjectAltName::Dns(n) => (self.allowed_dns.iter().any(|p| dns_matches(p, n)), "allowed_dns"),
            SubjectAltName::Ip(ip) => (self.allowed_ips.iter().any(|net| net.contains(ip)), "allowed_ips"),
            SubjectAltName::Email(e) => (self.allowed_emails.iter().any(|p| glob_matches(p, e)), "allowed_emails"),
            SubjectAltName::Uri(u) => (self.allowed_uris.iter().any(|p| glob_matches(p, u)), "allowed_uris"),
        };
        if !allowed {
            return Err(Error::PolicyViolation { profile: profile.name(), name: name.to_string(), key });
        }
        if let SubjectAltName::Uri(uri) = name
            && !self.allow_uri_separators
            && let Some(character) = uri.chars().find(|c| URI_SEPARATORS.contains(c))
        {
            return Err(Error::UriSeparator { profile: profile.name(), uri: uri.clone(), character });
        }
        Ok(())
    }
}

/// Characters that separate identities (`,`) and their fields (`;`) in X-Forwarded-Client-Cert
/// and in the CGI-style headers origins read; refused in URI SANs unless the policy allows them.
/// (`"`, white space and control characters are not RFC 3986 and refused for every URI.)
const URI_SEPARATORS: [char; 2] = [',', ';'];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_attributes_are_bounded_as_rfc_5280_bounds_them() {
        assert!(DnField::CommonName.check_length(&"a".repeat(64)).is_ok());
        let err = DnField::CommonName.check_length(&"a".repeat(65)).unwrap_err().to_string();
        assert!(err.contains("65 characters") && err.contains("at most 64") && err.contains("--san DNS:"), "{err}");
        assert!(err.len() < 400, "the message quotes the CN only in part: {err}");
        assert!(DnField::Locality.check_length(&"l".repeat(128)).is_ok());
        assert!(DnField::Country.check_length("DE").is_ok());
        assert!(DnField::Country.check_length("Germany").unwrap_err().to_string().contains("ISO 3166"));
    }
}
