//! Accounts (RFC 8555 7.3): creation with an optional external account
//! binding, update and deactivation, the orders list, and key rollover.

use super::*;

impl AcmeServer {
    pub(super) fn account_json(&self, base: &str, account: &AcmeAccount) -> Value {
        json!({
            "status": account.status,
            "contact": account.contact,
            "orders": format!("{base}/acme/acct/{}/orders", account.id),
        })
    }

    pub(super) async fn new_account(
        &self,
        base: &str,
        request: &jws::Request,
        signer: Signer,
    ) -> Result<Reply, Problem> {
        let Signer::Key(jwk) = signer else {
            return Err(Problem::malformed("new-account must be signed with a jwk"));
        };
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct NewAccount {
            #[serde(default)]
            contact: Vec<String>,
            #[serde(default)]
            only_return_existing: bool,
            external_account_binding: Option<Value>,
        }
        let payload: NewAccount = request.payload_json()?;
        let thumbprint = jwk.thumbprint();
        if let Some(existing) = self.store.account_by_thumbprint(&thumbprint).await? {
            let location = format!("{base}/acme/acct/{}", existing.id);
            return Ok(Reply::json(StatusCode::OK, &self.account_json(base, &existing)).located(location));
        }
        if payload.only_return_existing {
            return Err(Problem::new("accountDoesNotExist", "no account has this key"));
        }
        check_contacts(&payload.contact)?;
        let id = random_id();
        let eab_kid = match payload.external_account_binding {
            Some(binding) => {
                Some(self.bind_external_account(&binding, &jwk, &format!("{base}/acme/new-account"), &id).await?)
            }
            None if self.settings.eab_required => {
                return Err(Problem::new(
                    "externalAccountRequired",
                    "this server needs an external account binding; ask its operator for a key id and HMAC key",
                ));
            }
            None => None,
        };
        let account = AcmeAccount {
            id,
            thumbprint,
            jwk: jwk.to_json().to_string(),
            contact: payload.contact,
            status: "valid".to_owned(),
            eab_kid,
            created_at: now(),
        };
        if !self.store.account_insert(&account).await? {
            // Another request registered the same key meanwhile: answer with that account.
            if let Some(existing) = self.store.account_by_thumbprint(&account.thumbprint).await? {
                let location = format!("{base}/acme/acct/{}", existing.id);
                return Ok(Reply::json(StatusCode::OK, &self.account_json(base, &existing)).located(location));
            }
        }
        let location = format!("{base}/acme/acct/{}", account.id);
        Ok(Reply::json(StatusCode::CREATED, &self.account_json(base, &account)).located(location))
    }

    /// RFC 8555 7.3.4: checks the binding against the keys `ca acme eab new` made, and
    /// binds its key to the account being created (a key binds one account).
    pub(super) async fn bind_external_account(
        &self,
        binding: &Value,
        jwk: &Jwk,
        url: &str,
        account_id: &str,
    ) -> Result<String, Problem> {
        let keys = self.store.eab_keys().await?;
        let usable = |kid: &str| {
            keys.iter()
                .find(|k| k.kid == kid && k.revoked_at.is_none() && k.account_id.is_none())
                .map(|k| k.hmac_key.clone())
        };
        let kid = jws::verify_external_account_binding(binding, jwk, url, usable).map_err(|e| {
            let problem = Problem::from(e);
            Problem::unauthorized(format!(
                "the external account binding is refused: {}; its key id may be unknown, revoked or used already",
                problem.detail
            ))
        })?;
        if !self.store.eab_bind(&kid, account_id).await? {
            return Err(Problem::unauthorized("the external account binding key was used by another account just now"));
        }
        Ok(kid)
    }

