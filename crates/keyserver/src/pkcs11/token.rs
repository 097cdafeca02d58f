//! One PKCS#11 token, logged in as its user, and the sessions operations borrow.
//!
//! # Sessions
//! A PKCS#11 session must not be used by two threads at once, and an HSM call
//! can take milliseconds (a network HSM), so operations on token keys run on
//! tokio's blocking threads, each with a session borrowed from this token's
//! pool. The pool opens sessions on demand, up to [`MAX_SESSIONS`] (or the
//! token's own limit if lower), and keeps them: there are as many as the most
//! operations ever in flight together, none is shared, and an operation waits
//! only when all of them are busy. The login is the application's, not the
//! session's (PKCS#11 §5.6), so every session opened after the first is
//! already logged in; a session the token says is gone is dropped, and a
//! token that says it forgot the login (it was reset) is logged in again once
//! with the PIN kept for that.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Limit, Slot};
use cryptoki::types::AuthPin;

use crate::config::{PinSource, Pkcs11Keys};

/// The most sessions a token's pool opens.
pub(crate) const MAX_SESSIONS: usize = 16;

/// Why a token's keys cannot be loaded. Never carries the PIN.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The module cannot be loaded or initialized.
    #[error("PKCS#11 module {}: {why}", module.display())]
    Module {
        /// The module's path.
        module: PathBuf,
        /// What the loader or C_Initialize said.
        why: String,
    },
    /// No token has the label.
    #[error("PKCS#11 module {}: no token labelled {label:?}; its tokens: {}", module.display(), list(existing))]
    NoToken {
        /// The module's path.
        module: PathBuf,
        /// The label asked for.
        label: String,
        /// The labels of the tokens present.
        existing: Vec<String>,
    },
    /// The PIN file cannot be read.
    #[error("token {token}: cannot read the pin_file {}: {why}", file.display())]
    PinFile {
        /// The token's label.
        token: String,
        /// The file.
        file: PathBuf,
        /// What the system said.
        why: std::io::Error,
    },
    /// The token refused the PIN.
    #[error("wrong PIN for token {token} ({pin})")]
    WrongPin {
        /// The token's label.
        token: String,
        /// Where the PIN came from (`pin_file PATH`), never the PIN.
        pin: PinSource,
    },
    /// The user PIN is locked after too many wrong tries.
    #[error("the user PIN of token {token} is locked (too many wrong PINs); its security officer must reset it")]
    PinLocked {
        /// The token's label.
        token: String,
    },
    /// Any other failure of the token while loading.
    #[error("token {token}: {doing}: {why}")]
    Token {
        /// The token's label.
        token: String,
        /// What was being done (`opening a session`, `listing private keys`).
        doing: &'static str,
        /// What the module said.
        why: Error,
    },
}

fn list(labels: &[String]) -> String {
    if labels.is_empty() { "none".to_owned() } else { format!("{labels:?}") }
}

/// A token with its user logged in, and its pool of sessions.
pub(crate) struct Token {
    label: String,
    pkcs11: Pkcs11,
    slot: Slot,
    pin: AuthPin,
    limit: usize,
    pool: Mutex<Pool>,
    returned: Condvar,
}

#[derive(Default)]
struct Pool {
    idle: Vec<Session>,
    open: usize,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").field("label", &self.label).field("slot", &self.slot).finish()
    }
}

