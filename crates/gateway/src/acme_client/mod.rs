//! The ACME client: the gateway's sites with `certificate = { acme = "NAME" }`
//! and `gatehouse agent` obtain and renew their certificates from an ACME CA
//! (Let's Encrypt, pebble, gatehouse's own ACME server).
//!
//! The protocol is instant-acme's; what is here is what it leaves to its
//! user: the account kept in the data dir (and in the shared database, `account.rs`),
//! answering the challenges (on the gateway's own listeners, shared with the other
//! instances through the database, `answers.rs`; or through DNS), the certificate's
//! key and CSR, keeping the certificate, and when to renew it ([`schedule`]).
//!
//! - [`AcmeClient`]: one per process; the accounts, by `[[acme]]` table, and
//!   the challenge answers the listeners serve.
//! - [`Managed`]: one certificate (a site's, or an agent entry's): its stored
//!   copy, its renewal time, and the order that replaces it.

mod account;
mod answers;
pub mod challenges;
pub mod config;
pub mod dns;
mod order;
pub mod schedule;
mod shared;
pub mod site;
mod standalone;
mod stored;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instant_acme::Account;
use rustls::crypto::CryptoProvider;

pub use challenges::{ACME_TLS_ALPN, Challenges, HTTP_01_PREFIX, placeholder};
pub use config::{AcmeConfig, Challenge, DnsConfig, EabConfig, Rfc2136Config};
pub use schedule::Renewal;
pub use shared::{LEASE_TTL_ENV, SharedSites};
pub use stored::Stored;

/// Why a certificate could not be obtained. Each message says what failed and,
/// where the CA said why, its problem detail.
#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    /// The directory could not be reached, or refused the account.
    #[error("account at {directory}: {detail}")]
    Account {
        /// The directory URL.
        directory: String,
        /// What went wrong.
        detail: String,
    },
    /// A request of the order failed (the CA's problem document, or the transport).
    #[error("{step}: {detail}")]
    Order {
        /// What was being done.
        step: &'static str,
        /// The problem detail, or the transport error.
        detail: String,
    },
    /// A request of the order did not get the CA's answer: the connection, TLS, a
    /// response that is not ACME.
    #[error("{step}: the CA at {directory} did not answer: {detail}")]
    Transport {
        /// What was being done.
        step: &'static str,
        /// The directory URL (filled in by [`Managed::obtain`]).
        directory: String,
        /// The error and its causes.
        detail: String,
    },
    /// The CA could not validate a name.
    #[error("the CA could not validate {name} with {challenge}: {detail}")]
    Validation {
        /// The identifier.
        name: String,
        /// The challenge type.
        challenge: Challenge,
        /// The CA's problem detail.
        detail: String,
    },
    /// The CA offers no challenge of the configured type for a name.
    #[error("the CA offers no {challenge} challenge for {name} (it offers {offered}); choose another challenge")]
    NoChallenge {
        /// The identifier.
        name: String,
        /// The configured type.
        challenge: Challenge,
        /// What it offers.
        offered: String,
    },
    /// The dns-01 record could not be written or seen.
    #[error("dns-01 for {name}: {source}")]
    Dns {
        /// The identifier.
        name: String,
        /// Why.
        source: Box<dns::DnsError>,
    },
    /// A local problem: a file, a key.
    #[error("{0}")]
    Local(String),
}

impl AcmeError {
    fn order(step: &'static str) -> impl FnOnce(instant_acme::Error) -> AcmeError {
        move |e| match e {
            instant_acme::Error::Api(problem) => AcmeError::Order { step, detail: problem_text(&problem) },
            other => AcmeError::Transport { step, directory: String::new(), detail: error_chain(&other) },
        }
    }

    /// Names the CA's directory in a transport error.
    fn at(self, url: &str) -> AcmeError {
        match self {
            AcmeError::Transport { step, detail, .. } => {
                AcmeError::Transport { step, directory: url.to_owned(), detail }
            }
            other => other,
        }
    }
}

/// The CA's own words when it sent a problem document; the transport error otherwise.
fn problem_detail(e: &instant_acme::Error) -> String {
    match e {
        instant_acme::Error::Api(problem) => problem_text(problem),
        other => error_chain(other),
    }
}

/// An error and each of its causes (`client error (Connect): tcp connect error:
/// Connection refused (os error 111)`): hyper's own message alone says neither.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

fn problem_text(problem: &instant_acme::Problem) -> String {
    let mut text = problem.detail.clone().unwrap_or_else(|| "no detail given".to_owned());
    if let Some(kind) = &problem.r#type {
        text.push_str(&format!(" ({kind})"));
    }
    for sub in &problem.subproblems {
        if let Some(detail) = &sub.detail {
            text.push_str(&format!("; {detail}"));
        }
    }
    text
}

/// The longest an order may take, start to certificate.
const ORDER_TIMEOUT: Duration = Duration::from_secs(600);
/// The longest a question to the CA outside an order may take (renewal information).
const ASK_TIMEOUT: Duration = Duration::from_secs(30);

