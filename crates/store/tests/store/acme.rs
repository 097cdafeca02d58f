//! The ACME server's state: nonces, accounts, orders, authorizations, challenges, EAB keys.

use store::{AcmeAccount, AcmeAuthorization, AcmeChallenge, AcmeEabKey, AcmeIdentifier, AcmeOrder, AcmeStore};

use crate::fresh::{Fresh, on_both_backends};

on_both_backends!(
    a_nonce_is_taken_once_and_not_after_it_expires,
    accounts_are_unique_by_key,
    orders_authorizations_and_challenges_move_once,
    failed_validations_are_counted_for_rate_limits,
    an_eab_key_binds_one_account_until_revoked,
);

pub fn account(id: &str, thumbprint: &str) -> AcmeAccount {
    AcmeAccount {
        id: id.into(),
        thumbprint: thumbprint.into(),
        jwk: "{}".into(),
        contact: vec!["mailto:a@example.test".into()],
        status: "valid".into(),
        eab_kid: None,
        created_at: 1,
    }
}

fn identifier() -> AcmeIdentifier {
    AcmeIdentifier { kind: "dns".into(), value: "x.example.test".into() }
}

fn challenge(id: &str, kind: &str) -> AcmeChallenge {
    AcmeChallenge {
        id: id.into(),
        kind: kind.into(),
        token: format!("token-{id}"),
        status: "pending".into(),
        validated_at: None,
        error: None,
    }
}

/// A pending order `o1` of account `a1` with one authorization `z1` (challenges `c1`, `c2`).
pub fn order() -> (AcmeOrder, AcmeAuthorization) {
    let authorization = AcmeAuthorization {
        id: "z1".into(),
        account_id: "a1".into(),
        identifier: identifier(),
        wildcard: false,
        status: "pending".into(),
        expires: 1000,
        challenges: vec![challenge("c1", "http-01"), challenge("c2", "dns-01")],
    };
    let order = AcmeOrder {
        id: "o1".into(),
        account_id: "a1".into(),
        status: "pending".into(),
        identifiers: vec![identifier()],
        authorizations: vec!["z1".into()],
        not_before: Some(3),
        not_after: None,
        profile: Some("tlsserver".into()),
        replaces: None,
        expires: 1000,
        error: None,
        certificate_serial: None,
        created_at: 5,
    };
    (order, authorization)
}

async fn a_nonce_is_taken_once_and_not_after_it_expires(db: &Fresh) {
    let store = db.open().await;
    store.nonce_insert("n1", 100).await.unwrap();
    store.nonce_insert("n2", 100).await.unwrap();
    assert!(store.nonce_take("n1", 50).await.unwrap());
    assert!(!store.nonce_take("n1", 50).await.unwrap(), "a nonce was used twice");
    assert!(!store.nonce_take("n2", 101).await.unwrap(), "an expired nonce was taken");
    assert!(!store.nonce_take("never", 50).await.unwrap());
    store.nonce_insert("n3", 100).await.unwrap();
    assert_eq!(store.nonce_sweep(101).await.unwrap(), 2, "the expired n2 and n3 are swept");
}

async fn accounts_are_unique_by_key(db: &Fresh) {
    let store = db.open().await;
    assert!(store.account_insert(&account("a1", "t1")).await.unwrap());
    assert!(!store.account_insert(&account("a2", "t1")).await.unwrap(), "two accounts with one key");
    assert_eq!(store.account_by_thumbprint("t1").await.unwrap().unwrap(), account("a1", "t1"));
    assert!(store.account_insert(&account("a3", "t3")).await.unwrap());
    assert!(!store.account_key_change("a3", "t1", "{}").await.unwrap(), "a key taken from another account");
    assert!(store.account_key_change("a3", "t4", "{\"k\":1}").await.unwrap());
    assert_eq!(store.account("a3").await.unwrap().unwrap().thumbprint, "t4");
    store.account_update("a3", &[], "deactivated").await.unwrap();
    let a3 = store.account("a3").await.unwrap().unwrap();
    assert_eq!((a3.status.as_str(), a3.contact.len()), ("deactivated", 0));
    assert!(store.account("a9").await.unwrap().is_none());
}

