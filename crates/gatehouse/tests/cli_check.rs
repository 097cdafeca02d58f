//! `gatehouse config check FILE` only reads: a site whose certificate the internal CA
//! issues is checked without the CA's passphrase or database, and nothing is written to
//! the data dir (issuance is `serve`'s). What it does read, it validates: certificate
//! files with their keys, trust files.
mod support;
use support::*;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// One site whose certificate comes from the internal CA and whose clients it verifies.
const INTERNAL_CA_SITE: &str = r#"[listen]
https = "127.0.0.1:18443"

[[site]]
hosts = ["app.test"]
certificate = { internal_ca = true }
mtls = "require"
trust = { internal_ca = true }
upstream = "app"

[[upstream]]
name = "app"
servers = ["http://127.0.0.1:3000"]
"#;

/// Every file under `dir` with its length and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::metadata(&path).unwrap();
            if meta.is_dir() {
                todo.push(path.clone());
            }
            files.insert(path, (meta.len(), meta.modified().unwrap()));
        }
    }
    files
}

#[test]
fn an_internal_ca_site_is_checked_with_no_data_dir_and_no_passphrase() {
    let env = Env::empty();
    let file = env.write("gw.toml", INTERNAL_CA_SITE);
    let o = env.gh(&["config", "check", s(&file)]);
    assert_eq!(o.code, 0, "config check of an internal_ca site with no CA:\n{}", o.all());
    assert!(o.stdout.contains(&format!("{}: ok (1 site, 1 upstream)", file.display())), "{}", o.all());
    assert!(o.stderr.contains("ca init"), "no hint that serve needs a CA:\n{}", o.all());
    assert!(!env.data().exists(), "config check created {}", env.data().display());
}

#[test]
fn an_encrypted_ca_is_read_without_its_passphrase_and_left_as_it_was() {
    let env = Env::empty();
    fs::create_dir_all(env.data()).unwrap();
    let init = gh_env(&env.data(), &["ca", "init"], &[(PASS_ENV, "a long passphrase")]);
    assert_eq!(init.code, 0, "{}", init.all());
    let file = env.write("gw.toml", INTERNAL_CA_SITE);
    let before = snapshot(&env.data());

    let o = env.gh(&["config", "check", s(&file)]);
    assert_eq!(o.code, 0, "config check without the passphrase of an encrypted CA:\n{}", o.all());
    assert!(o.stdout.contains(": ok (1 site, 1 upstream)"), "{}", o.all());
    assert_eq!(snapshot(&env.data()), before, "config check changed the data dir");
    assert!(!env.data().join("gateway").exists(), "config check issued a site certificate");
    let list = env.gh_ok(&["ca", "list", "--json"]);
    assert_eq!(list.trim(), "[]", "config check recorded a certificate: {list}");
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let env = Env::new();
    let (site, other) = (env.issue("server", "app.test", &[]), env.issue("server", "other.test", &[]));
    let text = INTERNAL_CA_SITE.replace(
        "certificate = { internal_ca = true }",
        &format!("certificate = {{ cert = \"{}\", key = \"{}\" }}", s(site.chain()), s(&other.key)),
    );
    let file = env.write("gw.toml", &text);
    let o = env.gh(&["config", "check", s(&file)]);
    assert_eq!(o.code, 2, "a mismatched key passed the check:\n{}", o.all());
    assert!(o.stderr.contains("does not belong to the certificate"), "{}", o.all());
    assert!(o.stderr.contains("gw.toml"), "the file is not named:\n{}", o.all());
}

#[test]
fn a_trust_file_that_is_not_pem_is_refused_naming_it() {
    let env = Env::new();
    let bundle = env.write("clients-ca.pem", "not a certificate\n");
    let text = INTERNAL_CA_SITE
        .replace("trust = { internal_ca = true }", &format!("trust = {{ ca_files = [\"{}\"] }}", s(&bundle)));
    let file = env.write("gw.toml", &text);
    let o = env.gh(&["config", "check", s(&file)]);
    assert_eq!(o.code, 2, "an unusable trust file passed the check:\n{}", o.all());
    assert!(o.stderr.contains("clients-ca.pem"), "the trust file is not named:\n{}", o.all());
}

#[test]
fn a_data_dir_in_the_config_that_is_a_file_is_named() {
    let env = Env::empty();
    env.write("not-a-dir", "x\n");
    let file = env.write("gw.toml", &format!("data_dir = \"not-a-dir\"\n{INTERNAL_CA_SITE}"));
    let o = env.gh(&["config", "check", s(&file)]);
    assert_eq!(o.code, 2, "{}", o.all());
    let want = format!(
        "gatehouse: {}: data_dir {} is a file; give a directory",
        file.display(),
        s(&env.path().join("not-a-dir"))
    );
    assert!(o.stderr.contains(&want), "want {want:?}:\n{}", o.all());
}

#[test]
fn a_host_the_internal_ca_cannot_name_is_refused_without_issuing() {
    let env = Env::empty();
    // A host name the config takes and the CA does not: an underscore.
    let text = INTERNAL_CA_SITE.replace(r#"hosts = ["app.test"]"#, r#"hosts = ["app.test", "under_score.test"]"#);
    let file = env.write("gw.toml", &text);
    let o = env.gh(&["config", "check", s(&file)]);
    assert_eq!(o.code, 2, "a host that cannot be a SAN passed the check:\n{}", o.all());
    assert!(o.stderr.contains("under_score.test"), "the host is not named:\n{}", o.all());
    assert!(!env.data().exists(), "config check created {}", env.data().display());
}