impl Token {
    /// Finds the token `keys.token` in `pkcs11` (the module at `keys.module`,
    /// initialized) and logs in as its user.
    pub(crate) fn open(pkcs11: Pkcs11, keys: &Pkcs11Keys) -> Result<Token, TokenError> {
        let label = keys.token.clone();
        let failed = |doing| {
            let token = label.clone();
            move |why| TokenError::Token { token, doing, why }
        };
        let mut existing = Vec::new();
        let mut found = None;
        for slot in pkcs11.get_slots_with_token().map_err(failed("listing the module's slots"))? {
            let info = pkcs11.get_token_info(slot).map_err(failed("reading a token's label"))?;
            if !info.token_initialized() {
                // softhsm2 always shows one empty slot, for the next token to be made.
                continue;
            }
            let name = info.label().trim_end().to_owned();
            if name == label && found.is_none() {
                let limit = match info.max_session_count() {
                    Limit::Max(n) => usize::try_from(n).unwrap_or(MAX_SESSIONS).clamp(1, MAX_SESSIONS),
                    Limit::Unavailable | Limit::Infinite => MAX_SESSIONS,
                };
                found = Some((slot, limit));
            }
            existing.push(name);
        }
        let Some((slot, limit)) = found else {
            return Err(TokenError::NoToken { module: keys.module.clone(), label, existing });
        };
        let pin = read_pin(&label, &keys.pin)?;
        let session = pkcs11.open_ro_session(slot).map_err(failed("opening a session"))?;
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(Error::Pkcs11(RvError::PinIncorrect | RvError::PinLenRange | RvError::PinInvalid, _)) => {
                return Err(TokenError::WrongPin { token: label, pin: keys.pin.clone() });
            }
            Err(Error::Pkcs11(RvError::PinLocked, _)) => return Err(TokenError::PinLocked { token: label }),
            Err(why) => return Err(failed("logging in")(why)),
        }
        let pool = Pool { idle: vec![session], open: 1 };
        Ok(Token { label, pkcs11, slot, pin, limit, pool: Mutex::new(pool), returned: Condvar::new() })
    }

    /// The token's label.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Runs `call` with a session of this token's pool, waiting for one if all
    /// are busy. Blocks: call it from a blocking thread or at start.
    pub(crate) fn with_session<T>(&self, call: impl Fn(&Session) -> Result<T, Error>) -> Result<T, Error> {
        let session = self.borrow()?;
        let mut result = call(&session);
        if let Err(Error::Pkcs11(RvError::UserNotLoggedIn, _)) = result {
            tracing::warn!(token = %self.label, "the token forgot the login (was it reset?); logging in again");
            result = match session.login(UserType::User, Some(&self.pin)) {
                Ok(()) | Err(Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => call(&session),
                Err(e) => Err(e),
            };
        }
        let broken = matches!(
            result,
            Err(Error::Pkcs11(
                RvError::SessionHandleInvalid
                    | RvError::SessionClosed
                    | RvError::DeviceRemoved
                    | RvError::DeviceError
                    | RvError::TokenNotPresent,
                _
            ))
        );
        self.give_back(session, broken);
        result
    }

    /// Runs `call` with a read-write session of its own (making objects).
    pub(crate) fn with_rw_session<T>(&self, call: impl FnOnce(&Session) -> Result<T, Error>) -> Result<T, Error> {
        let session = self.pkcs11.open_rw_session(self.slot)?;
        call(&session)
    }

    fn pool(&self) -> MutexGuard<'_, Pool> {
        // A panic while holding the lock leaves the pool's two fields consistent.
        self.pool.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn borrow(&self) -> Result<Session, Error> {
        let mut pool = self.pool();
        loop {
            if let Some(session) = pool.idle.pop() {
                return Ok(session);
            }
            if pool.open < self.limit {
                pool.open += 1;
                drop(pool);
                return self.pkcs11.open_ro_session(self.slot).inspect_err(|_| {
                    self.pool().open -= 1;
                    self.returned.notify_one();
                });
            }
            pool = self.returned.wait(pool).unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    fn give_back(&self, session: Session, broken: bool) {
        let mut pool = self.pool();
        if broken {
            pool.open -= 1;
            drop(pool);
            tracing::warn!(token = %self.label, "a session of the token is gone; another will be opened");
            drop(session);
        } else {
            pool.idle.push(session);
            drop(pool);
        }
        self.returned.notify_one();
    }
}

/// The PIN from its source: a file's first line (a trailing newline is not
/// part of a PIN), or the URI's value.
fn read_pin(token: &str, source: &PinSource) -> Result<AuthPin, TokenError> {
    match source {
        PinSource::Value(pin) => Ok(AuthPin::from(pin.as_str())),
        PinSource::File(file) => {
            crate::keys::warn_if_readable_by_others(file, "pin_file");
            let text = std::fs::read_to_string(file).map_err(|why| pin_file_error(token, file, why))?;
            Ok(AuthPin::from(text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text)))
        }
    }
}

fn pin_file_error(token: &str, file: &Path, why: std::io::Error) -> TokenError {
    TokenError::PinFile { token: token.to_owned(), file: file.to_owned(), why }
}
