//! `gatehouse store backup FILE` and `store restore FILE` on SQLite and on a real
//! PostgreSQL (a throwaway cluster of this test binary, from the `test-cluster`
//! crate): a backup of either backend restores into an empty database of either,
//! with the same `ca list --json`, the same revoked certificates in the CRL and the
//! same site certificate rows (a gateway's on a shared database); the file is 0600 and opens only with its passphrase; a wrong passphrase, an altered
//! or cut file, a database that holds records, or no passphrase at all is refused
//! with one line, and the target is left as it was.

mod support;
use support::*;

use std::path::Path;

const PASS_VAR: &str = "GATEHOUSE_BACKUP_PASSPHRASE";
const PASSPHRASE: &str = "a long backup passphrase";

/// A new, empty database in this binary's PostgreSQL cluster.
fn postgres() -> String {
    test_cluster::database_blocking()
}

fn sqlite(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// `GATEHOUSE_BACKUP_PASSPHRASE=PASS gatehouse --data-dir DIR --storage URL store ARGS...`
fn store_with(dir: &Path, url: &str, passphrase: &str, args: &[&str]) -> Out {
    let mut all = vec!["--storage", url, "store"];
    all.extend_from_slice(args);
    gh_env(dir, &all, &[(PASS_VAR, passphrase)])
}

/// `store backup FILE` of the records at `url` with the passphrase, asserting success; its stdout.
#[track_caller]
fn backup(dir: &Path, url: &str, file: &Path) -> String {
    let o = store_with(dir, url, PASSPHRASE, &["backup", s(file)]);
    assert_eq!(o.code, 0, "store backup: {}", o.all());
    o.stdout
}

/// `store restore FILE` into the database at `url` with the passphrase, asserting success; its stdout.
#[track_caller]
fn restore(dir: &Path, url: &str, file: &Path) -> String {
    let o = store_with(dir, url, PASSPHRASE, &["restore", s(file)]);
    assert_eq!(o.code, 0, "store restore into {url}: {}", o.all());
    o.stdout
}

/// A command that fails with exit `code` and one line on stderr; that line.
#[track_caller]
fn refused(o: Out, code: i32) -> String {
    assert_eq!(o.code, code, "{}", o.all());
    assert_eq!(o.stderr.trim_end().lines().count(), 1, "{}", o.stderr);
    o.stderr
}

/// `ca list --json` of the CA in `dir` with its records at `url`.
#[track_caller]
fn list_on(dir: &Path, url: &str) -> Vec<Value> {
    list_json(dir, &["--storage", url])
}

/// The name a gateway stores the site certificate for `host` by (`internal_ca.rs`).
fn site_name(host: &str) -> String {
    format!("internal-ca/{host}")
}

/// Runs `work` on a store opened at `url`, as a gateway sharing that database would.
fn on_store<T>(url: &str, work: impl AsyncFnOnce(&store::Database) -> T) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let database = store::Database::open(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
        work(&database).await
    })
}

/// The site certificate row stored at `url` for `host`, if any.
fn site_row(url: &str, host: &str) -> Option<store::SiteCertificate> {
    use store::SiteCertificateStore;
    on_store(url, async |database| database.site_certificate(&site_name(host)).await.expect("read the row"))
}

