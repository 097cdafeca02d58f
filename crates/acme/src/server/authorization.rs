//! Authorizations and challenges (RFC 8555 7.5): reading and deactivating
//! them, and a challenge's validation, tried a few times in the background.

use super::*;

impl AcmeServer {
    pub(super) fn challenge_json(&self, base: &str, challenge: &AcmeChallenge) -> Value {
        let mut value = json!({
            "type": challenge.kind,
            "url": format!("{base}/acme/chall/{}", challenge.id),
            "token": challenge.token,
            "status": challenge.status,
        });
        if let Some(at) = challenge.validated_at {
            value["validated"] = json!(rfc3339(at));
        }
        if let Some(error) = challenge.error.as_deref().and_then(|e| serde_json::from_str::<Value>(e).ok()) {
            value["error"] = error;
        }
        value
    }

    pub(super) fn authorization_json(&self, base: &str, authorization: &AcmeAuthorization) -> Value {
        let status = if authorization.status == "pending" && authorization.expires < now() {
            "expired"
        } else {
            authorization.status.as_str()
        };
        let challenges: Vec<Value> = authorization
            .challenges
            .iter()
            // Once valid, only the challenge that proved it is shown.
            .filter(|c| status != "valid" || c.status == "valid")
            .map(|c| self.challenge_json(base, c))
            .collect();
        let mut value = json!({
            "identifier": authorization.identifier,
            "status": status,
            "expires": rfc3339(authorization.expires),
            "challenges": challenges,
        });
        if authorization.wildcard {
            value["wildcard"] = json!(true);
        }
        value
    }

    pub(super) async fn authorization(
        &self,
        base: &str,
        request: &jws::Request,
        account: &AcmeAccount,
        id: &str,
    ) -> Result<Reply, Problem> {
        let found = self.store.authorization(id).await?;
        let Some(mut authorization) = found.filter(|a| a.account_id == account.id) else {
            return Err(Problem::malformed("no such authorization of this account").status(StatusCode::NOT_FOUND));
        };
        if !request.is_post_as_get() {
            #[derive(Deserialize)]
            struct Deactivate {
                status: String,
            }
            let change: Deactivate = request.payload_json()?;
            if change.status != "deactivated" {
                return Err(Problem::malformed("an authorization's status can only be set to \"deactivated\""));
            }
            if authorization.status != "pending" && authorization.status != "valid" {
                return Err(Problem::malformed(format!("the authorization is {}", authorization.status)));
            }
            self.store.authorization_status(&authorization.id, "deactivated", None).await?;
            authorization.status = "deactivated".to_owned();
        }
        let processing = authorization.challenges.iter().any(|c| c.status == "processing");
        Ok(Reply::json(StatusCode::OK, &self.authorization_json(base, &authorization)).polling(processing))
    }

    pub(super) async fn challenge(
        &self,
        base: &str,
        request: &jws::Request,
        account: &AcmeAccount,
        id: &str,
    ) -> Result<Reply, Problem> {
        let found = self.store.challenge(id).await?;
        let Some((authorization, mut challenge)) = found.filter(|(a, _)| a.account_id == account.id) else {
            return Err(Problem::malformed("no such challenge of this account").status(StatusCode::NOT_FOUND));
        };
        let up = format!("{base}/acme/authz/{}", authorization.id);
        if !request.is_post_as_get() {
            // The payload is `{}`: respond to the challenge.
            let _: serde_json::Map<String, Value> = request.payload_json()?;
            if authorization.status != "pending" || authorization.expires < now() {
                let status = if authorization.expires < now() { "expired" } else { authorization.status.as_str() };
                return Err(Problem::malformed(format!("the authorization is {status}; start a new order")));
            }
            let failed = self.store.failed_validations_since(&account.id, now() - 3600).await?;
            if challenge.status == "pending" && failed >= u64::from(self.settings.failed_validations_per_hour) {
                let mut problem = Problem::new(
                    "rateLimited",
                    format!(
                        "{failed} validations of this account failed in the last hour, the most allowed \
                         (acme_server.failed_validations_per_hour); fix the challenge setup and retry later"
                    ),
                );
                problem.retry_after = Some(RATE_LIMIT_RETRY);
                return Err(problem);
            }
            if challenge.status == "pending"
                && self.store.challenge_transition(&challenge.id, "pending", "processing", None, None).await?
            {
                challenge.status = "processing".to_owned();
                let account_key: Value =
                    serde_json::from_str(&account.jwk).map_err(|e| Problem::internal("reading an account key", e))?;
                let account_key =
                    Jwk::from_json(&account_key).map_err(|e| Problem::internal("reading an account key", e))?;
                let key_authorization = jws::key_authorization(&challenge.token, &account_key);
                let validator = self.validator.clone();
                let store = self.store.clone();
                let (authorization, checked) = (authorization.clone(), challenge.clone());
                tokio::spawn(async move {
                    validate(validator, store, authorization, checked, key_authorization).await;
                });
            }
        }
        let reply = Reply::json(StatusCode::OK, &self.challenge_json(base, &challenge)).link(&up, "up");
        Ok(reply.polling(challenge.status == "processing"))
    }
}

/// Tries a challenge a few times; its result settles the challenge and its authorization.
async fn validate(
    validator: Validator,
    store: Database,
    authorization: AcmeAuthorization,
    challenge: AcmeChallenge,
    key_authorization: String,
) {
    let mut last = String::new();
    for attempt in 1..=VALIDATION_ATTEMPTS {
        match validator.check(&challenge.kind, &authorization.identifier, &key_authorization).await {
            Ok(()) => {
                let done = async {
                    store.challenge_transition(&challenge.id, "processing", "valid", Some(now()), None).await?;
                    // A valid authorization is reused for a while, not until its pending deadline.
                    let expires = now() + VALID_AUTHORIZATION_LIFETIME;
                    store.authorization_status(&authorization.id, "valid", Some(expires)).await
                };
                if let Err(e) = done.await {
                    tracing::error!(error = %e, "ACME server: recording a valid challenge failed");
                }
                tracing::info!(identifier = %authorization.identifier.value, kind = %challenge.kind, "ACME challenge valid");
                return;
            }
            Err(why) => {
                tracing::debug!(identifier = %authorization.identifier.value, kind = %challenge.kind, attempt, error = %why, "ACME challenge not valid yet");
                last = why;
                if attempt < VALIDATION_ATTEMPTS {
                    tokio::time::sleep(VALIDATION_PAUSE * attempt).await;
                }
            }
        }
    }
    let kind = match challenge.kind.as_str() {
        "dns-01" => "dns",
        "tls-alpn-01" if last.starts_with("TLS") => "tls",
        _ if last.starts_with("cannot") => "connection",
        _ => "incorrectResponse",
    };
    let problem = Problem::new(kind, last).status(StatusCode::FORBIDDEN);
    let error = problem.to_json().to_string();
    tracing::info!(identifier = %authorization.identifier.value, kind = %challenge.kind, error = %problem.detail, "ACME challenge invalid");
    let recorded = async {
        store.challenge_transition(&challenge.id, "processing", "invalid", None, Some(&error)).await?;
        store.authorization_status(&authorization.id, "invalid", None).await
    };
    if let Err(e) = recorded.await {
        tracing::error!(error = %e, "ACME server: recording an invalid challenge failed");
    }
}
