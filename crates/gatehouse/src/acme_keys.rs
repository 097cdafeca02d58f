//! `gatehouse ca acme eab new|list|revoke`: the keys of external account
//! binding, which an ACME server with `eab_required = true` asks of every new
//! account (one key, one account), as step-ca and ZeroSSL hand them out.

use std::process::ExitCode;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use store::{AcmeEabKey, AcmeStore, Database};

use crate::Failure;
use crate::cli::EabCommand;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn random(bytes: usize) -> Vec<u8> {
    let mut out = vec![0u8; bytes];
    // aws-lc's generator; failure would mean no entropy at all.
    aws_lc_rs::rand::fill(&mut out).expect("the system random generator works");
    out
}

/// What a key is now: unused, bound to an account, or revoked.
fn state(key: &AcmeEabKey) -> String {
    match (&key.revoked_at, &key.account_id) {
        (Some(at), _) => format!("revoked {}", pki::rfc3339(*at)),
        (None, Some(account)) => format!("used by account {account}"),
        (None, None) => "unused".to_owned(),
    }
}

pub async fn eab(store: &Database, command: EabCommand) -> Result<ExitCode, Failure> {
    match command {
        EabCommand::New { label } => {
            let key = AcmeEabKey {
                kid: URL_SAFE_NO_PAD.encode(random(12)),
                label,
                hmac_key: random(32),
                created_at: now(),
                revoked_at: None,
                account_id: None,
            };
            store.eab_insert(&key).await?;
            println!("kid:      {}", key.kid);
            println!("hmac key: {}", URL_SAFE_NO_PAD.encode(&key.hmac_key));
            println!("(shown once; e.g. certbot --eab-kid KID --eab-hmac-key KEY, lego --eab --kid KID --hmac KEY)");
        }
        EabCommand::List { json } => {
            let keys = store.eab_keys().await?;
            if json {
                let list: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({
                            "kid": k.kid,
                            "label": k.label,
                            "created_at": pki::rfc3339(k.created_at),
                            "revoked_at": k.revoked_at.map(pki::rfc3339),
                            "account": k.account_id,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                println!("{:<18}{:<22}{:<30}LABEL", "KID", "CREATED", "STATE");
                for k in &keys {
                    println!("{:<18}{:<22}{:<30}{}", k.kid, pki::rfc3339(k.created_at), state(k), k.label);
                }
            }
        }
        EabCommand::Revoke { kid } => {
            let Some(key) = store.eab_key(&kid).await? else {
                return Err(Failure::failed(format!(
                    "no external account binding key has kid {kid:?}; `gatehouse ca acme eab list` shows them"
                )));
            };
            if key.revoked_at.is_some() {
                return Err(Failure::failed(format!("key {kid} is {} already; nothing changed", state(&key))));
            }
            store.eab_revoke(&kid, now()).await?;
            match key.account_id {
                Some(account) => {
                    println!("revoked {kid}: no new account can use it (account {account}, made with it, stays valid)")
                }
                None => println!("revoked {kid}: no account can be created with it"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
