//! Keys in PKCS#11 tokens (HSMs, softhsm2), through the `cryptoki` crate: the
//! private keys never leave the token; the server finds them at start and asks
//! the token for each signature or decryption.
//!
//! At start, for each `[[keys]] pkcs11` table or `pkcs11:` URI: load and
//! initialize the module (once per module path), find the token by label (an
//! absent one is an error listing the labels there are), log in as its user
//! (a wrong PIN is one error naming the token and the PIN's source, never the
//! PIN), and list its private keys with their public halves so that each gets
//! its SKI exactly as a key file does.
//!
//! - `uri`: RFC 7512 `pkcs11:` URIs.
//! - `token`: a logged-in token and its pool of sessions ([`TokenError`]).
//! - `objects`: its private keys and their public halves.
//! - `mechanism`: one operation of the protocol as `C_Sign` / `C_Decrypt`.

pub mod ca_key;
mod mechanism;
mod objects;
mod token;
pub(crate) mod uri;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error, RvError};

pub(crate) use mechanism::perform;
pub(crate) use objects::{Found, TokenKey};
use token::Token;
pub use token::TokenError;

use crate::config::Pkcs11Keys;

/// The modules loaded so far, by path: a module is initialized once however
/// many tables name it (`C_Initialize` twice is an error).
#[derive(Default)]
pub(crate) struct Modules {
    loaded: HashMap<PathBuf, Pkcs11>,
}

impl Modules {
    /// The private keys `keys` names, with their public halves.
    pub(crate) fn keys(&mut self, keys: &Pkcs11Keys) -> Result<Vec<Found>, TokenError> {
        let pkcs11 = self.module(keys)?;
        let token = Arc::new(Token::open(pkcs11, keys)?);
        let found = objects::private_keys(&token, keys).map_err(|why| TokenError::Token {
            token: keys.token.clone(),
            doing: "listing its private keys",
            why,
        })?;
        if found.is_empty() {
            tracing::warn!(token = %keys.token, object = ?keys.object, "the token holds no private key the server can use");
        }
        Ok(found)
    }

    /// The token `keys` names, logged in.
    pub(crate) fn token(&mut self, keys: &Pkcs11Keys) -> Result<Arc<Token>, TokenError> {
        let pkcs11 = self.module(keys)?;
        Ok(Arc::new(Token::open(pkcs11, keys)?))
    }

    fn module(&mut self, keys: &Pkcs11Keys) -> Result<Pkcs11, TokenError> {
        if let Some(pkcs11) = self.loaded.get(&keys.module) {
            return Ok(pkcs11.clone());
        }
        let failed = |why: Error| TokenError::Module { module: keys.module.clone(), why: why.to_string() };
        let pkcs11 = Pkcs11::new(&keys.module).map_err(failed)?;
        // The server's threads call the module concurrently (one session each):
        // the module must lock with the system's primitives.
        match pkcs11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(why) => return Err(failed(why)),
        }
        self.loaded.insert(keys.module.clone(), pkcs11.clone());
        Ok(pkcs11)
    }
}
