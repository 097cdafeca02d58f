//! The CA settings file `ca.toml`: CRL settings, the server and client profiles'
//! policies, and the ACME server's profiles. Unknown keys are errors, named with
//! their line.

use std::path::Path;

use serde::Deserialize;

use crate::error::SettingsError;
use crate::name::IpNet;
use crate::profile::{DnField, Profile, ProfilePolicy};

/// The CA settings (`ca.toml` in the data dir).
#[derive(Debug, Clone, PartialEq)]
pub struct CaSettings {
    /// URL put in issued certificates' CRL distribution point, if any.
    pub crl_url: Option<String>,
    /// Default validity of a CRL, hours.
    pub crl_next_update_hours: u32,
    /// Server profile policy.
    pub server: ProfilePolicy,
    /// Client profile policy.
    pub client: ProfilePolicy,
    /// The ACME server's profiles (draft-ietf-acme-profiles), by name; all issue under the
    /// server policy.
    pub acme_profiles: std::collections::BTreeMap<String, AcmeProfile>,
}

/// One ACME profile: what a certificate ordered under it is.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeProfile {
    /// Shown in the directory.
    pub description: String,
    /// Lifetime of its certificates, hours (or `minutes`, for tests and very short-lived
    /// certificates; exactly one of the two).
    #[serde(default)]
    pub hours: u32,
    /// Lifetime of its certificates, minutes, instead of `hours`.
    #[serde(default)]
    pub minutes: u32,
    /// Whether its certificates carry clientAuth besides serverAuth.
    #[serde(default)]
    pub client_auth: bool,
    /// The identifier types an order under it may carry (`dns`, `ip`).
    pub identifiers: Vec<String>,
}

impl AcmeProfile {
    /// The lifetime of its certificates, minutes.
    pub fn lifetime_minutes(&self) -> u32 {
        if self.minutes > 0 { self.minutes } else { self.hours.saturating_mul(60) }
    }

    /// `server`, `shortlived` and `node`: what a CA offers when ca.toml names none.
    pub fn defaults() -> std::collections::BTreeMap<String, AcmeProfile> {
        let profile = |description: &str, hours, client_auth, identifiers: &[&str]| AcmeProfile {
            description: description.to_owned(),
            hours,
            minutes: 0,
            client_auth,
            identifiers: identifiers.iter().map(|s| (*s).to_owned()).collect(),
        };
        [
            ("server", profile("TLS server certificate for DNS names, 90 days", 90 * 24, false, &["dns"])),
            (
                "shortlived",
                profile("TLS server certificate, 160 hours, for DNS names and IP addresses", 160, false, &["dns", "ip"]),
            ),
            (
                "node",
                profile(
                    "certificate for a node that serves TLS and connects as a client (serverAuth and clientAuth), 90 days",
                    90 * 24,
                    true,
                    &["dns", "ip"],
                ),
            ),
        ]
        .into_iter()
        .map(|(name, p)| (name.to_owned(), p))
        .collect()
    }
}