/// Counts orders for `/metrics` (the gateway's; the agent has none).
pub trait OrderEvents: Send + Sync {
    /// An order for a certificate of account `acme` ended; `ok` whether it got one.
    fn order(&self, acme: &str, ok: bool);
}

/// The ACME side of one process: accounts and challenge answers.
pub struct AcmeClient {
    data_dir: PathBuf,
    /// The http-01 and tls-alpn-01 answers the listeners serve.
    pub challenges: Arc<Challenges>,
    provider: Arc<CryptoProvider>,
    accounts: tokio::sync::Mutex<HashMap<String, (AcmeConfig, Arc<Account>)>>,
    events: Option<Arc<dyn OrderEvents>>,
    /// The database the gateways share, when they share one (`shared.rs`).
    shared: Option<SharedSites>,
}

impl AcmeClient {
    /// Keeps accounts and certificates under `DATA_DIR/acme/`.
    pub fn new(data_dir: &Path, provider: Arc<CryptoProvider>, events: Option<Arc<dyn OrderEvents>>) -> AcmeClient {
        AcmeClient {
            data_dir: data_dir.join("acme"),
            challenges: Arc::default(),
            provider,
            accounts: tokio::sync::Mutex::default(),
            events,
            shared: None,
        }
    }

    /// Keeps certificates and the account in the shared database too, orders one at a
    /// time across the instances sharing it (`shared.rs`), and shares challenge answers
    /// with them (`answers.rs`).
    pub fn shared(mut self, shared: Option<SharedSites>) -> AcmeClient {
        if let Some(shared) = &shared {
            self.challenges = Arc::new(Challenges::shared(answers::SharedAnswers::new(shared.store().clone())));
        }
        self.shared = shared;
        self
    }

    /// The TLS provider (for challenge certificates and loading keys).
    pub fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    fn event(&self, acme: &str, ok: bool) {
        if let Some(events) = &self.events {
            events.order(acme, ok);
        }
    }
}

/// One certificate kept by ACME: the names it is for and the `[[acme]]` table it comes from.
pub struct Managed {
    /// The account table.
    pub acme: AcmeConfig,
    /// The identifiers, lowercase, as the site or entry lists them.
    pub names: Vec<String>,
    /// What relative paths of the table (`ca_bundle`, key files) start at.
    pub base_dir: PathBuf,
    /// The process's client.
    pub client: Arc<AcmeClient>,
    /// Listen for http-01 and tls-alpn-01 validations on these while an order runs
    /// (`gatehouse agent`); the gateway answers them on its own listeners.
    pub standalone: Option<Standalone>,
}

/// Where a certificate came from.
enum Obtained {
    /// An order of this instance.
    Ordered,
    /// A peer on the shared database, which ordered it.
    FromPeer,
}

/// Where a process without listeners of its own answers http-01 and tls-alpn-01.
#[derive(Debug, Clone, Copy)]
pub struct Standalone {
    /// http-01 (port 80 in production).
    pub http: std::net::SocketAddr,
    /// tls-alpn-01 (port 443 in production).
    pub tls: std::net::SocketAddr,
}

impl Managed {
    /// The certificate kept for these names, if there is one that covers them all and
    /// whose key is its own (a crash between writing the two leaves a pair that is not).
    pub fn stored(&self) -> Option<Stored> {
        let stored = match Stored::read(&self.dir()) {
            Ok(stored) => stored?,
            Err(e) => {
                tracing::warn!(names = %self.names.join(","), error = %e, "the kept certificate is unreadable; ordering anew");
                return None;
            }
        };
        if !stored.covers(&self.names) {
            return None;
        }
        match crate::certificates::stored_key(&stored, &self.client.provider) {
            Ok(_) => Some(stored),
            Err(e) => {
                tracing::warn!(names = %self.names.join(","), error = %e, "the kept certificate is unusable; ordering anew");
                None
            }
        }
    }

    /// The certificate kept for these names: from the shared database when there is
    /// one (the data dir's copy only while the database cannot be read), else from the
    /// data dir ([`stored`](Managed::stored)).
    pub async fn kept(&self) -> Option<Stored> {
        let Some(shared) = &self.client.shared else { return self.stored() };
        match shared::kept(self, shared).await {
            Ok(Some(stored)) => {
                if let Err(e) = stored.write(&self.dir()) {
                    tracing::warn!(names = %self.names.join(","), error = %e, "cannot keep a copy in the data dir");
                }
                Some(stored)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(names = %self.names.join(","), error = %e, "cannot read the shared certificate; using the data dir's copy");
                self.stored()
            }
        }
    }

    /// Whether certificates are shared through a database.
    pub fn is_shared(&self) -> bool {
        self.client.shared.is_some()
    }

