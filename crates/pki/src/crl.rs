//! Revocation reasons (RFC 5280 §5.3.1) and certificate revocation lists
//! signed by the issuing CA.

use std::fmt;
use std::str::FromStr;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use store::RevokedEntry;
use time::OffsetDateTime;

use crate::authority::Issuer;
use crate::error::{Error, Result};
use crate::serial::Serial;

/// Why a certificate was revoked (RFC 5280 CRLReason; 7 is unused and
/// removeFromCRL only exists in delta CRLs, so neither can be chosen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RevocationReason {
    /// No reason given (encoded without a reasonCode extension, as RFC 5280 recommends).
    #[default]
    Unspecified,
    /// The certificate's private key leaked.
    KeyCompromise,
    /// The CA's key leaked.
    CaCompromise,
    /// The subject's name or affiliation changed.
    AffiliationChanged,
    /// Replaced by another certificate.
    Superseded,
    /// No longer needed.
    CessationOfOperation,
    /// Temporarily on hold.
    CertificateHold,
    /// A privilege in it was withdrawn.
    PrivilegeWithdrawn,
    /// An attribute authority was compromised.
    AaCompromise,
}

impl RevocationReason {
    const ALL: [RevocationReason; 9] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::CaCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::CertificateHold,
        RevocationReason::PrivilegeWithdrawn,
        RevocationReason::AaCompromise,
    ];

    /// The RFC 5280 name (`keyCompromise`).
    pub fn name(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "keyCompromise",
            RevocationReason::CaCompromise => "cACompromise",
            RevocationReason::AffiliationChanged => "affiliationChanged",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessationOfOperation",
            RevocationReason::CertificateHold => "certificateHold",
            RevocationReason::PrivilegeWithdrawn => "privilegeWithdrawn",
            RevocationReason::AaCompromise => "aACompromise",
        }
    }

    /// The CRLReason code.
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::CaCompromise => 2,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::CertificateHold => 6,
            RevocationReason::PrivilegeWithdrawn => 9,
            RevocationReason::AaCompromise => 10,
        }
    }

    /// The reason for a stored code (unknown codes read as unspecified).
    pub fn from_code(code: u8) -> RevocationReason {
        RevocationReason::ALL.into_iter().find(|r| r.code() == code).unwrap_or_default()
    }

    fn to_rcgen(self) -> Option<rcgen::RevocationReason> {
        Some(match self {
            RevocationReason::Unspecified => return None,
            RevocationReason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
            RevocationReason::CaCompromise => rcgen::RevocationReason::CaCompromise,
            RevocationReason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
            RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
            RevocationReason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
            RevocationReason::CertificateHold => rcgen::RevocationReason::CertificateHold,
            RevocationReason::PrivilegeWithdrawn => rcgen::RevocationReason::PrivilegeWithdrawn,
            RevocationReason::AaCompromise => rcgen::RevocationReason::AaCompromise,
        })
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for RevocationReason {
    type Err = Error;
    /// Accepts the RFC name in any case, and kebab or snake case (`key-compromise`).
    fn from_str(s: &str) -> Result<Self> {
        let folded: String = s.chars().filter(|c| *c != '-' && *c != '_').collect::<String>().to_ascii_lowercase();
        RevocationReason::ALL
            .into_iter()
            .find(|r| r.name().to_ascii_lowercase() == folded)
            .ok_or_else(|| Error::UnknownReason(s.to_owned()))
    }
}

/// Builds and signs a CRL (DER) listing `revoked`, numbered `number`.
pub fn build_crl(
    issuer: &Issuer,
    number: u64,
    revoked: &[RevokedEntry],
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<Vec<u8>> {
    if next_update <= this_update {
        return Err(Error::CrlValidity);
    }
    let revoked_certs = revoked
        .iter()
        .map(|entry| {
            let serial: Serial = entry.serial.parse()?;
            Ok(RevokedCertParams {
                serial_number: SerialNumber::from_slice(serial.as_bytes()),
                revocation_time: OffsetDateTime::from_unix_timestamp(entry.revocation.revoked_at)
                    .unwrap_or(this_update),
                reason_code: RevocationReason::from_code(entry.revocation.reason).to_rcgen(),
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::PreSpecified(issuer.key_id_bytes().to_vec()),
    };
    let crl = params.signed_by(issuer.signer()).map_err(Error::Signing)?;
    Ok(crl.der().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_names_parse_in_several_spellings() {
        assert_eq!("keyCompromise".parse::<RevocationReason>().unwrap(), RevocationReason::KeyCompromise);
        assert_eq!("key-compromise".parse::<RevocationReason>().unwrap(), RevocationReason::KeyCompromise);
        assert_eq!("CACOMPROMISE".parse::<RevocationReason>().unwrap(), RevocationReason::CaCompromise);
        assert!("removeFromCRL".parse::<RevocationReason>().is_err());
        for r in RevocationReason::ALL {
            assert_eq!(RevocationReason::from_code(r.code()), r);
        }
    }
}