impl Default for CaSettings {
    fn default() -> Self {
        CaSettings {
            crl_url: None,
            crl_next_update_hours: 168,
            server: ProfilePolicy::defaults(Profile::Server),
            client: ProfilePolicy::defaults(Profile::Client),
            acme_profiles: AcmeProfile::defaults(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    crl_url: Option<String>,
    crl_next_update_hours: Option<u32>,
    #[serde(default)]
    profiles: ProfilesFile,
    acme_profiles: Option<std::collections::BTreeMap<String, AcmeProfile>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ProfilesFile {
    server: Option<PolicyFile>,
    client: Option<PolicyFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    default_days: Option<u32>,
    max_days: Option<u32>,
    subject_fields: Option<Vec<DnField>>,
    allowed_dns: Option<Vec<String>>,
    allowed_ips: Option<Vec<IpNetText>>,
    allowed_emails: Option<Vec<String>>,
    allowed_uris: Option<Vec<String>>,
    allow_uri_separators: Option<bool>,
}

#[derive(Deserialize)]
#[serde(try_from = "String")]
struct IpNetText(IpNet);

impl TryFrom<String> for IpNetText {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse().map(IpNetText)
    }
}

impl PolicyFile {
    fn resolve(self, profile: Profile) -> ProfilePolicy {
        let d = ProfilePolicy::defaults(profile);
        ProfilePolicy {
            default_days: self.default_days.unwrap_or(d.default_days),
            max_days: self.max_days.unwrap_or(d.max_days),
            subject_fields: self.subject_fields.unwrap_or(d.subject_fields),
            allowed_dns: self.allowed_dns.unwrap_or(d.allowed_dns),
            allowed_ips: self.allowed_ips.map(|v| v.into_iter().map(|n| n.0).collect()).unwrap_or(d.allowed_ips),
            allowed_emails: self.allowed_emails.unwrap_or(d.allowed_emails),
            allowed_uris: self.allowed_uris.unwrap_or(d.allowed_uris),
            allow_uri_separators: self.allow_uri_separators.unwrap_or(d.allow_uri_separators),
        }
    }
}

impl CaSettings {
    /// Parses `ca.toml` text; unknown keys and bad values are errors that name the key and line.
    pub fn parse(path: &Path, text: &str) -> std::result::Result<CaSettings, SettingsError> {
        let err = |message: String| SettingsError { path: path.to_owned(), message };
        let file: SettingsFile = toml::from_str(text).map_err(|e| err(toml_error(text, &e)))?;
        let settings = CaSettings {
            crl_url: file.crl_url,
            crl_next_update_hours: file.crl_next_update_hours.unwrap_or(168),
            server: file
                .profiles
                .server
                .map(|p| p.resolve(Profile::Server))
                .unwrap_or_else(|| ProfilePolicy::defaults(Profile::Server)),
            client: file
                .profiles
                .client
                .map(|p| p.resolve(Profile::Client))
                .unwrap_or_else(|| ProfilePolicy::defaults(Profile::Client)),
            acme_profiles: file.acme_profiles.clone().unwrap_or_else(AcmeProfile::defaults),
        };
        let mut settings = settings;
        if file.acme_profiles.is_none() {
            // The defaults fit a server policy that allows less than their 90 days.
            let most = settings.server.max_days.saturating_mul(24);
            for profile in settings.acme_profiles.values_mut() {
                profile.hours = profile.hours.min(most);
            }
        }
        for (name, p) in &settings.acme_profiles {
            if p.hours > 0 && p.minutes > 0 {
                return Err(err(format!("acme_profiles.{name}: has both hours and minutes; give one")));
            }
            if p.lifetime_minutes() == 0 || p.lifetime_minutes() > settings.server.max_days.saturating_mul(24 * 60) {
                return Err(err(format!(
                    "acme_profiles.{name}: hours ({}) must be between 1 and the server profile's max_days in hours ({}), \
                     or minutes at least 1",
                    p.hours,
                    settings.server.max_days.saturating_mul(24)
                )));
            }
            if let Some(kind) = p.identifiers.iter().find(|k| *k != "dns" && *k != "ip") {
                return Err(err(format!("acme_profiles.{name}: identifier type {kind:?} is not \"dns\" or \"ip\"")));
            }
        }
        for (name, p) in [("server", &settings.server), ("client", &settings.client)] {
            if p.default_days == 0 || p.default_days > p.max_days {
                return Err(err(format!(
                    "profiles.{name}: default_days ({}) must be between 1 and max_days ({})",
                    p.default_days, p.max_days
                )));
            }
        }
        if settings.crl_next_update_hours == 0 {
            return Err(err("crl_next_update_hours must be at least 1".into()));
        }
        if let Some(url) =
            settings.crl_url.as_ref().filter(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            return Err(err(format!("crl_url '{url}' must be an http:// or https:// URL")));
        }
        Ok(settings)
    }

    /// The policy of a profile.
    pub fn policy(&self, profile: Profile) -> &ProfilePolicy {
        match profile {
            Profile::Server => &self.server,
            Profile::Client => &self.client,
        }
    }

    /// The commented settings file `ca init` writes.
    pub fn template(crl_url: Option<&str>) -> String {
        let crl_line = match crl_url {
            Some(url) => format!("crl_url = \"{url}\""),
            None => "# crl_url = \"http://ca.example.com/intermediate.crl\"".to_owned(),
        };
        SETTINGS_TEMPLATE.replace("{crl_line}", &crl_line)
    }
}

/// One line for a TOML error: `line L, column C: message`.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => format!("{}: {}", line_col(text, span.start), plain_toml_message(e.message())),
        None => plain_toml_message(e.message()),
    }
}

/// serde's words for a value of the wrong type ("expected u32") in the words of ca.toml.
fn plain_toml_message(message: &str) -> String {
    let message = message.trim_end();
    match message.split_once("expected ") {
        Some((found, "u32" | "u8" | "u64" | "usize")) => {
            format!("{found}expected a whole number (0 or more), such as 90; write it without quotes")
        }
        Some((found, "a boolean")) => format!("{found}expected true or false, without quotes"),
        _ => message.to_owned(),
    }
}

/// `line L, column C` of a byte offset in a configuration text, for error messages.
pub fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("line {line}, column {column}")
}

