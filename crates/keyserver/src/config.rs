//! The key server's file, read strictly: an unknown key is an error naming the
//! key and its line, and every relative path is taken from the file's directory.
//!
//! ```toml
//! listen = "127.0.0.1:2407"            # IP:PORT, or IP for port 2407; default 0.0.0.0:2407
//! certificate = { cert = "ks.crt", key = "ks.key" }   # the server's mTLS identity
//! trust = ["gateways-ca.pem"]          # default: the internal CA of --data-dir
//! metrics = "127.0.0.1:2406"           # optional: GET /metrics (Prometheus)
//! [[keys]]
//! dir = "keys/"                        # *.key files: PKCS#1, SEC1 or PKCS#8, PEM or DER
//! [[keys]]                             # every private key of a PKCS#11 token
//! pkcs11 = { module = "/usr/lib/softhsm/libsofthsm2.so", token = "LABEL", pin_file = "pin" }
//! [[keys]]                             # the same as an RFC 7512 URI (see `crate::pkcs11::uri`)
//! uri = "pkcs11:token=LABEL;object=ec1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:pin"
//! ```
//!
//! Instead of `listen`, `tunnel = "HOST:PORT"` (or a list of them) has the key
//! server dial out to gateways' `keyless_tunnel` listeners and take their
//! requests over the connections it opened: it then opens no port for gateways
//! at all. Its certificate is then its TLS *client* certificate (clientAuth), and
//! `trust` checks the gateways' server certificates, for the HOST dialled.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// The port the metrics listener takes when `metrics` names only an address.
pub const DEFAULT_METRICS_PORT: u16 = 2406;

/// A checked configuration, paths absolute or relative to the working directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Where gateways meet the key server: a port it listens on, or the tunnels it dials.
    pub mode: Mode,
    /// The certificate chain (PEM) the server presents.
    pub cert: PathBuf,
    /// The private key (PEM) of that certificate.
    pub key: PathBuf,
    /// Whose client certificates are accepted.
    pub trust: Trust,
    /// Where `/metrics` is served, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Where the keys are, in the file's order (the first of two keys with the
    /// same SKI is kept).
    pub keys: Vec<KeySource>,
}

/// How gateways reach the key server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// It listens on this address (`listen`).
    Listen(SocketAddr),
    /// It dials each of these gateways' tunnel listeners (`tunnel`).
    Tunnel(Vec<TunnelTarget>),
}

/// A gateway's `keyless_tunnel` listener, as `tunnel` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelTarget {
    /// The host name or IP address dialled, and the name its certificate must carry.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl std::fmt::Display for TunnelTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl TunnelTarget {
    /// `HOST:PORT` or `[IPv6]:PORT`; the port is required.
    fn parse(text: &str) -> Option<TunnelTarget> {
        let (host, port) = text.rsplit_once(':')?;
        let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
        let host = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => v6.parse::<std::net::Ipv6Addr>().ok()?.to_string(),
            None if host.parse::<IpAddr>().is_ok() => host.to_owned(),
            None if pki::is_dns_name(host) && !host.starts_with("*.") => host.to_ascii_lowercase(),
            None => return None,
        };
        Some(TunnelTarget { host, port })
    }
}

/// The certificate authorities a gateway's client certificate must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Every certificate in these PEM files is a trust anchor.
    Files(Vec<PathBuf>),
    /// The internal CA of this data dir: its root and its intermediate.
    InternalCa {
        /// The `--data-dir`.
        data_dir: PathBuf,
    },
}

/// One `[[keys]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A directory of `*.key` files.
    Dir(PathBuf),
    /// The private keys of a PKCS#11 token (`pkcs11 = {...}` or `uri = "pkcs11:..."`).
    Pkcs11(Pkcs11Keys),
}

/// Private keys in a PKCS#11 token: every one, or those `object` and `id` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Keys {
    /// The PKCS#11 module (shared library) to load.
    pub module: PathBuf,
    /// The token's label (`CK_TOKEN_INFO.label`).
    pub token: String,
    /// Where the user PIN comes from.
    pub pin: PinSource,
    /// Only the keys with this label (`CKA_LABEL`), from a URI's `object`.
    pub object: Option<String>,
    /// Only the keys with this id (`CKA_ID`), from a URI's `id`.
    pub id: Option<Vec<u8>>,
}