async fn orders_authorizations_and_challenges_move_once(db: &Fresh) {
    let store = db.open().await;
    store.account_insert(&account("a1", "t1")).await.unwrap();
    let (order, authorization) = order();
    store.order_insert(&order, std::slice::from_ref(&authorization)).await.unwrap();
    assert_eq!(store.order("o1").await.unwrap().unwrap(), order);
    assert_eq!(store.authorization("z1").await.unwrap().unwrap(), authorization);
    assert_eq!(store.orders_of("a1").await.unwrap(), ["o1"]);
    assert_eq!(store.orders_since("a1", 5).await.unwrap(), 1);
    assert_eq!(store.orders_since("a1", 6).await.unwrap(), 0);

    let (found, c2) = store.challenge("c2").await.unwrap().unwrap();
    assert_eq!((found.id.as_str(), c2.kind.as_str()), ("z1", "dns-01"));
    assert!(store.challenge_transition("c1", "pending", "processing", None, None).await.unwrap());
    assert!(!store.challenge_transition("c1", "pending", "processing", None, None).await.unwrap());
    assert!(store.challenge_transition("c1", "processing", "valid", Some(7), None).await.unwrap());
    let identifier = identifier();
    assert!(store.authorization_reusable("a1", &identifier, false, 10).await.unwrap().is_none());
    store.authorization_status("z1", "valid", None).await.unwrap();
    let reused = store.authorization_reusable("a1", &identifier, false, 10).await.unwrap().unwrap();
    assert_eq!(reused.challenges[0].validated_at, Some(7));
    assert!(store.authorization_reusable("a1", &identifier, true, 10).await.unwrap().is_none());
    assert!(store.authorization_reusable("a1", &identifier, false, 1000).await.unwrap().is_none());
    store.authorization_status("z1", "valid", Some(2000)).await.unwrap();
    assert!(store.authorization_reusable("a1", &identifier, false, 1000).await.unwrap().is_some());

    assert!(store.order_transition("o1", "pending", "ready", None, None).await.unwrap());
    assert!(!store.order_transition("o1", "pending", "ready", None, None).await.unwrap());
    assert!(store.order_transition("o1", "ready", "valid", None, Some("AB")).await.unwrap());
    assert_eq!(store.order_by_certificate("AB").await.unwrap().unwrap().status, "valid");
    assert!(store.order_by_certificate("CD").await.unwrap().is_none());
}

async fn failed_validations_are_counted_for_rate_limits(db: &Fresh) {
    let store = db.open().await;
    store.account_insert(&account("a1", "t1")).await.unwrap();
    let (order, authorization) = order();
    store.order_insert(&order, &[authorization]).await.unwrap();
    let problem = r#"{"type":"urn:ietf:params:acme:error:connection"}"#;
    assert!(store.challenge_transition("c2", "pending", "invalid", None, Some(problem)).await.unwrap());
    let (_, c2) = store.challenge("c2").await.unwrap().unwrap();
    assert_eq!((c2.status.as_str(), c2.error.as_deref()), ("invalid", Some(problem)));
    assert_eq!(store.failed_validations_since("a1", 0).await.unwrap(), 1);
    assert_eq!(store.failed_validations_since("a2", 0).await.unwrap(), 0);
    assert!(store.order_transition("o1", "pending", "invalid", Some(problem), None).await.unwrap());
    assert_eq!(store.order("o1").await.unwrap().unwrap().error.as_deref(), Some(problem));
}

async fn an_eab_key_binds_one_account_until_revoked(db: &Fresh) {
    let store = db.open().await;
    let key = |kid: &str, created_at| AcmeEabKey {
        kid: kid.into(),
        label: format!("team {kid}"),
        hmac_key: vec![0, 1, 2, 255],
        created_at,
        revoked_at: None,
        account_id: None,
    };
    store.eab_insert(&key("k2", 1)).await.unwrap();
    store.eab_insert(&key("k1", 2)).await.unwrap();
    let kids: Vec<String> = store.eab_keys().await.unwrap().into_iter().map(|k| k.kid).collect();
    assert_eq!(kids, ["k2", "k1"], "oldest first");
    assert_eq!(store.eab_key("k1").await.unwrap().unwrap(), key("k1", 2));
    assert!(store.eab_bind("k1", "a1").await.unwrap());
    assert!(!store.eab_bind("k1", "a2").await.unwrap(), "one key bound two accounts");
    assert!(store.eab_revoke("k2", 9).await.unwrap());
    assert!(store.eab_revoke("k2", 10).await.unwrap());
    assert_eq!(store.eab_key("k2").await.unwrap().unwrap().revoked_at, Some(9), "the first revocation stands");
    assert!(!store.eab_bind("k2", "a3").await.unwrap(), "a revoked key bound an account");
    assert!(!store.eab_revoke("k9", 9).await.unwrap());
    assert!(store.eab_key("k9").await.unwrap().is_none());
}
