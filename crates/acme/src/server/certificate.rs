//! Issued certificates: download (RFC 8555 7.4.2), revocation (7.6) and
//! renewal information (RFC 9773).

use super::*;

impl AcmeServer {
    pub(super) async fn certificate(
        &self,
        request: &jws::Request,
        account: &AcmeAccount,
        serial: &str,
    ) -> Result<Reply, Problem> {
        if !request.is_post_as_get() {
            return Err(Problem::malformed("a certificate is fetched with a POST-as-GET (an empty payload)"));
        }
        let ordered = self.store.order_by_certificate(serial).await?;
        if ordered.is_none_or(|o| o.account_id != account.id) {
            return Err(
                Problem::unauthorized("this certificate was not ordered by this account").status(StatusCode::NOT_FOUND)
            );
        }
        let Some(record) = self.store.certificate(serial).await? else {
            return Err(Problem::malformed("no such certificate").status(StatusCode::NOT_FOUND));
        };
        let chain =
            format!("{}{}", pki::pem_cert(&record.certificate.der), pki::pem_cert(self.ca.issuer().intermediate()));
        Ok(Reply {
            status: StatusCode::OK,
            body: Bytes::from(chain),
            content_type: "application/pem-certificate-chain",
            location: None,
            links: Vec::new(),
            retry_after: None,
        })
    }

    /// RFC 8555 7.6: by the account that ordered it, or signed by the certificate's own key.
    pub(super) async fn revoke(&self, request: &jws::Request, signer: Signer) -> Result<Reply, Problem> {
        #[derive(Deserialize)]
        struct Revoke {
            certificate: String,
            reason: Option<u8>,
        }
        let payload: Revoke = request.payload_json()?;
        let der = URL_SAFE_NO_PAD
            .decode(payload.certificate.trim_end_matches('='))
            .map_err(|_| Problem::malformed("\"certificate\" is not base64url DER"))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|_| Problem::malformed("\"certificate\" is not a DER X.509 certificate"))?;
        let serial = Serial::from_bytes(cert.raw_serial());
        let serial_text = serial.to_string();
        let record = self.store.certificate(&serial_text).await?;
        if record.as_ref().is_none_or(|r| r.certificate.der != der) {
            return Err(Problem::unauthorized("this CA did not issue that certificate").status(StatusCode::NOT_FOUND));
        }
        let allowed = match &signer {
            Signer::Account(account, _) => {
                self.store.order_by_certificate(&serial_text).await?.is_some_and(|o| o.account_id == account.id)
            }
            Signer::Key(jwk) => jwk.spki_der() == cert.public_key().raw,
        };
        if !allowed {
            return Err(Problem::unauthorized(
                "a certificate is revoked by the account that ordered it, or with its own key",
            ));
        }
        let reason = match payload.reason {
            None => RevocationReason::Unspecified,
            Some(code) if code <= 10 && code != 7 => RevocationReason::from_code(code),
            Some(code) => {
                return Err(Problem::new("badRevocationReason", format!("{code} is not an RFC 5280 reason code")));
            }
        };
        match pki::revoke(&self.store, &serial, reason).await {
            Ok(_) => Ok(Reply::json(StatusCode::OK, &Value::Null).with_empty_body()),
            Err(pki::Error::AlreadyRevoked { .. }) => {
                Err(Problem::new("alreadyRevoked", "the certificate is revoked already"))
            }
            Err(e) => Err(Problem::internal("revoking", e)),
        }
    }

    /// RFC 9773: when to renew. The last third of the lifetime, ending a ninth
    /// before expiry; for a revoked certificate, a window in the past.
    pub(super) async fn renewal_info(&self, id: &str) -> Result<Reply, Problem> {
        let bad =
            || Problem::malformed("the renewal-info id must be base64url(AKI keyIdentifier) \".\" base64url(serial)");
        let (key_id, serial) = id.split_once('.').ok_or_else(bad)?;
        let key_id = URL_SAFE_NO_PAD.decode(key_id).map_err(|_| bad())?;
        let serial = URL_SAFE_NO_PAD.decode(serial).map_err(|_| bad())?;
        if !key_id.eq_ignore_ascii_case(&hex::decode(self.ca.issuer().key_id()).unwrap_or_default()) {
            return Err(Problem::malformed("this CA did not issue that certificate").status(StatusCode::NOT_FOUND));
        }
        let serial = Serial::from_bytes(&serial).to_string();
        let Some(record) = self.store.certificate(&serial).await? else {
            return Err(Problem::malformed("this CA did not issue that certificate").status(StatusCode::NOT_FOUND));
        };
        let (nb, na) = (record.certificate.not_before, record.certificate.not_after);
        let lifetime = (na - nb).max(1);
        let (start, end) = if record.revocation.is_some() {
            let now = now();
            (now - 2 * 3600, now - 3600)
        } else {
            (na - lifetime / 3, na - lifetime / 9)
        };
        let body = json!({ "suggestedWindow": { "start": rfc3339(start), "end": rfc3339(end) } });
        let retry = self.settings.renewal_info_retry_secs.min((lifetime as u64 / 10).max(1));
        Ok(Reply::json(StatusCode::OK, &body).retry_after(retry))
    }
}