/// Where a token's user PIN comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum PinSource {
    /// A file holding the PIN (one trailing newline is not part of it).
    File(PathBuf),
    /// The PIN itself, from a URI's `pin-value` (discouraged: it sits in the config).
    Value(String),
}

impl std::fmt::Debug for PinSource {
    /// Never the PIN.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinSource::File(file) => f.debug_tuple("File").field(file).finish(),
            PinSource::Value(_) => f.write_str("Value(..)"),
        }
    }
}

impl std::fmt::Display for PinSource {
    /// `pin_file PATH` or `pin-value in the URI`, for messages; never the PIN.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinSource::File(file) => write!(f, "pin_file {}", file.display()),
            PinSource::Value(_) => f.write_str("pin-value in the URI"),
        }
    }
}

/// Why the file cannot be used. The messages leave out the file's name, which
/// the caller puts first.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    /// Not TOML, an unknown key, a missing one, a value of the wrong type:
    /// toml's own message, which names the key and the line.
    #[error("{0}")]
    Syntax(String),
    /// A value of the right type that is not usable.
    #[error("{at}: {what}")]
    Invalid {
        /// `line L, column C`.
        at: String,
        /// What is wrong and what to write instead.
        what: String,
    },
    /// No `[[keys]]` table.
    #[error(
        "no [[keys]] table; add one with dir = \"PATH\" (a directory of .key files) \
         or pkcs11 = {{ module, token, pin_file }}"
    )]
    NoKeys,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<Spanned<String>>,
    tunnel: Option<Spanned<Tunnels>>,
    certificate: CertificateFiles,
    trust: Option<Spanned<Vec<PathBuf>>>,
    metrics: Option<Spanned<String>>,
    #[serde(default)]
    keys: Vec<Spanned<KeysTable>>,
}