    pub(super) async fn account(
        &self,
        base: &str,
        request: &jws::Request,
        account: &AcmeAccount,
        id: &str,
    ) -> Result<Reply, Problem> {
        if id != account.id {
            return Err(Problem::unauthorized("an account can only be read or changed by its own key"));
        }
        let mut account = account.clone();
        if !request.is_post_as_get() {
            #[derive(Deserialize)]
            struct Update {
                contact: Option<Vec<String>>,
                status: Option<String>,
            }
            let update: Update = request.payload_json()?;
            if let Some(contact) = update.contact {
                check_contacts(&contact)?;
                account.contact = contact;
            }
            match update.status.as_deref() {
                None | Some("valid") => {}
                Some("deactivated") => account.status = "deactivated".to_owned(),
                Some(other) => {
                    return Err(Problem::malformed(format!(
                        "an account's status can only be set to \"deactivated\", not {other:?}"
                    )));
                }
            }
            self.store.account_update(&account.id, &account.contact, &account.status).await?;
        }
        Ok(Reply::json(StatusCode::OK, &self.account_json(base, &account)))
    }

    pub(super) async fn account_orders(
        &self,
        base: &str,
        request: &jws::Request,
        account: &AcmeAccount,
        id: &str,
    ) -> Result<Reply, Problem> {
        if id != account.id || !request.is_post_as_get() {
            return Err(Problem::unauthorized("an account's orders are listed by a POST-as-GET signed by it"));
        }
        let orders: Vec<String> =
            self.store.orders_of(&account.id).await?.iter().map(|o| format!("{base}/acme/order/{o}")).collect();
        Ok(Reply::json(StatusCode::OK, &json!({ "orders": orders })))
    }

    /// RFC 8555 7.3.5: the inner JWS, signed by the new key, names the account and its old key.
    pub(super) async fn key_change(
        &self,
        base: &str,
        url: &str,
        request: &jws::Request,
        signer: Signer,
    ) -> Result<Reply, Problem> {
        let Signer::Account(account, old_key) = signer else {
            return Err(Problem::malformed("key-change must be signed with the account's kid"));
        };
        let inner = jws::parse(&request.payload)?;
        let KeyRef::Jwk(new_key) = &inner.key else {
            return Err(Problem::malformed("the inner JWS of key-change must carry the new key as a jwk"));
        };
        if inner.url != url {
            return Err(Problem::malformed("the inner JWS \"url\" must be the key-change URL, as the outer one's"));
        }
        if inner.nonce.is_some() {
            return Err(Problem::malformed("the inner JWS of key-change must not have a nonce"));
        }
        inner.verify(new_key)?;
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct KeyChange {
            account: String,
            old_key: Value,
        }
        let change: KeyChange = inner.payload_json()?;
        if change.account != format!("{base}/acme/acct/{}", account.id) {
            return Err(Problem::unauthorized("the inner JWS names another account than the one that signed"));
        }
        if Jwk::from_json(&change.old_key)?.thumbprint() != old_key.thumbprint() {
            return Err(Problem::unauthorized("the inner JWS's oldKey is not the account's current key"));
        }
        let thumbprint = new_key.thumbprint();
        if !self.store.account_key_change(&account.id, &thumbprint, &new_key.to_json().to_string()).await? {
            return Err(Problem::malformed("another account already has the new key").status(StatusCode::CONFLICT));
        }
        Ok(Reply::json(StatusCode::OK, &self.account_json(base, &account)))
    }
}

/// Contacts are `mailto:` URLs of one address each.
fn check_contacts(contacts: &[String]) -> Result<(), Problem> {
    for contact in contacts {
        let shown: String = contact.chars().take(80).collect();
        let Some(address) = contact.strip_prefix("mailto:") else {
            return Err(Problem::new("unsupportedContact", format!("{shown:?} is not a mailto: URL")));
        };
        if address.contains(',') || SubjectAltName::parse(&format!("email:{address}")).is_err() {
            return Err(Problem::new("invalidContact", format!("{shown:?} is not one email address")));
        }
    }
    Ok(())
}
