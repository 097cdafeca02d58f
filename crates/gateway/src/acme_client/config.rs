//! The `[[acme]]` tables: an ACME account at a CA, and how its orders prove
//! control of their names. The gateway's sites name one with
//! `certificate = { acme = "NAME" }`; `gatehouse agent` reads the same tables.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

/// One `[[acme]]` table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// What sites and agent entries call it.
    pub name: String,
    /// The CA's directory URL (`https://acme-v02.api.letsencrypt.org/directory`).
    pub directory: String,
    /// Contact addresses of the account (`admin@example.com`; `mailto:` is added).
    #[serde(default)]
    pub contact: Vec<String>,
    /// PEM roots that the directory's TLS certificate is checked with, instead of the
    /// system's (a private ACME server such as gatehouse's own, or pebble).
    pub ca_bundle: Option<PathBuf>,
    /// The certificate profile to ask for (draft-ietf-acme-profiles), when the CA offers them.
    pub profile: Option<String>,
    /// The key type of the certificates' keys.
    #[serde(default)]
    pub key_type: KeyTypeConfig,
    /// External account binding, for CAs that require one.
    pub eab: Option<EabConfig>,
    /// How the orders prove control of their names.
    #[serde(default)]
    pub challenge: Challenge,
    /// Where dns-01 records are written (required with `challenge = "dns-01"`).
    pub dns: Option<DnsConfig>,
}

/// `key_type = "ecdsa-p256"` and the other names of `gatehouse ca --key-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct KeyTypeConfig(pub pki::KeyType);

impl<'de> Deserialize<'de> for KeyTypeConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse::<pki::KeyType>().map(KeyTypeConfig).map_err(|_| {
            let names: Vec<&str> = pki::KeyType::ALL.iter().map(|k| k.name()).collect();
            serde::de::Error::custom(format!("unknown key type \"{name}\"; use one of {}", names.join(", ")))
        })
    }
}

/// `eab = { kid = "...", hmac_key_file = "..." }`: the key id and the file holding the
/// base64url HMAC key the CA gave (as certbot's `--eab-hmac-key` takes it).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct EabConfig {
    /// The key id.
    pub kid: String,
    /// The file with the HMAC key, base64url.
    pub hmac_key_file: PathBuf,
}

/// The challenge type an account's orders answer.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash, Default)]
pub enum Challenge {
    /// A file at `/.well-known/acme-challenge/TOKEN` on port 80: the gateway's `[listen] http`.
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// A certificate for the `acme-tls/1` ALPN on port 443: the gateway's TLS listener (RFC 8737).
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// A TXT record at `_acme-challenge.NAME`; the only one that proves a wildcard.
    #[serde(rename = "dns-01")]
    Dns01,
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Challenge::Http01 => "http-01",
            Challenge::TlsAlpn01 => "tls-alpn-01",
            Challenge::Dns01 => "dns-01",
        })
    }
}

/// Where dns-01 records go: `{ rfc2136 = { ... } }` or `{ exec = "PATH" }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum DnsConfig {
    /// Dynamic updates (RFC 2136) signed with TSIG, sent to the zone's primary.
    Rfc2136(Rfc2136Config),
    /// A program run as `PATH present|cleanup _acme-challenge.NAME. VALUE`, as lego's exec
    /// provider runs it.
    Exec(PathBuf),
}

/// `rfc2136 = { server, key_name, key_algorithm, key_secret_file }`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct Rfc2136Config {
    /// The zone's primary, which takes the updates and is asked until the record is there.
    pub server: SocketAddr,
    /// The TSIG key's name, as in named.conf (`acme-update`).
    pub key_name: String,
    /// `hmac-sha256` (the default), `hmac-sha384` or `hmac-sha512`.
    #[serde(default = "default_tsig_algorithm")]
    pub key_algorithm: String,
    /// The key's secret: the base64 secret alone, or the `key "..." { ... };` block
    /// `tsig-keygen` prints.
    pub key_secret_file: PathBuf,
}

fn default_tsig_algorithm() -> String {
    "hmac-sha256".to_owned()
}
