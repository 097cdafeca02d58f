//! The two CA certificates (self-signed root, issuing intermediate) and the
//! issuing of end-entity certificates from the intermediate.
//!
//! Everything here is pure computation: no files, no database. Signing is
//! `Sync`, so a batch can issue on every core.

use rcgen::{
    BasicConstraints, CertificateParams, CrlDistributionPoint, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    IsCa, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use rustls_pki_types::CertificateDer;
use store::NewCertificate;
use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};
use crate::key::KeyType;
use crate::name::{SubjectAltName, is_dns_name, refuse_control};
use crate::profile::{CaSettings, DnField, Profile};
use crate::serial::Serial;

/// Backdating of notBefore, so clients with a slightly slow clock accept a fresh certificate.
const CLOCK_SKEW: Duration = Duration::minutes(5);

/// What `ca init` creates.
#[derive(Debug, Clone)]
pub struct CaInit {
    /// Name used in both CA subjects (`NAME Root CA`, `NAME Issuing CA`).
    pub name: String,
    /// Key type of both CA keys.
    pub key_type: KeyType,
    /// Validity of both CA certificates, in days.
    pub days: u32,
}

/// A CA certificate with its key.
pub struct CaCertificate {
    /// The certificate, DER.
    pub der: CertificateDer<'static>,
    /// Its private key.
    pub key: KeyPair,
}

/// A freshly made root and intermediate.
pub struct CaMaterial {
    /// Self-signed root (trust anchor).
    pub root: CaCertificate,
    /// Issuing intermediate, signed by the root, path length 0.
    pub intermediate: CaCertificate,
}

fn ca_params(common_name: String, organization: &str, days: u32, path_len: Option<u8>) -> CertificateParams {
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::OrganizationName, organization);
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + Duration::days(i64::from(days));
    params.serial_number = Some(rcgen::SerialNumber::from_slice(Serial::random().as_bytes()));
    params.is_ca = IsCa::Ca(match path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

/// Creates a root and an issuing intermediate.
pub fn create_ca(init: &CaInit) -> Result<CaMaterial> {
    if init.days == 0 {
        return Err(Error::ZeroLifetime);
    }
    let root_key = init.key_type.generate()?;
    let root_params = ca_params(format!("{} Root CA", init.name), &init.name, init.days, None);
    let root_cert = root_params.self_signed(&root_key).map_err(Error::Signing)?;
    let root_issuer = rcgen::Issuer::new(root_params, root_key);

    let inter_key = init.key_type.generate()?;
    let mut inter_params = ca_params(format!("{} Issuing CA", init.name), &init.name, init.days, Some(0));
    inter_params.use_authority_key_identifier_extension = true;
    let inter_cert = inter_params.signed_by(&inter_key, &root_issuer).map_err(Error::Signing)?;

    // Issuer owns the root key; take it back out for writing to disk.
    let root_key = KeyPair::try_from(&rustls_pki_types::PrivatePkcs8KeyDer::from(root_issuer.key().serialize_der()))
        .map_err(Error::KeyGeneration)?;
    Ok(CaMaterial {
        root: CaCertificate { der: root_cert.der().clone(), key: root_key },
        intermediate: CaCertificate { der: inter_cert.der().clone(), key: inter_key },
    })
}

/// An ordered subject distinguished name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject(pub Vec<(DnField, String)>);

impl Subject {
    /// A subject with only a common name.
    pub fn common_name(cn: &str) -> Subject {
        Subject(vec![(DnField::CommonName, cn.to_owned())])
    }

    /// The first common name, if any.
    pub fn cn(&self) -> Option<&str> {
        self.0.iter().find(|(f, _)| *f == DnField::CommonName).map(|(_, v)| v.as_str())
    }

    /// Refuses an attribute with a control character: the subject is printed into logs,
    /// `ca list` and the X-Forwarded-Client-Cert header.
    fn check(&self) -> Result<()> {
        self.0.iter().try_for_each(|(field, value)| refuse_control(value, field.description()))
    }

    fn to_rcgen(&self) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        for (field, value) in &self.0 {
            dn.push(field.to_rcgen(), value.as_str());
        }
        dn
    }
}

impl std::fmt::Display for Subject {
    /// `CN=alice, O=Example` (the order given).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (field, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={}", field.short_name(), value.replace(',', "\\,"))?;
        }
        Ok(())
    }
}

/// What to certify.
#[derive(Debug, Clone)]
pub struct LeafRequest {
    /// Server or client.
    pub profile: Profile,
    /// Subject name.
    pub subject: Subject,
    /// Subject alternative names.
    pub sans: Vec<SubjectAltName>,
    /// Lifetime asked for (the profile default when `None`).
    pub days: Option<u32>,
}

