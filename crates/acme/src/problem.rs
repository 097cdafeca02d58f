//! RFC 7807 problem documents with the ACME error types (RFC 8555 6.7).

use http::StatusCode;
use serde_json::json;

/// What went wrong with a request, as the client is told.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The ACME error type without its `urn:ietf:params:acme:error:` prefix (`malformed`).
    pub kind: &'static str,
    /// One sentence for the client's log.
    pub detail: String,
    /// The HTTP status.
    pub status: StatusCode,
    /// Seconds before asking again (`rateLimited`, ...).
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem of `kind` with its usual status.
    pub fn new(kind: &'static str, detail: impl Into<String>) -> Problem {
        let status = match kind {
            "unauthorized" | "orderNotReady" | "accountDoesNotExist" | "externalAccountRequired" => {
                StatusCode::FORBIDDEN
            }
            "rateLimited" => StatusCode::TOO_MANY_REQUESTS,
            "serverInternal" => StatusCode::INTERNAL_SERVER_ERROR,
            "alreadyRevoked" | "badRevocationReason" => StatusCode::BAD_REQUEST,
            _ => StatusCode::BAD_REQUEST,
        };
        Problem { kind, detail: detail.into(), status, retry_after: None }
    }

    /// `malformed`.
    pub fn malformed(detail: impl Into<String>) -> Problem {
        Problem::new("malformed", detail)
    }

    /// `unauthorized`.
    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        Problem::new("unauthorized", detail)
    }

    /// `serverInternal`: the detail goes to the log; the client learns only that it failed.
    pub fn internal(what: &str, error: impl std::fmt::Display) -> Problem {
        tracing::error!(error = %error, "ACME server: {what}");
        Problem::new("serverInternal", format!("{what} failed on the server; try again later"))
    }

    /// With another status.
    pub fn status(mut self, status: StatusCode) -> Problem {
        self.status = status;
        self
    }

    /// The full type URN.
    pub fn urn(&self) -> String {
        format!("urn:ietf:params:acme:error:{}", self.kind)
    }

    /// The problem document.
    pub fn to_json(&self) -> serde_json::Value {
        json!({ "type": self.urn(), "detail": self.detail, "status": self.status.as_u16() })
    }
}

impl From<store::StoreError> for Problem {
    fn from(e: store::StoreError) -> Problem {
        Problem::internal("reading or writing the ACME database", e)
    }
}

impl From<crate::jws::JwsError> for Problem {
    fn from(e: crate::jws::JwsError) -> Problem {
        Problem::new(e.problem_type(), e.to_string())
    }
}