const SETTINGS_TEMPLATE: &str = r#"# gatehouse CA settings. Unknown keys are errors.

# URL of the CRL, put in every certificate issued from now on as its CRL
# distribution point: a `gatehouse serve` that uses this CA publishes the CRL on
# its plain-HTTP listener as http://HOST[:PORT]/ca/intermediate.crl; or publish
# `gatehouse ca crl --der` output yourself.
{crl_line}

# How long a CRL from `gatehouse ca crl` is valid (its nextUpdate), in hours.
crl_next_update_hours = 168

# Issuance policy per profile. `ca issue` and `ca sign` both obey it.
#   subject_fields: subject attributes taken from a CSR (CN O OU C ST L); others are dropped
#   allowed_dns:    "*" any, "example.com" exact, "*.example.com" one label below (and that wildcard)
#   allowed_ips:    CIDR networks
#   allowed_emails, allowed_uris: globs, "*" any, "*@example.com", "spiffe://example.org/*"
#   allow_uri_separators: whether a URI SAN may contain ',' or ';'. Identity headers such as
#                   X-Forwarded-Client-Cert use them as separators, so a URI with them can read
#                   as two identities to a careless parser; no SPIFFE ID has them.
# An empty list refuses that kind of name.
[profiles.server]
default_days = 90
max_days = 398
subject_fields = ["CN", "O", "OU", "C", "ST", "L"]
allowed_dns = ["*"]
allowed_ips = ["0.0.0.0/0", "::/0"]
allowed_emails = ["*"]
allowed_uris = ["*"]
allow_uri_separators = false

[profiles.client]
default_days = 365
max_days = 3650
subject_fields = ["CN", "O", "OU", "C", "ST", "L"]
allowed_dns = ["*"]
allowed_ips = ["0.0.0.0/0", "::/0"]
allowed_emails = ["*"]
allowed_uris = ["*"]
allow_uri_separators = false

# Profiles the ACME server offers (`[acme_server]` in the serve config); an order names
# one, or gets "server". Each issues under the server policy above.
#   hours: lifetime (or minutes, for very short-lived certificates); client_auth: add
#   clientAuth to serverAuth; identifiers: "dns", "ip"
[acme_profiles.server]
description = "TLS server certificate for DNS names, 90 days"
hours = 2160
identifiers = ["dns"]

[acme_profiles.shortlived]
description = "TLS server certificate, 160 hours, for DNS names and IP addresses"
hours = 160
identifiers = ["dns", "ip"]

