//! A request to its answer, by the spec's rules, in this order:
//! 1. no opcode or an unknown one → 0x05; a response opcode → 0x06; a digest
//!    whose length is not the opcode's hash's → 0x01 (the codec's
//!    [`Message::check_request`]);
//! 2. ping → pong with the payload echoed;
//! 3. seal, unseal and custom (optional operations, not offered) → 0x05;
//! 4. no SKI → 0x08; an SKI of no key here → 0x02 (the legacy certificate
//!    digest is not used for lookup, as the spec says);
//! 5. the operation with that key ([`Operation`]), whose failures are 0x01,
//!    or 0x08 when a token failed (rather than refused).

use std::sync::Arc;
use std::time::Instant;

use keyless::{ErrorCode, Message, Opcode};

use crate::keys::{Key, KeyStore};
use crate::metrics::{Metrics, family};
use crate::operation::{OperationError, perform};

/// What to do with one request.
// Lives only until the reader matches on it, once per request; boxing the
// message would cost an allocation per answer to save a move.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Answer {
    /// The response, known without a private-key operation.
    Now(Message),
    /// A private-key operation to run (off the reading task).
    Operation(Operation),
}

/// A private-key operation, with what it needs to answer.
pub(crate) struct Operation {
    id: u32,
    opcode: Opcode,
    key: Arc<Key>,
    payload: Vec<u8>,
}

/// The answer to `request`; answers given now are counted in `metrics` here,
/// operations when they run.
pub(crate) fn dispatch(keys: &KeyStore, metrics: &Metrics, request: Message) -> Answer {
    let family = family(request.opcode);
    let answer = decide(keys, request);
    if let Answer::Now(response) = &answer {
        metrics.answered(family, response.error_code().map_or(Ok(()), Err));
    }
    answer
}

fn decide(keys: &KeyStore, request: Message) -> Answer {
    let id = request.id;
    let opcode = match request.check_request() {
        Ok(opcode) => opcode,
        Err(code) => return Answer::Now(Message::error(id, code)),
    };
    match opcode {
        Opcode::Ping => return Answer::Now(Message::pong(id, request.payload.unwrap_or_default())),
        Opcode::Seal | Opcode::Unseal | Opcode::Custom => return Answer::Now(Message::error(id, ErrorCode::BadOpcode)),
        _ => {}
    }
    let Some(ski) = request.ski else {
        return Answer::Now(Message::error(id, ErrorCode::Internal));
    };
    let Some(key) = keys.get(&ski) else {
        tracing::debug!(%ski, id, "no key with this SKI");
        return Answer::Now(Message::error(id, ErrorCode::KeyNotFound));
    };
    Answer::Operation(Operation { id, opcode, key: key.clone(), payload: request.payload.unwrap_or_default() })
}

impl Operation {
    /// Whether the operation waits on a token (see `connection`): it is run on
    /// a blocking thread.
    pub(crate) fn in_token(&self) -> bool {
        self.key.in_token()
    }

    /// Performs the operation (CPU-bound: microseconds for ECDSA and Ed25519,
    /// about a millisecond for RSA-2048; a token's own time for a key in a
    /// token) and gives the response.
    pub(crate) fn run(self, metrics: &Metrics) -> Message {
        let started = Instant::now();
        let result = perform(&self.key, self.opcode, &self.payload);
        metrics.operation_took(self.key.key_type(), started.elapsed());
        let family = family(Some(self.opcode));
        match result {
            Ok(signature) => {
                metrics.answered(family, Ok(()));
                Message::success(self.id, signature)
            }
            Err(why) => {
                let code = why.code();
                log_failure(&self, &why);
                metrics.answered(family, Err(code));
                Message::error(self.id, code)
            }
        }
    }
}

fn log_failure(operation: &Operation, why: &OperationError) {
    let (ski, key_type) = (operation.key.ski(), operation.key.key_type());
    match why {
        // A token that refuses or fails is worth an operator's attention.
        OperationError::TokenRefused(_) | OperationError::TokenFailed(_) => tracing::warn!(
            %ski,
            %key_type,
            origin = %operation.key.origin(),
            opcode = %operation.opcode,
            error = %why,
            answered = %why.code(),
            "token operation failed"
        ),
        _ => tracing::debug!(%ski, %key_type, opcode = %operation.opcode, error = %why, "operation failed (0x01)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keyless::{KeySelector, Ski};

    fn now(answer: Answer) -> Message {
        match answer {
            Answer::Now(message) => message,
            Answer::Operation(_) => panic!("expected an answer without a key"),
        }
    }

    #[test]
    fn requests_refused_before_any_key_is_used() {
        let (keys, metrics) = (KeyStore::default(), Metrics::new());
        let code = |request| now(dispatch(&keys, &metrics, request)).error_code();
        let ski = KeySelector::Ski(Ski([1; 20]));
        assert_eq!(code(Message::request(1, Opcode::EcdsaSignSha256, ski, vec![0; 32])), Some(ErrorCode::KeyNotFound));
        assert_eq!(
            code(Message::request(1, Opcode::EcdsaSignSha256, ski, vec![0; 31])),
            Some(ErrorCode::CryptoFailure)
        );
        assert_eq!(code(Message::success(1, vec![])), Some(ErrorCode::UnexpectedOpcode));
        assert_eq!(code(Message::request(1, Opcode::Seal, ski, vec![])), Some(ErrorCode::BadOpcode));
        let digest = KeySelector::CertificateDigest(keyless::CertificateDigest([0; 32]));
        assert_eq!(code(Message::request(1, Opcode::RsaSignSha256, digest, vec![0; 32])), Some(ErrorCode::Internal));
        let pong = now(dispatch(&keys, &metrics, Message::ping(9, b"hi".to_vec())));
        assert_eq!((pong.id, pong.opcode, pong.payload()), (9, Some(Opcode::Pong), &b"hi"[..]));
        assert!(metrics.render().contains("keyserver_errors_total{code=\"key_not_found\"} 1"), "{}", metrics.render());
    }
}
