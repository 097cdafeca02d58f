//! The command-line contract (see DESIGN.md): argument definitions only.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::PossibleValuesParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Where gatehouse keeps its data unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "./gatehouse-data";

/// The names `--key-type` takes, listed in `--help` and checked as arguments are parsed.
fn key_types() -> PossibleValuesParser {
    PossibleValuesParser::new(pki::KeyType::ALL.map(pki::KeyType::name))
}

/// `--listen`: an IP address and a port, one sentence when it is not.
fn listen_address(text: &str) -> Result<SocketAddr, String> {
    text.parse().map_err(|_| "give an IP address and a port from 0 to 65535, such as 127.0.0.1:8443".to_owned())
}

/// The TLS trust edge of a service: certificate authority, ACME, mTLS gateway, keyless.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Where gatehouse keeps its CA, database and settings.
    #[arg(long, global = true, value_name = "DIR", env = "GATEHOUSE_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// File holding the passphrase that encrypts the CA keys (or set GATEHOUSE_CA_PASSPHRASE).
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_passphrase_file: Option<PathBuf>,
    /// The database of certificates, revocations and ACME state: sqlite://PATH or
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (default: sqlite://DATA_DIR/gatehouse.db).
    /// The CA's certificates and keys stay in the data dir.
    #[arg(long, global = true, value_name = "URL", env = "GATEHOUSE_STORAGE", hide_env_values = true)]
    pub storage: Option<String>,
    /// Where `storage` came from, for messages: `--storage` or `GATEHOUSE_STORAGE` (set by main).
    #[arg(skip)]
    pub storage_flag: &'static str,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// With nothing configured: CA, server certificate, a client bundle, and the gateway with mTLS required.
    Quickstart {
        /// Address and port of the TLS listener.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443", value_parser = listen_address)]
        listen: SocketAddr,
        /// Upstream URL, http://HOST:PORT (default: a built-in echo server).
        #[arg(long, value_name = "URL")]
        upstream: Option<String>,
        /// Host name of the server certificate.
        #[arg(long, value_name = "NAME", default_value = "localhost")]
        hostname: String,
    },
    /// Run the gateway (and CA services) per a configuration file.
    Serve {
        /// The configuration file (see examples/ and docs/gateway.md).
        #[arg(long, value_name = "FILE", default_value = "gatehouse.toml")]
        config: PathBuf,
    },
    /// Obtain and renew certificates through ACME for a machine not behind the gateway:
    /// write them where its services read them and run their reload commands.
    Agent {
        /// The agent's configuration file (see examples/consul-agent.toml and docs/acme.md).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// One pass, for cron and systemd timers: obtain what is missing, renew what is
        /// due, then exit (0 all in place, 1 a certificate failed, 2 bad configuration,
        /// 3 a reload command failed).
        #[arg(long)]
        once: bool,
    },
    /// Keep private keys here and sign for gateways over mutual TLS (Keyless SSL, gokeyless protocol).
    Keyserver {
        /// The key server's configuration file (see docs/keyless.md).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Configuration files: check one before serving it.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The certificate authority: init, root, issue, sign, revoke, unrevoke, crl, list, show, batch.
    #[command(subcommand)]
    Ca(CaCommand),
    /// The database (--storage): bring its schema up to date, copy it to another backend, back it up, restore it.
    #[command(subcommand)]
    Store(StoreCommand),
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Bring the schema of the storage (--storage, default the data dir's SQLite file) to this
    /// gatehouse's version, and say from which version to which.
    Migrate,
    /// Copy certificates, revocations, CRL numbers, ACME state, the CA kept there and stored
    /// site certificates from one database into another, empty one, in one transaction
    /// (nonces and renewal leases, which live seconds to minutes, are not copied).
    Copy {
        /// The database to copy: sqlite://PATH or postgres://USER@HOST:PORT/DATABASE.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The database to fill, which must hold nothing: sqlite://PATH (created) or
        /// postgres://USER@HOST:PORT/DATABASE (made with createdb).
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Write everything `store copy` copies from the storage into FILE, encrypted with the
    /// passphrase in GATEHOUSE_BACKUP_PASSPHRASE (at least 12 characters). The CA's key files
    /// in the data dir are not in it: back them up too.
    Backup {
        /// The backup file to write (mode 0600).
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Restore a backup made by `store backup` into the storage, which must hold nothing,
    /// in one transaction (passphrase from GATEHOUSE_BACKUP_PASSPHRASE).
    Restore {
        /// The backup file to read.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file and read every file it names, writing nothing; errors
    /// name the key and the line.
    Check {
        /// The configuration file.
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProfileArg {
    /// A TLS server certificate (serverAuth), for host names and IP addresses.
    Server,
    /// A TLS client certificate (clientAuth), for a user or a device.
    Client,
}

impl From<ProfileArg> for pki::Profile {
    fn from(p: ProfileArg) -> pki::Profile {
        match p {
            ProfileArg::Server => pki::Profile::Server,
            ProfileArg::Client => pki::Profile::Client,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StatusArg {
    /// Delivered, not revoked, within its validity period.
    Valid,
    /// Revoked (the CRL lists it).
    Revoked,
    /// Past its notAfter.
    Expired,
    /// Signed but never delivered (an interrupted or failed issuance).
    Undelivered,
}

/// PKCS#12 output options shared by `issue` and `batch`.
#[derive(Debug, Args)]
pub struct P12Args {
    /// Also write NAME.p12 (key, certificate and chain).
    #[arg(long)]
    pub p12: bool,
    /// Use the 3DES/SHA-1 PKCS#12 form that iOS and old Windows import.
    #[arg(long, requires = "p12")]
    pub legacy: bool,
}

/// `ca acme ...`: what the ACME server's operator manages by hand.
#[derive(Debug, Subcommand)]
pub enum AcmeCommand {
    /// External account binding keys (RFC 8555 7.3.4), for `eab_required = true`.
    Eab {
        #[command(subcommand)]
        command: EabCommand,
    },
}

/// `ca acme eab ...`.
#[derive(Debug, Subcommand)]
pub enum EabCommand {
    /// Make a key id and HMAC key for one account; printed once, never again.
    New {
        /// What or whom the key is for (shown by `list`).
        #[arg(long)]
        label: String,
    },
    /// List the keys: label, when made, and the account each one created or its revocation.
    List {
        /// One JSON object per key, in an array.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key that has not been used: no account can be created with it any more.
    Revoke {
        /// The key id, as `eab new` printed it.
        kid: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// The ACME server's external account binding keys.
    Acme {
        #[command(subcommand)]
        command: AcmeCommand,
    },
    /// Create a root and an issuing intermediate CA.
    Init {
        /// Name in the CA certificates' subjects.
        #[arg(long, default_value = "gatehouse")]
        name: String,
        /// Key type of the root and intermediate keys.
        #[arg(long, default_value = "ecdsa-p256", value_parser = key_types(), ignore_case = true)]
        key_type: String,
        /// Validity of the CA certificates in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// CRL URL to put in issued certificates (written to ca.toml).
        #[arg(long)]
        crl_url: Option<String>,
        /// Keep the intermediate's key in a PKCS#11 token: an RFC 7512 URI naming the
        /// token, the new key's object label, module-path and pin-source (absolute paths),
        /// e.g. pkcs11:token=ca;object=issuing?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/ca.pin
        #[arg(long, value_name = "URI")]
        key_store: Option<String>,
        /// Make the root's key in a PKCS#11 token too (a URI like --key-store's, another object).
        #[arg(long, value_name = "URI", requires = "key_store")]
        root_key_store: Option<String>,
    },
    /// Print the root certificate (PEM).
    Root,
    /// Issue a certificate with a new key.
    Issue {
        /// Certificate profile: its key usages and the issuance policy in ca.toml.
        #[arg(long, value_enum)]
        profile: ProfileArg,
        /// Common name; also the file name of the outputs.
        #[arg(long)]
        cn: String,
        /// Subject alternative name: DNS:x, IP:x, email:x, URI:x or a bare value (repeatable).
        #[arg(long = "san", value_name = "VALUE")]
        sans: Vec<String>,
        /// Validity in days (default: the profile's default_days in ca.toml).
        #[arg(long)]
        days: Option<u32>,
        /// Key type of the new key.
        #[arg(long, default_value = "ecdsa-p256", value_parser = key_types(), ignore_case = true)]
        key_type: String,
        /// Output directory.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        #[command(flatten)]
        p12: P12Args,
        /// File whose first line is the PKCS#12 password (default: generate one and print it once).
        #[arg(long, value_name = "FILE", requires = "p12")]
        p12_password_file: Option<PathBuf>,
        /// Overwrite existing output files.
        #[arg(long)]
        force: bool,
    },
    /// Sign a PKCS#10 CSR under a profile's policy.
    Sign {
        /// The CSR, PEM or DER.
        csr: PathBuf,
        /// Certificate profile: its key usages and the issuance policy in ca.toml.
        #[arg(long, value_enum)]
        profile: ProfileArg,
        /// Validity in days (default: the profile's default_days in ca.toml).
        #[arg(long)]
        days: Option<u32>,
        /// Where to write the certificate (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Revoke a certificate (durable when the command returns).
    Revoke {
        /// Serial in hex, as `openssl x509 -serial` prints it.
        serial: String,
        /// RFC 5280 reason: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded,
        /// cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise.
        #[arg(long, default_value = "unspecified")]
        reason: String,
    },
    /// Release a certificate on hold (revoked with reason certificateHold).
    ///
    /// Only a revocation with reason certificateHold can be undone (RFC 5280); the
    /// certificate is valid again and leaves the next CRL.
    Unrevoke {
        /// Serial in hex, as `openssl x509 -serial` prints it.
        serial: String,
    },
    /// Sign a new CRL.
    Crl {
        /// Where to write the CRL (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// DER instead of PEM.
        #[arg(long)]
        der: bool,
        /// Hours until nextUpdate (default: crl_next_update_hours in ca.toml).
        #[arg(long)]
        next_update_hours: Option<u32>,
    },
    /// List issued certificates.
    List {
        /// Only the certificates in this state (default: all).
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        /// One JSON array, an object per certificate.
        #[arg(long)]
        json: bool,
    },
    /// Show one certificate: its record and its PEM.
    Show {
        /// Serial in hex, as `openssl x509 -serial` prints it.
        serial: String,
        /// One JSON object, the PEM in its "pem" field.
        #[arg(long)]
        json: bool,
    },
    /// Issue one client bundle per CSV row (cn, optional email, optional password).
    Batch {
        /// The CSV file: a header row naming its columns, then one row per bundle.
        csv: PathBuf,
        /// Output directory: NAME.crt, NAME.key, NAME.fullchain.pem (and NAME.p12) per row.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        p12: P12Args,
        /// File whose first line is the PKCS#12 password for every bundle (default: a CSV
        /// row's password column, else a generated one written to passwords.csv).
        #[arg(long, value_name = "FILE", requires = "p12")]
        p12_password_file: Option<PathBuf>,
        /// Certificate profile of every row.
        #[arg(long, value_enum, default_value = "client")]
        profile: ProfileArg,
        /// Validity in days (default: the profile's default_days in ca.toml).
        #[arg(long)]
        days: Option<u32>,
        /// Key type of the new keys.
        #[arg(long, default_value = "ecdsa-p256", value_parser = key_types(), ignore_case = true)]
        key_type: String,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Every argument and subcommand under `command` without help text, as `gatehouse ca list --json`.
    fn undocumented(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                let name = arg.get_long().map_or_else(|| arg.get_id().to_string(), |l| format!("--{l}"));
                missing.push(format!("{path} {name}"));
            }
        }
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            let sub_path = format!("{path} {}", sub.get_name());
            if sub.get_about().is_none() && sub.get_long_about().is_none() {
                missing.push(sub_path.clone());
            }
            undocumented(sub, &sub_path, missing);
        }
    }

    #[test]
    fn every_argument_and_subcommand_has_help() {
        let mut command = Cli::command();
        command.build();
        let mut missing = Vec::new();
        undocumented(&command, "gatehouse", &mut missing);
        assert!(missing.is_empty(), "without help text:\n{}", missing.join("\n"));
    }

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn key_type_lists_every_key_type() {
        let command = Cli::command();
        let ca = command.find_subcommand("ca").expect("ca");
        for name in ["init", "issue", "batch"] {
            let sub = ca.find_subcommand(name).expect(name);
            let key_type = sub.get_arguments().find(|a| a.get_id() == "key_type").expect("--key-type");
            let listed: Vec<String> = key_type.get_possible_values().iter().map(|v| v.get_name().to_owned()).collect();
            let all: Vec<String> = pki::KeyType::ALL.iter().map(|t| t.name().to_owned()).collect();
            assert_eq!(listed, all, "ca {name} --key-type");
        }
    }
}
