//! CRL generation with 100,000 revoked entries, and single-certificate issuance.

use criterion::{Criterion, criterion_group, criterion_main};
use pki::{CaInit, CaSettings, Issuer, KeyType, LeafRequest, Profile, Serial, Subject, build_crl, create_ca};
use store::{Revocation, RevokedEntry};
use time::{Duration, OffsetDateTime};

fn issuer() -> Issuer {
    let material = create_ca(&CaInit { name: "bench".into(), key_type: KeyType::EcdsaP256, days: 30 }).unwrap();
    Issuer::new(material.intermediate.der, material.intermediate.key, material.root.der, CaSettings::default()).unwrap()
}

fn crl_100k(c: &mut Criterion) {
    let issuer = issuer();
    let now = OffsetDateTime::now_utc();
    let entries: Vec<RevokedEntry> = (0..100_000)
        .map(|i| RevokedEntry {
            serial: Serial::random().to_string(),
            revocation: Revocation { revoked_at: now.unix_timestamp() - i, reason: (i % 2) as u8 },
        })
        .collect();
    let mut group = c.benchmark_group("crl");
    group.sample_size(10);
    group.bench_function("build_and_sign_100k_entries", |b| {
        b.iter(|| build_crl(&issuer, 1, &entries, now, now + Duration::days(7)).unwrap())
    });
    group.finish();
}

fn issue_one(c: &mut Criterion) {
    let issuer = issuer();
    let request =
        LeafRequest { profile: Profile::Client, subject: Subject::common_name("alice"), sans: vec![], days: None };
    c.bench_function("issue_client_p256_with_new_key", |b| {
        b.iter(|| issuer.issue_with_new_key(&request, KeyType::EcdsaP256).unwrap())
    });
}

criterion_group!(benches, crl_100k, issue_one);
criterion_main!(benches);