[acme_profiles.node]
description = "certificate for a node that serves TLS and connects as a client (serverAuth and clientAuth), 90 days"
hours = 2160
client_auth = true
identifiers = ["dns", "ip"]
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::name::SubjectAltName;

    #[test]
    fn template_parses_to_the_defaults() {
        let parsed = CaSettings::parse(Path::new("ca.toml"), &CaSettings::template(None)).unwrap();
        assert_eq!(parsed, CaSettings::default());
        let with_url = CaSettings::parse(Path::new("ca.toml"), &CaSettings::template(Some("http://x/crl"))).unwrap();
        assert_eq!(with_url.crl_url.as_deref(), Some("http://x/crl"));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = "crl_next_update_hours = 1\n[profiles.server]\nmax_dayz = 3\n";
        let err = CaSettings::parse(Path::new("ca.toml"), text).unwrap_err().to_string();
        assert!(err.contains("max_dayz") && err.contains("line 3"), "{err}");
    }

    #[test]
    fn partial_profile_keeps_other_defaults_and_policy_applies() {
        let text = "[profiles.server]\nallowed_dns = [\"*.example.com\"]\nallowed_ips = []\n";
        let s = CaSettings::parse(Path::new("ca.toml"), text).unwrap();
        assert_eq!(s.server.max_days, 398);
        let p = s.policy(Profile::Server);
        assert!(p.check_name(Profile::Server, &SubjectAltName::parse("www.example.com").unwrap()).is_ok());
        let err = p.check_name(Profile::Server, &SubjectAltName::parse("evil.org").unwrap()).unwrap_err().to_string();
        assert!(err.contains("DNS:evil.org") && err.contains("policy") && err.contains("allowed_dns"), "{err}");
        assert!(p.check_name(Profile::Server, &SubjectAltName::parse("10.0.0.1").unwrap()).is_err());
        assert!(matches!(p.lifetime_days(Profile::Server, Some(399)), Err(Error::LifetimeTooLong { .. })));
        assert_eq!(p.lifetime_days(Profile::Server, None).unwrap(), 90);
    }

    #[test]
    fn uri_separators_are_refused_unless_allowed() {
        let hostile = SubjectAltName::parse("URI:spiffe://t/m,By=spiffe://gw;URI=spiffe://prod/admin").unwrap();
        let mut policy = CaSettings::default().client;
        let err = policy.check_name(Profile::Client, &hostile).unwrap_err();
        assert!(matches!(err, Error::UriSeparator { character: ',', .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("'spiffe://t/m,By=spiffe://gw;URI=spiffe://prod/admin' contains ','")
                && msg.contains("allow_uri_separators = true under [profiles.client]"),
            "{msg}"
        );
        let semicolon = SubjectAltName::parse("URI:spiffe://t/a;b").unwrap();
        assert!(matches!(
            policy.check_name(Profile::Client, &semicolon),
            Err(Error::UriSeparator { character: ';', .. })
        ));
        // '=' is harmless once values are quoted, and common in query strings.
        assert!(
            policy.check_name(Profile::Client, &SubjectAltName::parse("URI:https://x.example/?a=b").unwrap()).is_ok()
        );

        let text = "[profiles.client]\nallow_uri_separators = true\n";
        policy = CaSettings::parse(Path::new("ca.toml"), text).unwrap().client;
        assert!(policy.allow_uri_separators);
        assert!(policy.check_name(Profile::Client, &hostile).is_ok());
        // The pattern still decides first.
        policy.allowed_uris = vec!["spiffe://example.org/*".into()];
        assert!(matches!(policy.check_name(Profile::Client, &hostile), Err(Error::PolicyViolation { .. })));
    }

    #[test]
    fn a_value_of_the_wrong_type_says_what_to_write() {
        let err = CaSettings::parse(Path::new("ca.toml"), "[profiles.server]\nmax_days = \"ninety\"\n").unwrap_err();
        assert!(err.message.contains("line 2") && err.message.contains("a whole number"), "{}", err.message);
        assert!(!err.message.contains("u32"), "{}", err.message);
    }

    #[test]
    fn bad_network_is_a_settings_error() {
        let err = CaSettings::parse(Path::new("ca.toml"), "[profiles.client]\nallowed_ips = [\"10.0.0.0/99\"]\n")
            .unwrap_err();
        assert!(err.message.contains("prefix"), "{}", err.message);
    }
}
