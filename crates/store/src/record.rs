//! The plain-data records that cross the [`Store`](crate::Store) boundary.

/// A certificate just issued, to be recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCertificate {
    /// Serial number as uppercase hex without separators (as `openssl x509 -serial` prints it).
    pub serial: String,
    /// Key identifier (hex) of the issuing CA.
    pub issuer: String,
    /// Profile the certificate was issued under (`server`, `client`).
    pub profile: String,
    /// Subject distinguished name, RFC 4514 form.
    pub subject: String,
    /// Subject common name, empty when the subject has none.
    pub common_name: String,
    /// Subject alternative names as `DNS:x`, `IP:x`, `email:x`, `URI:x`.
    pub sans: Vec<String>,
    /// Start of validity, unix seconds.
    pub not_before: i64,
    /// End of validity, unix seconds.
    pub not_after: i64,
    /// The certificate, DER.
    #[serde(with = "crate::snapshot::base64_bytes")]
    pub der: Vec<u8>,
    /// Where the request came from when not the CLI: `acme:ACCOUNT/ORDER` for ACME.
    pub source: Option<String>,
}

/// A revocation: when, and why (RFC 5280 CRLReason code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// Revocation time, unix seconds.
    pub revoked_at: i64,
    /// RFC 5280 §5.3.1 reason code.
    pub reason: u8,
}

/// A recorded certificate with its revocation state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateRecord {
    /// The certificate as issued.
    pub certificate: NewCertificate,
    /// When it was recorded, unix seconds.
    pub issued_at: i64,
    /// Set once revoked.
    pub revocation: Option<Revocation>,
    /// Whether its files reached their owner. A certificate recorded with
    /// [`Store::record_undelivered`](crate::Store::record_undelivered) is not
    /// until [`Store::mark_delivered`](crate::Store::mark_delivered); it is
    /// not counted as valid meanwhile.
    pub delivered: bool,
}

/// A revoked certificate as a CRL lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Serial, uppercase hex.
    pub serial: String,
    /// The revocation.
    pub revocation: Revocation,
}

/// What [`Store::revoke`](crate::Store::revoke) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// The certificate is now revoked.
    Revoked,
    /// It was revoked before; the earlier revocation stands.
    AlreadyRevoked(Revocation),
    /// No certificate has this serial.
    NotFound,
}

/// What [`Store::release_hold`](crate::Store::release_hold) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// The hold is released: the certificate is valid again.
    Released,
    /// Not on hold: not revoked (`None`) or revoked for another reason.
    NotOnHold(Option<Revocation>),
    /// No certificate has this serial.
    NotFound,
}

/// Which certificates to list. Status is judged at `now` (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFilter {
    /// Everything recorded.
    All,
    /// Delivered, not revoked and not expired at `now`.
    Valid {
        /// The time to judge expiry at.
        now: i64,
    },
    /// Revoked (expired or not).
    Revoked,
    /// Not revoked, but past not-after at `now`.
    Expired {
        /// The time to judge expiry at.
        now: i64,
    },
    /// Recorded, never delivered, not revoked.
    Undelivered,
}

/// What receives the revoked serials of one issuer as
/// [`Store::revoked_serials`](crate::Store::revoked_serials) reads them: one at a
/// time, each freed once handed over, so no one holds them all as text (at 10 million
/// serials that was 720 MB for a moment, beside a compact set of 168 MB).
pub trait RevokedSerialsSink: Send {
    /// How many serials follow; told once, before the first.
    fn expect(&mut self, count: usize);
    /// The next serial, uppercase hex; they come in no particular order.
    fn serial(&mut self, serial: &str);
}

/// The serials collected as text, for a caller that wants them all (a few, in tests).
impl RevokedSerialsSink for Vec<String> {
    fn expect(&mut self, count: usize) {
        self.reserve(count);
    }
    fn serial(&mut self, serial: &str) {
        self.push(serial.to_owned());
    }
}

/// One change of a certificate's revocation state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationChange {
    /// Serial, uppercase hex.
    pub serial: String,
    /// `true`: revoked; `false`: a certificateHold released.
    pub revoked: bool,
}

/// The changes of one issuer's revocations after a cursor, oldest first, and the
/// cursor to ask with next time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationChanges {
    /// The changes, in the order they were made.
    pub changes: Vec<RevocationChange>,
    /// The position in the change log these changes reach. Lower than the cursor
    /// asked with only when the database is not the one that cursor came from (a
    /// restored or copied database): then read the whole set afresh
    /// ([`Store::revoked_serials`](crate::Store::revoked_serials)).
    pub cursor: u64,
}