/// An issued end-entity certificate and the record the database keeps of it.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Its serial.
    pub serial: Serial,
    /// The certificate, DER.
    pub der: CertificateDer<'static>,
    /// What the issuance database records.
    pub record: NewCertificate,
}

/// The issuing intermediate, ready to sign, with the settings that govern it.
pub struct Issuer {
    signer: rcgen::Issuer<'static, KeyPair>,
    intermediate: CertificateDer<'static>,
    root: CertificateDer<'static>,
    key_id: String,
    settings: CaSettings,
}

impl Issuer {
    /// Builds an issuer from the intermediate certificate, its key, the root and the settings.
    pub fn new(
        intermediate: CertificateDer<'static>,
        key: KeyPair,
        root: CertificateDer<'static>,
        settings: CaSettings,
    ) -> Result<Issuer> {
        let (_, parsed) = x509_parser::parse_x509_certificate(&intermediate)
            .map_err(|e| Error::Pkcs12(format!("intermediate certificate: {e}")))?;
        let key_id = parsed
            .extensions()
            .iter()
            .find_map(|ext| match ext.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(ki) => Some(hex::encode_upper(ki.0)),
                _ => None,
            })
            .unwrap_or_else(|| hex::encode_upper(parsed.tbs_certificate.serial.to_bytes_be()));
        let signer = rcgen::Issuer::from_ca_cert_der(&intermediate, key).map_err(Error::Signing)?;
        Ok(Issuer { signer, intermediate, root, key_id, settings })
    }

    /// The settings this issuer obeys.
    pub fn settings(&self) -> &CaSettings {
        &self.settings
    }

    /// Hex key identifier of the intermediate; the database groups certificates by it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The intermediate certificate, DER.
    pub fn intermediate(&self) -> &CertificateDer<'static> {
        &self.intermediate
    }

    /// The root certificate, DER.
    pub fn root(&self) -> &CertificateDer<'static> {
        &self.root
    }

    pub(crate) fn signer(&self) -> &rcgen::Issuer<'static, KeyPair> {
        &self.signer
    }

    /// Checks a request (names well-formed, within its profile's policy) and signs a
    /// certificate for `public_key`.
    ///
    /// Server certificates also get their CN as a DNS SAN when it is a host
    /// name, since browsers ignore the CN.
    pub fn issue(&self, request: &LeafRequest, public_key: &impl PublicKeyData, key_is_rsa: bool) -> Result<Issued> {
        let profile = request.profile;
        let policy = self.settings.policy(profile);
        let days = policy.lifetime_days(profile, request.days)?;
        let cn = request.subject.cn().unwrap_or_default();
        let mut sans = request.sans.clone();
        if profile == Profile::Server && is_dns_name(cn) && (cn.contains('.') || cn == "localhost") {
            let as_san = SubjectAltName::Dns(cn.to_ascii_lowercase());
            if !sans.contains(&as_san) {
                sans.insert(0, as_san);
            }
        }
        if cn.is_empty() && sans.is_empty() {
            return Err(Error::NoName);
        }
        request.subject.check()?;
        for name in &sans {
            name.check()?;
            policy.check_name(profile, name)?;
        }

        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or_else(|_| OffsetDateTime::now_utc());
        let serial = Serial::random();
        let mut params = CertificateParams::default();
        params.distinguished_name = request.subject.to_rcgen();
        params.subject_alt_names = sans.iter().map(SubjectAltName::to_rcgen).collect::<Result<_>>()?;
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + Duration::days(i64::from(days));
        params.serial_number = Some(rcgen::SerialNumber::from_slice(serial.as_bytes()));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = if key_is_rsa {
            vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment]
        } else {
            vec![KeyUsagePurpose::DigitalSignature]
        };
        params.extended_key_usages = vec![match profile {
            Profile::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Profile::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        params.use_authority_key_identifier_extension = true;
        if let Some(url) = &self.settings.crl_url {
            params.crl_distribution_points = vec![CrlDistributionPoint { uris: vec![url.clone()] }];
        }
        let cert = params.signed_by(public_key, &self.signer).map_err(Error::Signing)?;
        let record = NewCertificate {
            serial: serial.to_string(),
            issuer: self.key_id.clone(),
            profile: profile.name().to_owned(),
            subject: request.subject.to_string(),
            common_name: cn.to_owned(),
            sans: sans.iter().map(ToString::to_string).collect(),
            not_before: params.not_before.unix_timestamp(),
            not_after: params.not_after.unix_timestamp(),
            der: cert.der().to_vec(),
        };
        Ok(Issued { serial, der: cert.der().clone(), record })
    }

    /// Generates a key of `key_type` and issues a certificate for it.
    pub fn issue_with_new_key(&self, request: &LeafRequest, key_type: KeyType) -> Result<(Issued, KeyPair)> {
        let key = key_type.generate()?;
        let issued = self.issue(request, &key, key_type.is_rsa())?;
        Ok((issued, key))
    }
}