    /// Waits up to `wait` for a peer to store a certificate other than `serving`;
    /// true when one did. Without a shared database, just waits.
    pub async fn changed_within(&self, serving: Option<&Stored>, wait: Duration) -> bool {
        match &self.client.shared {
            Some(shared) => shared::changed_within(self, shared, serving.map(|s| s.chain_pem.as_str()), wait).await,
            None => {
                tokio::time::sleep(wait).await;
                false
            }
        }
    }

    /// What this certificate is stored by in the shared database, and the name of its
    /// renewal lease: `acme/ACCOUNT/NAMES`, as its data-dir path.
    fn shared_name(&self) -> String {
        format!("acme/{}/{}", stored::file_name(&self.acme.name), stored::names_dir(&self.names))
    }

    /// Where this certificate is kept: `acme/ACCOUNT/NAMES/`.
    fn dir(&self) -> PathBuf {
        self.client.data_dir.join(stored::file_name(&self.acme.name)).join(stored::names_dir(&self.names))
    }

    /// When to renew `current` (see [`schedule`]).
    pub async fn renewal(&self, current: &Stored) -> Renewal {
        let asked = tokio::time::timeout(ASK_TIMEOUT, async {
            let account = self.account().await.ok()?;
            Some(schedule::renewal(Some(&account), current).await)
        });
        match asked.await {
            Ok(Some(renewal)) => renewal,
            // The CA cannot be reached now: the lifetime rule, until it can.
            _ => schedule::renewal(None, current).await,
        }
    }

    /// Orders a certificate for the names (replacing `current`, when the CA takes that),
    /// keeps it in the data dir and returns it. Counted in the metrics, unless a peer
    /// on the shared database ordered it.
    pub async fn obtain(&self, current: Option<&Stored>) -> Result<Stored, AcmeError> {
        let result = match tokio::time::timeout(ORDER_TIMEOUT, self.order(current)).await {
            Ok(result) => result,
            Err(_) => Err(AcmeError::Order {
                step: "the order",
                detail: format!("not done within {} s; the CA or a challenge did not answer", ORDER_TIMEOUT.as_secs()),
            }),
        };
        match result {
            Ok((stored, Obtained::FromPeer)) => Ok(stored),
            Ok((stored, Obtained::Ordered)) => {
                self.client.event(&self.acme.name, true);
                Ok(stored)
            }
            Err(e) => {
                self.client.event(&self.acme.name, false);
                Err(e)
            }
        }
    }

    async fn order(&self, current: Option<&Stored>) -> Result<(Stored, Obtained), AcmeError> {
        match &self.client.shared {
            Some(shared) => shared::order(self, shared, current).await,
            None => Ok((self.order_here(current).await?, Obtained::Ordered)),
        }
    }

    /// Orders from this instance, and keeps the certificate in the data dir.
    async fn order_here(&self, current: Option<&Stored>) -> Result<Stored, AcmeError> {
        let account = self.account().await?;
        let issued = order::run(self, &account, current).await.map_err(|e| e.at(&self.acme.directory))?;
        let stored = Stored::new(issued.chain_pem, issued.key_pem).map_err(AcmeError::Local)?;
        stored.write(&self.dir()).map_err(AcmeError::Local)?;
        Ok(stored)
    }

    /// The account of the table, restored from the shared database or the data dir, or
    /// registered (and kept), see `account.rs`.
    async fn account(&self) -> Result<Arc<Account>, AcmeError> {
        let mut accounts = self.client.accounts.lock().await;
        if let Some((table, account)) = accounts.get(&self.acme.name)
            && *table == self.acme
        {
            return Ok(account.clone());
        }
        let dir = self.client.data_dir.join(stored::file_name(&self.acme.name));
        let shared = self.client.shared.as_ref();
        let account = Arc::new(account::account(&self.acme, &self.base_dir, &dir, shared).await?);
        accounts.insert(self.acme.name.clone(), (self.acme.clone(), account.clone()));
        Ok(account)
    }
}

/// Reads the files an `[[acme]]` table names, as an order would (`gatehouse config
/// check`): the CA bundle, the EAB key, the TSIG secret. The message names the file.
pub fn check_files(table: &AcmeConfig, base_dir: &Path) -> Result<(), String> {
    order::builder(table, base_dir).map_err(|e| e.to_string())?;
    order::eab_key(table, base_dir).map_err(|e| e.to_string())?;
    if let Some(dns) = &table.dns {
        dns::DnsSolver::new(dns, base_dir).map_err(|e| e.to_string())?;
        if let DnsConfig::Exec(program) = dns {
            use std::os::unix::fs::PermissionsExt;
            let path = if program.is_absolute() { program.clone() } else { base_dir.join(program) };
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {}
                Ok(_) => return Err(format!("dns.exec {} is not an executable file; chmod +x it", path.display())),
                Err(e) => return Err(format!("dns.exec {}: {e}", path.display())),
            }
        }
    }
    Ok(())
}

/// How long until `at` (zero when it is past).
pub fn until(at: SystemTime) -> Duration {
    at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO)
}
