//! The TSIG key (RFC 8945) that signs RFC 2136 updates: its name and algorithm from the
//! config, its secret from `key_secret_file`, which holds either the base64 secret alone
//! or the block `tsig-keygen` prints:
//!
//! ```text
//! key "acme-update" {
//!         algorithm hmac-sha256;
//!         secret "aGVsbG8...=";
//! };
//! ```
//!
//! The secret never leaves this module in a message or a log line.

use std::fs;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hickory_proto::rr::Name;
use hickory_proto::rr::TSigner;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;

use super::DnsError;

/// How far apart (seconds) this host's and the server's clocks may be: RFC 8945's
/// recommended fudge, as nsupdate and BIND use it.
const FUDGE: u16 = 300;

/// `key_algorithm` as a TSIG algorithm.
pub(super) fn algorithm(name: &str) -> Result<TsigAlgorithm, DnsError> {
    let normal = name.trim_end_matches('.').to_ascii_lowercase();
    match normal.as_str() {
        "hmac-sha256" => Ok(TsigAlgorithm::HmacSha256),
        "hmac-sha384" => Ok(TsigAlgorithm::HmacSha384),
        "hmac-sha512" => Ok(TsigAlgorithm::HmacSha512),
        _ => Err(DnsError::UnknownAlgorithm(name.to_owned())),
    }
}

/// The signer for key `key_name` with `algorithm`, its secret read from `path`.
pub(super) fn load(key_name: &str, algorithm_name: &str, path: &Path) -> Result<TSigner, DnsError> {
    let algorithm = algorithm(algorithm_name)?;
    let name = Name::from_ascii(key_name)
        .map_err(|e| DnsError::KeyName { name: key_name.to_owned(), reason: e.to_string() })?;
    let text =
        fs::read_to_string(path).map_err(|source| DnsError::SecretFileUnreadable { path: path.to_owned(), source })?;
    let invalid = |reason: String| DnsError::SecretFileInvalid { path: path.to_owned(), reason };
    let secret = secret(&text, key_name, algorithm_name).map_err(invalid)?;
    TSigner::new(secret, algorithm, name, FUDGE).map_err(|e| invalid(format!("cannot be used: {e}")))
}

/// The decoded secret of a secret file's text; `Err` completes "the TSIG secret file F ...".
fn secret(text: &str, key_name: &str, algorithm_name: &str) -> Result<Vec<u8>, String> {
    let encoded = if text.contains('{') {
        let block = KeyBlock::parse(text)?;
        if let Some(name) = block.name
            && !same_name(name, key_name)
        {
            return Err(format!("is the block of key \"{name}\", but key_name is \"{key_name}\""));
        }
        if let Some(algorithm) = block.algorithm
            && !same_name(algorithm, algorithm_name)
        {
            return Err(format!("says algorithm {algorithm}, but key_algorithm is {algorithm_name}"));
        }
        block.secret
    } else {
        text.trim()
    };
    if encoded.is_empty() {
        return Err("holds an empty secret".to_owned());
    }
    let secret = STANDARD
        .decode(encoded)
        .map_err(|_| "does not hold a base64 secret (nor a tsig-keygen `key` block)".to_owned())?;
    if secret.is_empty() {
        return Err("holds an empty secret".to_owned());
    }
    Ok(secret)
}

/// DNS names compared as DNS compares them: case aside, final dot aside.
fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.').eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// The statements of a named.conf `key` block that matter here.
struct KeyBlock<'a> {
    name: Option<&'a str>,
    algorithm: Option<&'a str>,
    secret: &'a str,
}

impl<'a> KeyBlock<'a> {
    fn parse(text: &'a str) -> Result<KeyBlock<'a>, String> {
        let (head, body) = text.split_once('{').ok_or("has no `{` to open its key block")?;
        let name = head.trim().strip_prefix("key").map(|n| n.trim().trim_matches('"'));
        let mut algorithm = None;
        let mut secret = None;
        for statement in body.split(';') {
            let statement = statement.trim().trim_start_matches('}').trim();
            if let Some(value) = statement.strip_prefix("algorithm") {
                algorithm = Some(value.trim().trim_matches('"'));
            } else if let Some(value) = statement.strip_prefix("secret") {
                secret = Some(value.trim().trim_matches('"'));
            }
        }
        let secret = secret.ok_or("has a key block without a `secret \"...\";` statement")?;
        Ok(KeyBlock { name: name.filter(|n| !n.is_empty()), algorithm, secret })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "key \"acme-update\" {\n\talgorithm hmac-sha256;\n\tsecret \"c2VjcmV0\";\n};\n";

    #[test]
    fn the_secret_comes_from_the_bare_file_or_the_block() {
        assert_eq!(secret("c2VjcmV0\n\n", "acme-update", "hmac-sha256").unwrap(), b"secret");
        assert_eq!(secret(BLOCK, "acme-update", "hmac-sha256").unwrap(), b"secret");
        assert_eq!(secret(BLOCK, "ACME-update.", "hmac-sha256.").unwrap(), b"secret");
    }

    #[test]
    fn a_block_of_another_key_or_algorithm_is_refused() {
        let e = secret(BLOCK, "other", "hmac-sha256").unwrap_err();
        assert!(e.contains("\"acme-update\"") && e.contains("\"other\""), "{e}");
        let e = secret(BLOCK, "acme-update", "hmac-sha512").unwrap_err();
        assert!(e.contains("hmac-sha256") && e.contains("hmac-sha512"), "{e}");
    }

    #[test]
    fn garbage_is_refused_without_echoing_it() {
        for text in ["", "  \n", "not base64 at all!", "key \"k\" { algorithm hmac-sha256; };"] {
            let e = secret(text, "k", "hmac-sha256").unwrap_err();
            assert!(!e.contains("base64 at all"), "{e}");
        }
    }

    #[test]
    fn only_sha2_hmacs_are_taken() {
        assert!(algorithm("HMAC-SHA384.").is_ok());
        let e = algorithm("hmac-md5").unwrap_err().to_string();
        assert!(e.contains("hmac-md5") && e.contains("hmac-sha256"), "{e}");
    }
}
