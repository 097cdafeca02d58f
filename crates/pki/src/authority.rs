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
use crate::external::CaKey;
use crate::host::{CnName, server_cn};
use crate::key::KeyType;
use crate::name::{SubjectAltName, refuse_control};
use crate::profile::{DnField, Profile};
use crate::serial::Serial;
use crate::settings::CaSettings;

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

/// A request that passed every check, ready to sign.
struct Prepared {
    subject: Subject,
    sans: Vec<SubjectAltName>,
    lifetime: Duration,
    /// clientAuth besides the profile's EKU.
    client_auth: bool,
}

/// What an issuance may set beyond its profile's defaults (an ACME profile's lifetime and EKUs).
#[derive(Debug, Clone, Copy, Default)]
pub struct IssueOptions {
    /// Lifetime in minutes instead of the profile's default days (at most its max_days).
    pub minutes: Option<u32>,
    /// clientAuth as well as serverAuth.
    pub client_auth: bool,
}

/// Creates a root and an issuing intermediate.
pub fn create_ca(init: &CaInit) -> Result<CaMaterial> {
    let inter_key = init.key_type.generate()?;
    let (root, der) = create_ca_for_key(init, &inter_key)?;
    Ok(CaMaterial { root, intermediate: CaCertificate { der, key: inter_key } })
}

/// Creates a root (its key generated here) and an issuing intermediate for
/// `intermediate_key`, which may be held elsewhere (a token): the root and the
/// intermediate's certificate.
pub fn create_ca_for_key(
    init: &CaInit,
    intermediate_key: &impl PublicKeyData,
) -> Result<(CaCertificate, CertificateDer<'static>)> {
    if init.days == 0 {
        return Err(Error::ZeroLifetime);
    }
    let (root, intermediate, root_issuer) = root_and_intermediate(init, intermediate_key, init.key_type.generate()?)?;
    // Issuer owns the root key; take it back out for writing to disk.
    let root_key = KeyPair::try_from(&rustls_pki_types::PrivatePkcs8KeyDer::from(root_issuer.key().serialize_der()))
        .map_err(Error::KeyGeneration)?;
    Ok((CaCertificate { der: root, key: root_key }, intermediate))
}

/// Creates a root whose key is `root_key` and an issuing intermediate for
/// `intermediate_key`, both held elsewhere (tokens): the two certificates.
pub fn create_ca_for_keys(
    init: &CaInit,
    intermediate_key: &impl PublicKeyData,
    root_key: CaKey,
) -> Result<(CertificateDer<'static>, CertificateDer<'static>)> {
    if init.days == 0 {
        return Err(Error::ZeroLifetime);
    }
    let (root, intermediate, _) = root_and_intermediate(init, intermediate_key, root_key)?;
    Ok((root, intermediate))
}

