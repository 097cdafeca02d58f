//! Orders (RFC 8555 7.4): identifiers checked against the profile and the
//! CA's policy, authorizations made or reused, status brought up to date, and
//! finalization under the CSR policy.

use super::*;

impl AcmeServer {
    pub(super) async fn new_order(
        &self,
        base: &str,
        request: &jws::Request,
        account: &AcmeAccount,
    ) -> Result<Reply, Problem> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct NewOrder {
            identifiers: Vec<AcmeIdentifier>,
            not_before: Option<String>,
            not_after: Option<String>,
            profile: Option<String>,
            replaces: Option<String>,
        }
        let payload: NewOrder = request.payload_json()?;
        let placed = self.store.orders_since(&account.id, now() - 3600).await?;
        if placed >= u64::from(self.settings.orders_per_hour) {
            let mut problem = Problem::new(
                "rateLimited",
                format!(
                    "this account placed {placed} orders in the last hour, the most allowed \
                     (acme_server.orders_per_hour); retry later"
                ),
            );
            problem.retry_after = Some(RATE_LIMIT_RETRY);
            return Err(problem);
        }
        if payload.not_before.is_some() || payload.not_after.is_some() {
            return Err(Problem::malformed(
                "notBefore and notAfter are not supported: certificates start now and last the profile's lifetime",
            ));
        }
        let profiles = &self.ca.issuer().settings().acme_profiles;
        let profile_name = payload.profile.clone().unwrap_or_else(|| DEFAULT_PROFILE.to_owned());
        let Some(profile) = profiles.get(&profile_name) else {
            let offered: Vec<&str> = profiles.keys().map(String::as_str).collect();
            let shown: String = profile_name.chars().take(40).collect();
            return Err(Problem::new(
                "invalidProfile",
                format!("this CA has no profile {shown:?}; it offers {}", offered.join(", ")),
            ));
        };
        if payload.identifiers.is_empty() {
            return Err(Problem::malformed("an order needs at least one identifier"));
        }
        if payload.identifiers.len() > 100 {
            return Err(Problem::new("rejectedIdentifier", "an order may name at most 100 identifiers"));
        }
        let mut identifiers = Vec::new();
        for identifier in &payload.identifiers {
            if !profile.identifiers.contains(&identifier.kind) {
                let takes: Vec<&str> = profiles
                    .iter()
                    .filter(|(_, p)| p.identifiers.contains(&identifier.kind))
                    .map(|(name, _)| name.as_str())
                    .collect();
                let kind: String = identifier.kind.chars().take(20).collect();
                return Err(Problem::new(
                    "rejectedIdentifier",
                    format!(
                        "profile {profile_name} takes {} identifiers, not {kind:?}; profiles that take them: {}",
                        profile.identifiers.join(" and "),
                        if takes.is_empty() { "none".to_owned() } else { takes.join(", ") }
                    ),
                ));
            }
            let checked = self.check_identifier(identifier)?;
            if !identifiers.contains(&checked) {
                identifiers.push(checked);
            }
        }
        let now = now();
        let mut authorizations = Vec::new();
        let mut new_authorizations = Vec::new();
        for identifier in &identifiers {
            let (base_identifier, wildcard) = match identifier.value.strip_prefix("*.") {
                Some(rest) => (AcmeIdentifier { kind: "dns".into(), value: rest.to_owned() }, true),
                None => (identifier.clone(), false),
            };
            if let Some(valid) = self.store.authorization_reusable(&account.id, &base_identifier, wildcard, now).await?
            {
                authorizations.push(valid.id);
                continue;
            }
            let kinds: &[&str] = match (wildcard, base_identifier.kind.as_str()) {
                (true, _) => &["dns-01"],
                (false, "ip") => &["http-01", "tls-alpn-01"],
                _ => &["http-01", "dns-01", "tls-alpn-01"],
            };
            let challenges = kinds
                .iter()
                .map(|kind| AcmeChallenge {
                    id: random_id(),
                    kind: (*kind).to_owned(),
                    token: random_id() + &random_id(),
                    status: "pending".to_owned(),
                    validated_at: None,
                    error: None,
                })
                .collect();
            let authorization = AcmeAuthorization {
                id: random_id(),
                account_id: account.id.clone(),
                identifier: base_identifier,
                wildcard,
                status: "pending".to_owned(),
                expires: now + PENDING_LIFETIME,
                challenges,
            };
            authorizations.push(authorization.id.clone());
            new_authorizations.push(authorization);
        }
        let order = AcmeOrder {
            id: random_id(),
            account_id: account.id.clone(),
            status: if new_authorizations.is_empty() { "ready" } else { "pending" }.to_owned(),
            identifiers,
            authorizations,
            not_before: None,
            not_after: None,
            profile: Some(profile_name),
            replaces: payload.replaces,
            expires: now + PENDING_LIFETIME,
            error: None,
            certificate_serial: None,
            created_at: now,
        };
        self.store.order_insert(&order, &new_authorizations).await?;
        let location = format!("{base}/acme/order/{}", order.id);
        Ok(Reply::json(StatusCode::CREATED, &self.order_json(base, &order)).located(location))
    }

    /// An identifier as it will be certified (lowercase, an IP in canonical form), or why not.
    pub(super) fn check_identifier(&self, identifier: &AcmeIdentifier) -> Result<AcmeIdentifier, Problem> {
        let shown: String = identifier.value.chars().take(80).collect();
        let san = match identifier.kind.as_str() {
            "dns" => SubjectAltName::parse(&format!("DNS:{}", identifier.value)),
            "ip" => match identifier.value.parse::<IpAddr>() {
                Ok(ip) => Ok(SubjectAltName::Ip(ip)),
                Err(_) => {
                    return Err(Problem::new("rejectedIdentifier", format!("{shown:?} is not an IP address")));
                }
            },
            other => {
                let other: String = other.chars().take(20).collect();
                return Err(Problem::new(
                    "unsupportedIdentifier",
                    format!("identifier type {other:?} is not supported; use \"dns\" or \"ip\""),
                ));
            }
        };
        let san = san.map_err(|e| Problem::new("rejectedIdentifier", e.to_string()))?;
        self.ca
            .issuer()
            .settings()
            .policy(Profile::Server)
            .check_name(Profile::Server, &san)
            .map_err(|e| Problem::new("rejectedIdentifier", e.to_string()))?;
        let value = match &san {
            SubjectAltName::Dns(name) => name.to_ascii_lowercase(),
            SubjectAltName::Ip(ip) => ip.to_string(),
            _ => unreachable!("only DNS and IP names are made above"),
        };
        Ok(AcmeIdentifier { kind: identifier.kind.clone(), value })
    }

    pub(super) fn order_json(&self, base: &str, order: &AcmeOrder) -> Value {
        let mut value = json!({
            "status": order.status,
            "expires": rfc3339(order.expires),
            "identifiers": order.identifiers,
            "authorizations": order.authorizations.iter().map(|a| format!("{base}/acme/authz/{a}")).collect::<Vec<_>>(),
            "finalize": format!("{base}/acme/order/{}/finalize", order.id),
        });
        if let Some(serial) = &order.certificate_serial {
            value["certificate"] = json!(format!("{base}/acme/cert/{serial}"));
        }
        if let Some(error) = order.error.as_deref().and_then(|e| serde_json::from_str::<Value>(e).ok()) {
            value["error"] = error;
        }
        if let Some(profile) = &order.profile {
            value["profile"] = json!(profile);
        }
        if let Some(replaces) = &order.replaces {
            value["replaces"] = json!(replaces);
        }
        value
    }

    /// An order of `account`, its status brought up to date with its authorizations.
    pub(super) async fn current_order(&self, account: &AcmeAccount, id: &str) -> Result<AcmeOrder, Problem> {
        let order = self.store.order(id).await?;
        let Some(mut order) = order.filter(|o| o.account_id == account.id) else {
            return Err(Problem::malformed("no such order of this account").status(StatusCode::NOT_FOUND));
        };
        if order.status == "pending" {
            let mut statuses = Vec::new();
            for id in &order.authorizations {
                let status = match self.store.authorization(id).await? {
                    Some(a) if a.status == "pending" && a.expires < now() => "expired".to_owned(),
                    Some(a) => a.status,
                    None => "invalid".to_owned(),
                };
                statuses.push(status);
            }
            let next = if statuses.iter().all(|s| s == "valid") {
                Some(("ready", None))
            } else if let Some(bad) = statuses.iter().find(|s| *s != "valid" && *s != "pending") {
                let problem = Problem::unauthorized(format!("an authorization of the order is {bad}"));
                Some(("invalid", Some(problem.to_json().to_string())))
            } else if order.expires < now() {
                Some(("invalid", Some(Problem::malformed("the order expired").to_json().to_string())))
            } else {
                None
            };
            if let Some((status, error)) = next {
                self.store.order_transition(&order.id, "pending", status, error.as_deref(), None).await?;
                order = self.store.order(id).await?.unwrap_or(order);
            }
        }
        Ok(order)
    }

    pub(super) async fn order(
        &self,
        base: &str,
        request: &jws::Request,
        account: &AcmeAccount,
        id: &str,
    ) -> Result<Reply, Problem> {
        if !request.is_post_as_get() {
            return Err(Problem::malformed("an order is read with a POST-as-GET (an empty payload)"));
        }
        let order = self.current_order(account, id).await?;
        Ok(Reply::json(StatusCode::OK, &self.order_json(base, &order)).polling(order.status == "processing"))
    }

    pub(super) async fn finalize(
        &self,
        base: &str,
        request: &jws::Request,
        account: &AcmeAccount,
        id: &str,
    ) -> Result<Reply, Problem> {
        #[derive(Deserialize)]
        struct Finalize {
            csr: String,
        }
        let payload: Finalize = request.payload_json()?;
        let order = self.current_order(account, id).await?;
        if order.status != "ready" {
            return Err(Problem::new(
                "orderNotReady",
                format!("the order is {}; it can be finalized once every authorization is valid", order.status),
            ));
        }
        let der = URL_SAFE_NO_PAD
            .decode(payload.csr.trim_end_matches('='))
            .map_err(|_| Problem::malformed("\"csr\" is not base64url"))?;
        let csr = CheckedCsr::parse(&der).map_err(|e| Problem::new("badCSR", e.to_string()))?;
        let policy = self.ca.issuer().settings().policy(Profile::Server);
        let asked = csr.to_request(Profile::Server, policy, None);
        let wanted: BTreeSet<String> = order.identifiers.iter().map(identifier_text).collect();
        let mut named: BTreeSet<String> = asked.sans.iter().map(|s| s.to_string().to_ascii_lowercase()).collect();
        let cn = asked.subject.cn().map(str::to_owned);
        if let Some(cn) = &cn {
            let as_name = match cn.parse::<IpAddr>() {
                Ok(ip) => format!("ip:{ip}"),
                Err(_) => format!("dns:{}", cn.to_ascii_lowercase()),
            };
            if !wanted.contains(&as_name) {
                return Err(Problem::new(
                    "badCSR",
                    format!("the CSR's CN {cn:?} is not one of the order's identifiers"),
                ));
            }
            if named.is_empty() {
                named.insert(as_name);
            }
        }
        if named != wanted {
            let list = |s: &BTreeSet<String>| s.iter().cloned().collect::<Vec<_>>().join(", ");
            return Err(Problem::new(
                "badCSR",
                format!(
                    "the CSR names {}, but the order is for {}; they must be the same",
                    list(&named),
                    list(&wanted)
                ),
            ));
        }
        if !self.store.order_transition(&order.id, "ready", "processing", None, None).await? {
            return Err(Problem::new("orderNotReady", "the order is being finalized by another request"));
        }
        let sans: Vec<SubjectAltName> = order
            .identifiers
            .iter()
            .map(|i| match i.kind.as_str() {
                "ip" => i.value.parse().map(SubjectAltName::Ip).map_err(|_| ()),
                _ => Ok(SubjectAltName::Dns(i.value.clone())),
            })
            .collect::<Result<_, _>>()
            .map_err(|()| Problem::internal("reading the order's identifiers", "an IP identifier does not parse"))?;
        let common_name = cn.or_else(|| {
            order.identifiers.iter().find(|i| i.kind == "dns" && i.value.len() <= 64).map(|i| i.value.clone())
        });
        let subject = common_name.map(|cn| Subject::common_name(&cn)).unwrap_or_else(|| Subject(Vec::new()));
        let leaf = LeafRequest { profile: Profile::Server, subject, sans, days: None };
        let profile = order.profile.as_deref().unwrap_or(DEFAULT_PROFILE);
        let options = match self.ca.issuer().settings().acme_profiles.get(profile) {
            Some(p) => IssueOptions { minutes: Some(p.lifetime_minutes()), client_auth: p.client_auth },
            None => IssueOptions::default(),
        };
        let issued = match self.ca.issuer().issue_with(&leaf, csr.public_key(), csr.key_is_rsa(), options) {
            Ok(mut issued) => {
                issued.record.source = Some(format!("acme:{}/{}", account.id, order.id));
                issued
            }
            Err(e) => {
                let problem = Problem::new("badCSR", e.to_string());
                let error = problem.to_json().to_string();
                self.store.order_transition(&order.id, "processing", "invalid", Some(&error), None).await?;
                return Err(problem);
            }
        };
        self.ca.record(&[&issued]).await.map_err(|e| Problem::internal("recording the certificate", e))?;
        let serial = issued.serial.to_string();
        self.store.order_transition(&order.id, "processing", "valid", None, Some(&serial)).await?;
        let order = self.current_order(account, id).await?;
        let location = format!("{base}/acme/order/{}", order.id);
        Ok(Reply::json(StatusCode::OK, &self.order_json(base, &order)).located(location))
    }
}

/// `dns:NAME` or `ip:ADDRESS`, as names are compared at finalize.
fn identifier_text(identifier: &AcmeIdentifier) -> String {
    format!("{}:{}", identifier.kind, identifier.value.to_ascii_lowercase())
}
