//! The command-line contract (see DESIGN.md): argument definitions only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    #[arg(long, global = true, env = "GATEHOUSE_DATA_DIR", default_value = "./gatehouse-data")]
    pub data_dir: PathBuf,
    /// File holding the passphrase that encrypts the CA keys (or set GATEHOUSE_CA_PASSPHRASE).
    #[arg(long, global = true, value_name = "FILE")]
    pub ca_passphrase_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// With nothing configured: CA, server certificate, a client bundle, and the gateway with mTLS required.
    Quickstart {
        /// Address of the TLS listener.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: String,
        /// Upstream URL (default: a built-in echo server).
        #[arg(long)]
        upstream: Option<String>,
        /// Host name of the server certificate.
        #[arg(long, default_value = "localhost")]
        hostname: String,
    },
    /// Run the gateway (and CA services) per a configuration file.
    Serve {
        #[arg(long, default_value = "gatehouse.toml")]
        config: PathBuf,
    },
    /// Configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The certificate authority: init, issue, sign, revoke, CRL, list.
    #[command(subcommand)]
    Ca(CaCommand),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file; errors name the key and the line.
    Check { file: PathBuf },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProfileArg {
    Server,
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
    Valid,
    Revoked,
    Expired,
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

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a root and an issuing intermediate CA.
    Init {
        /// Name in the CA certificates' subjects.
        #[arg(long, default_value = "gatehouse")]
        name: String,
        /// ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096 or ed25519.
        #[arg(long, default_value = "ecdsa-p256")]
        key_type: String,
        /// Validity of the CA certificates in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// CRL URL to put in issued certificates (written to ca.toml).
        #[arg(long)]
        crl_url: Option<String>,
    },
    /// Print the root certificate (PEM).
    Root,
    /// Issue a certificate with a new key.
    Issue {
        #[arg(long, value_enum)]
        profile: ProfileArg,
        /// Common name; also the file name of the outputs.
        #[arg(long)]
        cn: String,
        /// Subject alternative name: DNS:x, IP:x, email:x, URI:x or a bare value (repeatable).
        #[arg(long = "san", value_name = "VALUE")]
        sans: Vec<String>,
        /// Validity in days (default: the profile's default_days).
        #[arg(long)]
        days: Option<u32>,
        #[arg(long, default_value = "ecdsa-p256")]
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
        #[arg(long, value_enum)]
        profile: ProfileArg,
        #[arg(long)]
        days: Option<u32>,
        /// Where to write the certificate (default: stdout).
        #[arg(long)]
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
    /// Sign a new CRL.
    Crl {
        #[arg(long)]
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
        #[arg(long, value_enum)]
        status: Option<StatusArg>,
        #[arg(long)]
        json: bool,
    },
    /// Show one certificate.
    Show {
        serial: String,
        #[arg(long)]
        json: bool,
    },
    /// Issue one client bundle per CSV row (cn, optional email, optional password).
    Batch {
        csv: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        p12: P12Args,
        #[arg(long, value_enum, default_value = "client")]
        profile: ProfileArg,
        #[arg(long)]
        days: Option<u32>,
        #[arg(long, default_value = "ecdsa-p256")]
        key_type: String,
    },
}