/// Stores the certificate issued for `host` (in `out`) as a gateway stores a site's on
/// a shared database: under the site's renewal lease, its key encrypted.
fn store_site_certificate(out: &Path, url: &str, host: &str) {
    use store::{LeaseStore, NewSiteCertificate, SiteCertificateStore};
    let chain_pem = read(out.join(format!("{host}.crt")));
    let key = out.join(format!("{host}.key"));
    let key_pem = openssl_ok(&["pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", s(&key), "-passout", "pass:site"]);
    assert!(key_pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"), "{key_pem}");
    on_store(url, async |database| {
        let name = site_name(host);
        let ttl = std::time::Duration::from_secs(60);
        let lease = database.acquire_lease(&name, "gateway-1", ttl).await.unwrap().expect("a free lease");
        let site =
            NewSiteCertificate { name: &name, chain_pem: &chain_pem, key_pem: &key_pem, not_after: 2_000_000_000 };
        database.put_site_certificate(site, &lease).await.expect("store the site certificate");
    });
}

/// A CA made in a new data dir with its records at `storage(dir)`, which issued three
/// certificates and revoked two (one on hold), and signed a CRL; the certificate of
/// `b.example.test` is stored as a site certificate too.
fn ca_with_records(storage: impl FnOnce(&Path) -> String) -> (TempDir, String) {
    let d = tmp();
    let url = storage(&d);
    let at = ["--storage", url.as_str()];
    // A CA whose keys are in the clear stays in its data dir (ca_shared.rs has the CA
    // kept in the database): made on the data dir's SQLite file, then moved to `url`.
    gh_ok(&d, &["ca", "init"]);
    let local = sqlite(&db(&d));
    if url != local {
        gh_ok(&d, &["store", "copy", "--from", &local, "--to", &url]);
    }
    let out = mkdir(d.join("out"));
    let a = serial_line(&issue(&d, &out, "server", "a.example.test", &at));
    issue(&d, &out, "server", "b.example.test", &at);
    store_site_certificate(&out, &url, "b.example.test");
    let c = serial_line(&issue(&d, &out, "client", "carol", &at));
    gh_ok(&d, &["--storage", &url, "ca", "revoke", &a, "--reason", "keyCompromise"]);
    gh_ok(&d, &["--storage", &url, "ca", "revoke", &c, "--reason", "certificateHold"]);
    crl_revoked(&d, &at);
    (d, url)
}

/// Backs up the records at `source` and restores them into a new PostgreSQL database
/// and a new SQLite file: each lists what the source lists and revokes in its CRL what
/// the source's CRL revokes, and numbers its CRLs on from the source's.
fn backup_restores_into_both_backends(d: &Path, source: &str) {
    let listed = list_on(d, source);
    assert_eq!(listed.len(), 3, "{listed:?}");
    let file = d.join("ca.backup");
    let made = backup(d, source, &file);
    assert!(made.starts_with("backed up ") && made.contains(&format!(" to {} (", file.display())), "{made}");
    assert!(made.contains("3 certificates (2 revoked, 0 never delivered)"), "{made}");
    assert!(made.contains("1 CRL number"), "{made}");
    assert!(made.contains("1 site certificate (keys encrypted)"), "{made}");
    assert_eq!(mode(&file), 0o600, "the backup file's mode");
    let site = site_row(source, "b.example.test").expect("the source's site certificate");
    let (revoked, number) = crl_revoked(d, &["--storage", source]);

    for target in [postgres(), sqlite(&d.join("restored.db"))] {
        let restored = restore(d, &target, &file);
        assert!(restored.starts_with(&format!("restored {} into ", file.display())), "{restored}");
        assert!(restored.contains("3 certificates (2 revoked, 0 never delivered)"), "{restored}");
        assert_eq!(list_on(d, &target), listed, "ca list --json after the restore into {target}");
        let (revoked_there, number_there) = crl_revoked(d, &["--storage", &target]);
        assert_eq!(revoked_there, revoked, "the CRL's revoked certificates after the restore into {target}");
        // The backup was made after CRL 1: the restored CA signs 2, as the source did.
        assert_eq!(number_there, number, "CRL numbers go on from the backup's in {target}");
        let restored_site = site_row(&target, "b.example.test");
        assert_eq!(restored_site.as_ref(), Some(&site), "the site certificate's row after the restore into {target}");
    }
}

#[test]
fn a_backup_of_sqlite_restores_into_postgres_and_sqlite() {
    let (d, url) = ca_with_records(|d| sqlite(&db(d)));
    backup_restores_into_both_backends(&d, &url);
}

#[test]
fn a_backup_of_postgres_restores_into_postgres_and_sqlite() {
    let (d, url) = ca_with_records(|_| postgres());
    // Its records were moved there before any was issued: the SQLite file holds none.
    assert!(list_json(&d, &[]).is_empty(), "the CA on PostgreSQL recorded in its SQLite file");
    backup_restores_into_both_backends(&d, &url);
}

#[test]
fn without_the_passphrase_variable_or_with_a_short_one_nothing_is_written() {
    let (d, url) = ca_with_records(|d| sqlite(&db(d)));
    let file = d.join("ca.backup");
    let backup_args = ["--storage", url.as_str(), "store", "backup", s(&file)];
    let err = refused(gh(&d, &backup_args), 2);
    assert!(err.contains("set GATEHOUSE_BACKUP_PASSPHRASE to the passphrase that encrypts the backup"), "{err}");
    let err = refused(gh_env(&d, &backup_args, &[(PASS_VAR, "")]), 2);
    assert!(err.contains("set GATEHOUSE_BACKUP_PASSPHRASE"), "{err}");
    let err = refused(store_with(&d, &url, "eleven char", &["backup", s(&file)]), 2);
    assert!(
        err.contains("GATEHOUSE_BACKUP_PASSPHRASE: the backup passphrase has 11 characters; use at least 12"),
        "{err}"
    );
    assert!(!file.exists(), "a refused backup wrote {}", file.display());

    backup(&d, &url, &file);
    let target = sqlite(&d.join("restored.db"));
    let err = refused(gh(&d, &["--storage", &target, "store", "restore", s(&file)]), 2);
    assert!(err.contains("set GATEHOUSE_BACKUP_PASSPHRASE"), "{err}");
    assert!(!d.join("restored.db").exists(), "a refused restore made the target database");
}

#[test]
fn a_backup_does_not_replace_a_file_unless_forced() {
    let (d, url) = ca_with_records(|d| sqlite(&db(d)));
    let file = d.join("ca.backup");
    write(&file, "kept");
    let err = refused(store_with(&d, &url, PASSPHRASE, &["backup", s(&file)]), 1);
    assert!(err.contains("exists; give another file, or --force to replace it"), "{err}");
    assert_eq!(read(&file), "kept");
    let o = store_with(&d, &url, PASSPHRASE, &["backup", "--force", s(&file)]);
    assert_eq!(o.code, 0, "{}", o.all());
    assert_eq!(mode(&file), 0o600, "the replaced backup file's mode");
    restore(&d, &sqlite(&d.join("restored.db")), &file);
    assert_eq!(list_on(&d, &sqlite(&d.join("restored.db"))), list_on(&d, &url));
}

#[test]
fn a_wrong_passphrase_or_an_altered_cut_or_foreign_file_leaves_the_target_empty() {
    let (d, url) = ca_with_records(|d| sqlite(&db(d)));
    let file = d.join("ca.backup");
    backup(&d, &url, &file);
    let sealed = read_bytes(&file);
    let pg = postgres();
    let restore_from = |file: &Path, passphrase: &str| store_with(&d, &pg, passphrase, &["restore", s(file)]);

    let err = refused(restore_from(&file, "another long passphrase"), 1);
    assert!(err.contains("the backup does not open: wrong passphrase, or the file was altered"), "{err}");
    let mut altered = sealed.clone();
    let middle = altered.len() / 2;
    altered[middle] ^= 0x40;
    let altered_file = d.join("altered.backup");
    write(&altered_file, &altered);
    let err = refused(restore_from(&altered_file, PASSPHRASE), 1);
    assert!(err.contains("the backup does not open: wrong passphrase, or the file was altered"), "{err}");

    let cut = d.join("cut.backup");
    write(&cut, &sealed[..sealed.len() - 100]);
    let err = refused(restore_from(&cut, PASSPHRASE), 1);
    let expected = format!("the backup is cut short ({} bytes of {})", sealed.len() - 100, sealed.len());
    assert!(err.contains(&expected), "{err}");

    let mut newer = sealed.clone();
    newer[16..18].copy_from_slice(&2u16.to_be_bytes());
    let newer_file = d.join("newer.backup");
    write(&newer_file, &newer);
    let err = refused(restore_from(&newer_file, PASSPHRASE), 1);
    assert!(err.contains("format version 2, newer than this gatehouse reads (1); restore it with a newer"), "{err}");

    let err = refused(restore_from(&db(&d), PASSPHRASE), 1);
    assert!(err.contains("it is not a gatehouse backup"), "{err}");

    assert_eq!(list_on(&d, &pg), Vec::<Value>::new(), "a refused restore wrote to the target");
    let sqlite_target = d.join("restored.db");
    let o = store_with(&d, &sqlite(&sqlite_target), "another long passphrase", &["restore", s(&file)]);
    refused(o, 1);
    assert!(!sqlite_target.exists(), "a restore with the wrong passphrase made the target database");
    // The refusals left the target as empty as it was: the backup restores there.
    restore(&d, &pg, &file);
    assert_eq!(list_on(&d, &pg), list_on(&d, &url));
}

#[test]
fn a_restore_into_a_database_that_holds_records_is_refused_with_what_it_holds() {
    let (d, url) = ca_with_records(|d| sqlite(&db(d)));
    let file = d.join("ca.backup");
    backup(&d, &url, &file);
    let pg = postgres();
    restore(&d, &pg, &file);
    let before = list_on(&d, &pg);
    for target in [pg.as_str(), url.as_str()] {
        let err = refused(store_with(&d, target, PASSPHRASE, &["restore", s(&file)]), 1);
        assert!(err.contains(" already holds 3 certificates, 1 CRL number, 1 site certificate; "), "{err}");
        assert!(err.contains("restore only into an empty database"), "{err}");
    }
    assert_eq!(list_on(&d, &pg), before, "the refused restore changed the target");
}