/// The self-signed root of `root_key`, the intermediate it signs for
/// `intermediate_key`, and the root's issuer (which owns the key).
fn root_and_intermediate<S: rcgen::SigningKey>(
    init: &CaInit,
    intermediate_key: &impl PublicKeyData,
    root_key: S,
) -> Result<(CertificateDer<'static>, CertificateDer<'static>, rcgen::Issuer<'static, S>)> {
    let root_params = ca_params(format!("{} Root CA", init.name), &init.name, init.days, None);
    let root_cert = root_params.self_signed(&root_key).map_err(Error::Signing)?;
    let root_issuer = rcgen::Issuer::new(root_params, root_key);
    let mut inter_params = ca_params(format!("{} Issuing CA", init.name), &init.name, init.days, Some(0));
    inter_params.use_authority_key_identifier_extension = true;
    let inter_cert = inter_params.signed_by(intermediate_key, &root_issuer).map_err(Error::Signing)?;
    Ok((root_cert.der().clone(), inter_cert.der().clone(), root_issuer))
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

    /// Refuses an attribute with a control character (the subject is printed into logs,
    /// `ca list` and the X-Forwarded-Client-Cert header) or longer than RFC 5280 allows.
    fn check(&self) -> Result<()> {
        self.0.iter().try_for_each(|(field, value)| {
            refuse_control(value, field.description())?;
            field.check_length(value)
        })
    }

    /// Replaces the first common name.
    fn set_cn(&mut self, cn: String) {
        if let Some((_, value)) = self.0.iter_mut().find(|(f, _)| *f == DnField::CommonName) {
            *value = cn;
        }
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
    signer: rcgen::Issuer<'static, CaKey>,
    intermediate: CertificateDer<'static>,
    root: CertificateDer<'static>,
    key_id: Vec<u8>,
    key_id_hex: String,
    settings: CaSettings,
}

impl Issuer {
    /// Builds an issuer from the intermediate certificate, its key, the root and the settings.
    pub fn new(
        intermediate: CertificateDer<'static>,
        key: impl Into<CaKey>,
        root: CertificateDer<'static>,
        settings: CaSettings,
    ) -> Result<Issuer> {
        let key = key.into();
        let (_, parsed) = x509_parser::parse_x509_certificate(&intermediate).map_err(Error::MalformedCaCertificate)?;
        let key_id =
            crate::x509::subject_key_id(&parsed).unwrap_or_else(|| parsed.tbs_certificate.serial.to_bytes_be());
        let key_id_hex = hex::encode_upper(&key_id);
        let signer = rcgen::Issuer::from_ca_cert_der(&intermediate, key).map_err(Error::Signing)?;
        Ok(Issuer { signer, intermediate, root, key_id, key_id_hex, settings })
    }

    /// The settings this issuer obeys.
    pub fn settings(&self) -> &CaSettings {
        &self.settings
    }

    /// Hex key identifier of the intermediate; the database groups certificates by it.
    pub fn key_id(&self) -> &str {
        &self.key_id_hex
    }

    /// The intermediate's key identifier as bytes, for the CRL's authority key identifier.
    pub(crate) fn key_id_bytes(&self) -> &[u8] {
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

    pub(crate) fn signer(&self) -> &rcgen::Issuer<'static, CaKey> {
        &self.signer
    }

    /// Checks a request (subject and names well-formed, within its profile's policy) and
    /// signs a certificate for `public_key`. Nothing is signed unless every check passes.
    ///
    /// A server certificate must name a host in a subject alternative name, since browsers
    /// and rustls ignore the CN: its CN becomes one when it is an IP address (an IP SAN),
    /// `localhost` or a host name of two or more labels (a DNS SAN, an IDN as its A-label,
    /// which then is the CN too). Any other CN is only a display name, and the request must
    /// carry a SAN of its own.
    pub fn issue(&self, request: &LeafRequest, public_key: &impl PublicKeyData, key_is_rsa: bool) -> Result<Issued> {
        self.issue_with(request, public_key, key_is_rsa, IssueOptions::default())
    }

    /// As [`issue`](Self::issue), with a lifetime in hours and EKUs an ACME profile sets.
    pub fn issue_with(
        &self,
        request: &LeafRequest,
        public_key: &impl PublicKeyData,
        key_is_rsa: bool,
        options: IssueOptions,
    ) -> Result<Issued> {
        let profile = request.profile;
        let mut prepared = self.prepare(request)?;
        if let Some(minutes) = options.minutes {
            let max = self.settings.policy(profile).max_days;
            if minutes == 0 || minutes > max.saturating_mul(24 * 60) {
                return Err(Error::LifetimeTooLong { profile: profile.name(), days: minutes.div_ceil(24 * 60), max });
            }
            prepared.lifetime = Duration::minutes(i64::from(minutes));
        }
        prepared.client_auth = options.client_auth;
        self.sign(profile, prepared, public_key, key_is_rsa)
    }

    /// Whether [`issue`](Self::issue) would accept `request`: every check, nothing signed
    /// (so a command can refuse before it creates anything).
    pub fn check_request(&self, request: &LeafRequest) -> Result<()> {
        self.prepare(request).map(drop)
    }

    /// The checked subject, names and lifetime of a request.
    fn prepare(&self, request: &LeafRequest) -> Result<Prepared> {
        let profile = request.profile;
        let policy = self.settings.policy(profile);
        let days = policy.lifetime_days(profile, request.days)?;
        request.subject.check()?;
        let mut subject = request.subject.clone();
        let mut sans = request.sans.clone();
        for name in &sans {
            name.check()?;
        }
        if let (Profile::Server, Some(cn)) = (profile, request.subject.cn()) {
            match server_cn(cn)? {
                CnName::Host(as_san) => {
                    if let SubjectAltName::Dns(a_label) = &as_san
                        && !a_label.eq_ignore_ascii_case(cn)
                    {
                        subject.set_cn(a_label.clone());
                    }
                    if !sans.contains(&as_san) {
                        sans.insert(0, as_san);
                    }
                }
                CnName::Label(why) if sans.is_empty() => {
                    return Err(Error::InvalidName {
                        value: cn.to_owned(),
                        kind: "host name for a server certificate",
                        why: format!(
                            "{why}; a server certificate must name a host, so give a host name or IP address \
                             as the CN, or add a subject alternative name (--san DNS:NAME with `ca issue`, \
                             subjectAltName in the CSR)"
                        ),
                    });
                }
                CnName::Label(_) => {}
            }
        }
        let cn = subject.cn().unwrap_or_default().to_owned();
        if cn.is_empty() && sans.is_empty() {
            return Err(Error::NoName);
        }
        for name in &sans {
            policy.check_name(profile, name)?;
        }
        Ok(Prepared { subject, sans, lifetime: Duration::days(i64::from(days)), client_auth: false })
    }

    /// Signs what [`prepare`](Self::prepare) checked.
    fn sign(
        &self,
        profile: Profile,
        Prepared { subject, sans, lifetime, client_auth }: Prepared,
        public_key: &impl PublicKeyData,
        key_is_rsa: bool,
    ) -> Result<Issued> {
        let cn = subject.cn().unwrap_or_default().to_owned();
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or_else(|_| OffsetDateTime::now_utc());
        let serial = Serial::random();
        let mut params = CertificateParams::default();
        params.distinguished_name = subject.to_rcgen();
        params.subject_alt_names = sans.iter().map(SubjectAltName::to_rcgen).collect::<Result<_>>()?;
        // A few minutes' certificate is not backdated by more than a quarter of its life.
        params.not_before = now - CLOCK_SKEW.min(lifetime / 4);
        params.not_after = now + lifetime;
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
        if client_auth && profile == Profile::Server {
            params.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.use_authority_key_identifier_extension = true;
        if let Some(url) = &self.settings.crl_url {
            params.crl_distribution_points = vec![CrlDistributionPoint { uris: vec![url.clone()] }];
        }
        let cert = params.signed_by(public_key, &self.signer).map_err(Error::Signing)?;
        let record = NewCertificate {
            serial: serial.to_string(),
            issuer: self.key_id_hex.clone(),
            profile: profile.name().to_owned(),
            subject: subject.to_string(),
            common_name: cn,
            sans: sans.iter().map(ToString::to_string).collect(),
            not_before: params.not_before.unix_timestamp(),
            not_after: params.not_after.unix_timestamp(),
            der: cert.der().to_vec(),
            source: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> Issuer {
        let ca = create_ca(&CaInit { name: "t".into(), key_type: KeyType::EcdsaP256, days: 1 }).unwrap();
        Issuer::new(ca.intermediate.der, ca.intermediate.key, ca.root.der, CaSettings::default()).unwrap()
    }

    fn server(cn: &str, sans: &[&str]) -> LeafRequest {
        LeafRequest {
            profile: Profile::Server,
            subject: Subject::common_name(cn),
            sans: sans.iter().map(|s| SubjectAltName::parse(s).unwrap()).collect(),
            days: None,
        }
    }

    #[test]
    fn a_server_cn_that_names_a_host_is_its_san() {
        let issuer = issuer();
        let key = KeyType::EcdsaP256.generate().unwrap();
        for (cn, sans, want_cn) in [
            ("10.1.2.3", vec!["IP:10.1.2.3"], "10.1.2.3"),
            ("2001:db8::1", vec!["IP:2001:db8::1"], "2001:db8::1"),
            ("localhost", vec!["DNS:localhost"], "localhost"),
            ("bücher.example", vec!["DNS:xn--bcher-kva.example"], "xn--bcher-kva.example"),
        ] {
            let issued = issuer.issue(&server(cn, &[]), &key, false).unwrap();
            assert_eq!(issued.record.sans, sans, "{cn}");
            assert_eq!(issued.record.common_name, want_cn, "{cn}");
        }
        // A display name is kept when the request names a host of its own.
        let issued = issuer.issue(&server("single", &["DNS:db"]), &key, false).unwrap();
        assert_eq!((issued.record.common_name.as_str(), issued.record.sans), ("single", vec!["DNS:db".to_owned()]));
    }

    #[test]
    fn a_server_certificate_without_a_host_is_refused_before_signing() {
        let issuer = issuer();
        let key = KeyType::EcdsaP256.generate().unwrap();
        for (cn, sans, said) in [
            ("hello world", &[][..], "a space"),
            ("single", &[], "single label"),
            ("foo_bar.example", &[], "use a hyphen"),
            ("999.1.1.1", &["DNS:a.example"][..], "IPv4"),
        ] {
            let err = issuer.issue(&server(cn, sans), &key, false).unwrap_err();
            let message = err.to_string();
            assert!(matches!(err, Error::InvalidName { .. }), "{cn}: {err:?}");
            assert!(message.contains(said), "{cn}: {message}");
        }
        let err = issuer.issue(&server("single", &[]), &key, false).unwrap_err().to_string();
        assert!(err.contains("--san DNS:NAME"), "the refusal says what to pass: {err}");
        let long = format!("{}.example.com", "a".repeat(60));
        let err = issuer.issue(&server(&long, &[]), &key, false).unwrap_err().to_string();
        assert!(err.contains("at most 64") && err.contains("ub-common-name"), "{err}");
        // A client certificate names a person: its CN needs no host.
        let client = LeafRequest { profile: Profile::Client, ..server("Alice Example", &[]) };
        assert!(issuer.issue(&client, &key, false).is_ok());
    }

    #[test]
    fn a_csr_goes_through_the_same_checks() {
        let issuer = issuer();
        let policy = &issuer.settings().server;
        let csr = |cn: &str, sans: Vec<rcgen::SanType>| {
            let key = KeyType::EcdsaP256.generate().unwrap();
            let mut params = rcgen::CertificateParams::default();
            params.distinguished_name.push(rcgen::DnType::CommonName, cn);
            params.subject_alt_names = sans;
            params.serialize_request(&key).unwrap().pem().unwrap()
        };
        let sign = |pem: &str| {
            let csr = crate::CheckedCsr::parse(pem.as_bytes())?;
            issuer.issue(&csr.to_request(Profile::Server, policy, None), csr.public_key(), csr.key_is_rsa())
        };
        let err = sign(&csr("hello world", vec![])).unwrap_err().to_string();
        assert!(err.contains("a server certificate must name a host"), "{err}");
        let as_dns = vec![rcgen::SanType::DnsName("10.0.0.1".try_into().unwrap())];
        let err = sign(&csr("x", as_dns)).unwrap_err().to_string();
        assert!(err.contains("IP:10.0.0.1"), "{err}");
        let issued = sign(&csr("10.0.0.1", vec![])).unwrap();
        assert_eq!(issued.record.sans, ["IP:10.0.0.1"]);
    }
}