/// `tunnel = "HOST:PORT"` or `tunnel = ["HOST:PORT", ...]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Tunnels {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificateFiles {
    cert: PathBuf,
    key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysTable {
    dir: Option<PathBuf>,
    pkcs11: Option<Pkcs11Table>,
    uri: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pkcs11Table {
    module: PathBuf,
    token: String,
    pin_file: PathBuf,
}

impl Config {
    /// Reads the file at `path`; `data_dir` gives the default trust.
    pub fn load(path: &Path, data_dir: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)?;
        let base = path.parent().unwrap_or(Path::new(""));
        Config::parse(&text, base, data_dir)
    }

    /// Reads `text`, with relative paths taken from `base`.
    pub fn parse(text: &str, base: &Path, data_dir: &Path) -> Result<Config, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string().replace('\n', " ")))?;
        let at = |offset: usize| pki::line_col(text, offset);
        let mode = match (&file.listen, &file.tunnel) {
            (Some(_), Some(tunnel)) => {
                return Err(ConfigError::Invalid {
                    at: at(tunnel.span().start),
                    what: "listen and tunnel exclude each other: the key server either listens for gateways \
                           or dials out to their keyless_tunnel; keep one"
                        .to_owned(),
                });
            }
            (None, Some(tunnel)) => {
                let texts = match tunnel.get_ref() {
                    Tunnels::One(one) => vec![one.clone()],
                    Tunnels::Many(many) => many.clone(),
                };
                let invalid = |what: String| ConfigError::Invalid { at: at(tunnel.span().start), what };
                if texts.is_empty() {
                    return Err(invalid("tunnel = [] names no gateway; give HOST:PORT of a keyless_tunnel".to_owned()));
                }
                let targets = texts
                    .iter()
                    .map(|t| {
                        TunnelTarget::parse(t).ok_or_else(|| {
                            invalid(format!("tunnel = {t:?} is not HOST:PORT (a host name or IP, and the port)"))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Mode::Tunnel(targets)
            }
            (listen, None) => Mode::Listen(match listen {
                None => SocketAddr::from(([0, 0, 0, 0], keyless::DEFAULT_PORT)),
                Some(value) => address(value.get_ref(), keyless::DEFAULT_PORT).ok_or_else(|| ConfigError::Invalid {
                    at: at(value.span().start),
                    what: format!("listen = {:?} is not IP:PORT (or an IP, for port 2407)", value.get_ref()),
                })?,
            }),
        };
        let metrics = match &file.metrics {
            None => None,
            Some(value) => {
                Some(address(value.get_ref(), DEFAULT_METRICS_PORT).ok_or_else(|| ConfigError::Invalid {
                    at: at(value.span().start),
                    what: format!("metrics = {:?} is not IP:PORT (or an IP, for port 2406)", value.get_ref()),
                })?)
            }
        };
        let mut keys = Vec::new();
        for table in &file.keys {
            let start = at(table.span().start);
            let source = match table.get_ref() {
                KeysTable { dir: Some(dir), pkcs11: None, uri: None } => KeySource::Dir(base.join(dir)),
                KeysTable { dir: None, pkcs11: Some(t), uri: None } => KeySource::Pkcs11(Pkcs11Keys {
                    module: base.join(&t.module),
                    token: t.token.clone(),
                    pin: PinSource::File(base.join(&t.pin_file)),
                    object: None,
                    id: None,
                }),
                KeysTable { dir: None, pkcs11: None, uri: Some(uri) } => KeySource::Pkcs11(
                    crate::pkcs11::uri::parse(uri, base)
                        .map_err(|why| ConfigError::Invalid { at: start.clone(), what: format!("uri: {why}") })?,
                ),
                _ => {
                    return Err(ConfigError::Invalid {
                        at: start,
                        what: "a [[keys]] table takes one of dir = \"PATH\", \
                               pkcs11 = { module, token, pin_file } or uri = \"pkcs11:...\""
                            .to_owned(),
                    });
                }
            };
            keys.push(source);
        }
        if keys.is_empty() {
            return Err(ConfigError::NoKeys);
        }
        let trust = match &file.trust {
            Some(files) if files.get_ref().is_empty() => {
                return Err(ConfigError::Invalid {
                    at: at(files.span().start),
                    what: "the list is empty, so no gateway could connect; list the gateways' CA files, \
                           or leave trust out for the internal CA"
                        .to_owned(),
                });
            }
            Some(files) => Trust::Files(files.get_ref().iter().map(|f| base.join(f)).collect()),
            None => Trust::InternalCa { data_dir: data_dir.to_owned() },
        };
        Ok(Config {
            mode,
            cert: base.join(&file.certificate.cert),
            key: base.join(&file.certificate.key),
            trust,
            metrics,
            keys,
        })
    }
}

/// `IP:PORT`, `[IPv6]:PORT`, or a bare IP with `default_port`.
fn address(text: &str, default_port: u16) -> Option<SocketAddr> {
    text.parse::<SocketAddr>().ok().or_else(|| text.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, default_port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/ks"), Path::new("/var/gh"))
    }

    const BASE: &str = "certificate = { cert = \"ks.crt\", key = \"ks.key\" }\n";

    #[test]
    fn defaults_and_relative_paths() {
        let c = parse(&format!("{BASE}[[keys]]\ndir = \"keys\"\n")).unwrap();
        assert_eq!(c.mode, Mode::Listen("0.0.0.0:2407".parse().unwrap()));
        assert_eq!(c.cert, Path::new("/etc/ks/ks.crt"));
        assert_eq!(c.trust, Trust::InternalCa { data_dir: "/var/gh".into() });
        assert_eq!(c.keys, vec![KeySource::Dir("/etc/ks/keys".into())]);
        let c = parse(&format!(
            "listen = \"::1\"\nmetrics = \"127.0.0.1\"\ntrust = [\"/ca.pem\", \"b.pem\"]\n{BASE}[[keys]]\ndir = \"/k\"\n"
        ))
        .unwrap();
        assert_eq!(c.mode, Mode::Listen("[::1]:2407".parse().unwrap()));
        assert_eq!(c.metrics, Some("127.0.0.1:2406".parse().unwrap()));
        assert_eq!(c.trust, Trust::Files(vec!["/ca.pem".into(), "/etc/ks/b.pem".into()]));
    }

    #[test]
    fn pkcs11_tables_and_uris_resolve_paths_from_the_file() {
        let c = parse(&format!(
            "{BASE}[[keys]]\npkcs11 = {{ module = \"/usr/lib/softhsm/libsofthsm2.so\", token = \"gh\", pin_file = \"pin\" }}\n\
             [[keys]]\nuri = \"pkcs11:token=gh;object=ec1;id=%01?module-path=/m.so&pin-source=file:p\"\n"
        ))
        .unwrap();
        assert_eq!(
            c.keys,
            vec![
                KeySource::Pkcs11(Pkcs11Keys {
                    module: "/usr/lib/softhsm/libsofthsm2.so".into(),
                    token: "gh".into(),
                    pin: PinSource::File("/etc/ks/pin".into()),
                    object: None,
                    id: None,
                }),
                KeySource::Pkcs11(Pkcs11Keys {
                    module: "/m.so".into(),
                    token: "gh".into(),
                    pin: PinSource::File("/etc/ks/p".into()),
                    object: Some("ec1".into()),
                    id: Some(vec![1]),
                }),
            ]
        );
        let e = parse(&format!("{BASE}[[keys]]\nuri = \"pkcs11:token=gh\"\n")).unwrap_err().to_string();
        assert!(e.starts_with("line 2, column 1: uri: ") && e.contains("module-path"), "{e}");
    }

    #[test]
    fn tunnel_targets_are_host_and_port_and_exclude_listen() {
        let keys = "[[keys]]\ndir = \"k\"\n";
        let c = parse(&format!("tunnel = \"Edge.example.com:2408\"\n{BASE}{keys}")).unwrap();
        assert_eq!(c.mode, Mode::Tunnel(vec![TunnelTarget { host: "edge.example.com".into(), port: 2408 }]));
        let c = parse(&format!("tunnel = [\"127.0.0.1:9\", \"[::1]:10\"]\n{BASE}{keys}")).unwrap();
        let Mode::Tunnel(targets) = c.mode else { panic!("not a tunnel") };
        assert_eq!(targets.iter().map(ToString::to_string).collect::<Vec<_>>(), ["127.0.0.1:9", "[::1]:10"]);
        for bad in ["edge.example.com", "a b:1", "*.example.com:1", "h:0", "[zz]:1"] {
            let e = parse(&format!("tunnel = \"{bad}\"\n{BASE}{keys}")).unwrap_err().to_string();
            assert!(e.starts_with("line 1, column 10: tunnel = ") && e.contains("is not HOST:PORT"), "{bad}: {e}");
        }
        let e = parse(&format!("listen = \"127.0.0.1:1\"\ntunnel = \"h:1\"\n{BASE}{keys}")).unwrap_err().to_string();
        assert!(e.starts_with("line 2, column 10: listen and tunnel exclude each other"), "{e}");
        let e = parse(&format!("tunnel = []\n{BASE}{keys}")).unwrap_err().to_string();
        assert!(e.contains("names no gateway"), "{e}");
    }

    #[test]
    fn refusals_name_the_key_and_line() {
        let e = parse(&format!("{BASE}[[keys]]\ndir = \"k\"\ncolour = 1\n")).unwrap_err().to_string();
        assert!(e.contains("colour") && e.contains("line 4"), "{e}");
        let e = parse(&format!("{BASE}[[keys]]\npkcs11 = {{ module = \"m\", token = \"t\", pin = \"1234\" }}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("pin"), "{e}");
        let e = parse(&format!("{BASE}[[keys]]\ndir = \"k\"\nuri = \"pkcs11:token=t\"\n")).unwrap_err().to_string();
        assert!(e.starts_with("line 2, column 1: a [[keys]] table takes one of"), "{e}");
        let e = parse(&format!("listen = \"nowhere\"\n{BASE}[[keys]]\ndir = \"k\"\n")).unwrap_err().to_string();
        assert!(e.starts_with("line 1, column 10: listen = \"nowhere\""), "{e}");
        assert!(matches!(parse(BASE), Err(ConfigError::NoKeys)));
        let e = parse(&format!("trust = []\n{BASE}[[keys]]\ndir = \"k\"\n")).unwrap_err().to_string();
        assert!(e.starts_with("line 1, column 9: the list is empty"), "{e}");
        assert!(matches!(parse(&format!("{BASE}[[keys]]\n")), Err(ConfigError::Invalid { .. })));
    }
}
