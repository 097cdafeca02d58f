//! A CA kept in a shared PostgreSQL storage (a throwaway cluster of this test
//! binary): `ca init --storage postgres://...` with a passphrase puts the CA's
//! certificates and encrypted keys in the database, and another instance with
//! nothing but the storage URL, the passphrase and an empty data dir takes it from
//! there and issues and serves as that CA. Refused: a CA whose keys would go into
//! the database in the clear, a second CA on one database, a data dir holding
//! another CA than the storage's, a wrong or missing passphrase.

mod support;
use support::*;

use std::path::Path;
use std::time::Duration;

const PASSPHRASE: &str = "a passphrase for the shared CA";

/// A new, empty database in this binary's PostgreSQL cluster.
fn postgres() -> String {
    test_cluster::database_blocking()
}

/// `GATEHOUSE_STORAGE=URL [GATEHOUSE_CA_PASSPHRASE=P] gatehouse --data-dir DIR ARGS...`
fn on(dir: &Path, url: &str, passphrase: Option<&str>, args: &[&str]) -> Out {
    let mut env = vec![("GATEHOUSE_STORAGE", url)];
    if let Some(p) = passphrase {
        env.push(("GATEHOUSE_CA_PASSPHRASE", p));
    }
    gh_env(dir, args, &env)
}

/// [`on`] with the passphrase, asserting success.
#[track_caller]
fn on_ok(dir: &Path, url: &str, args: &[&str]) -> Out {
    let o = on(dir, url, Some(PASSPHRASE), args);
    assert_eq!(o.code, 0, "gatehouse {args:?} failed:\n{}", o.all());
    o
}

/// `ca issue --profile client --cn CN --out DIR/out` on `url`; the serial.
#[track_caller]
fn issue_client(dir: &Path, url: &str, cn: &str) -> String {
    let out = mkdir(dir.join("out"));
    serial_line(&on_ok(dir, url, &["ca", "issue", "--profile", "client", "--cn", cn, "--out", s(&out)]).stdout)
}

#[test]
fn an_instance_with_an_empty_data_dir_issues_as_the_ca_kept_in_postgres() {
    let pg = postgres();
    let first = tmp();
    let init = on_ok(&first, &pg, &["ca", "init", "--name", "Shared CA"]);
    assert!(init.stdout.contains("the CA is kept in the database too"), "{}", init.stdout);
    let alice = issue_client(&first, &pg, "alice");

    // A second instance: the storage URL, the passphrase, an empty data dir.
    let second = tmp();
    let issued = on_ok(&second, &pg, &["ca", "issue", "--profile", "client", "--cn", "bob", "--out", s(&second)]);
    assert!(issued.stderr.contains("took the CA kept in postgres://"), "{}", issued.stderr);
    let bob = serial_line(&issued.stdout);
    assert_ne!(alice, bob);
    assert_eq!(read(root_crt(&second)), read(root_crt(&first)), "the second instance has the same root");
    let key = inter_key(&second);
    assert_eq!(mode(&key), 0o600, "the intermediate key taken from the storage is 0600");
    assert!(read(&key).starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"), "the key came encrypted");
    // What the second instance issued chains to the first's root.
    let verified = openssl_ok(&[
        "verify",
        "-CAfile",
        s(&root_crt(&first)),
        "-untrusted",
        s(&first.join("ca/intermediate.crt")),
        s(&second.join("bob.crt")),
    ]);
    assert!(verified.contains(": OK"), "{verified}");
    // Both are in the one database, whichever instance lists it.
    for dir in [&first, &second] {
        let listed = list_json(dir, &["--storage", &pg]);
        assert!(find_serial(&listed, &alice).is_some() && find_serial(&listed, &bob).is_some(), "{listed:?}");
    }
    // `ca root` on a third, empty data dir prints the same root.
    let third = tmp();
    assert_eq!(on_ok(&third, &pg, &["ca", "root"]).stdout, read(root_crt(&first)));

    // Without the passphrase, or with a wrong one: refused, nothing issued.
    let fourth = tmp();
    let o = on(&fourth, &pg, None, &["ca", "issue", "--profile", "client", "--cn", "eve", "--out", s(&fourth)]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("is encrypted; set GATEHOUSE_CA_PASSPHRASE"), "{}", o.stderr);
    let o = on(&fourth, &pg, Some("not the passphrase"), &["ca", "issue", "--profile", "client", "--cn", "eve"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("the passphrase does not decrypt"), "{}", o.stderr);
    assert_eq!(list_json(&first, &["--storage", &pg]).len(), 2, "a refused issue recorded something");
}

#[test]
fn ca_init_refuses_keys_in_the_clear_a_second_ca_and_a_data_dir_holding_another_ca() {
    let pg = postgres();
    // No passphrase: the keys would go into the database in the clear.
    let plain = tmp();
    let o = on(&plain, &pg, None, &["ca", "init"]);
    assert_eq!(o.code, 2, "{}", o.all());
    assert!(o.stderr.contains("holds its keys only encrypted: set GATEHOUSE_CA_PASSPHRASE"), "{}", o.stderr);
    assert_eq!(o.stderr.trim_end().lines().count(), 1, "{}", o.stderr);
    assert!(!root_crt(&plain).exists(), "a refused ca init made a CA");

    let first = tmp();
    on_ok(&first, &pg, &["ca", "init", "--name", "First CA"]);
    // A second `ca init` on the same database, from another data dir.
    let second = tmp();
    let o = on(&second, &pg, Some(PASSPHRASE), &["ca", "init", "--name", "Second CA"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("already holds a CA (root CN=First CA Root CA"), "{}", o.stderr);
    assert!(o.stderr.contains("run with an empty --data-dir"), "{}", o.stderr);
    assert!(!root_crt(&second).exists(), "a refused ca init made a CA");

    // A data dir with a CA of its own (on its SQLite file), pointed at the storage.
    let other = init_ca(&["--name", "Other CA"]);
    let o = on(&other, &pg, Some(PASSPHRASE), &["ca", "list"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("holds another CA (CN=Other CA Root CA, O=Other CA) than postgres://"), "{}", o.stderr);
    // A database with another CA's records but none of its files (copied from SQLite).
    let copied = postgres();
    issue(&other, &mkdir(other.join("out")), "client", "carol", &[]);
    gh_ok(&other, &["store", "copy", "--from", &format!("sqlite://{}", db(&other).display()), "--to", &copied]);
    let o = on(&tmp(), &copied, Some(PASSPHRASE), &["ca", "init"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("already holds 1 certificate of another CA"), "{}", o.stderr);
    // A CA with encrypted keys would be put into a storage holding no CA: not one holding another's records.
    let third = tmp();
    let o = gh_env(&third, &["ca", "init", "--name", "Third CA"], &[("GATEHOUSE_CA_PASSPHRASE", PASSPHRASE)]);
    assert_eq!(o.code, 0, "{}", o.all());
    let o = on(&third, &copied, Some(PASSPHRASE), &["ca", "list"]);
    assert_eq!(o.code, 1, "{}", o.all());
    assert!(o.stderr.contains("holds no CA but 1 certificate issued by another CA"), "{}", o.stderr);
}

#[test]
fn a_gateway_with_an_empty_data_dir_serves_with_the_ca_kept_in_postgres() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let pg = postgres();
    let first = tmp();
    on_ok(&first, &pg, &["ca", "init", "--name", "Shared CA"]);
    issue_client(&first, &pg, "alice");
    let alice = first.join("out");

    let data = tmp();
    let https = free_port();
    let config = format!(
        "storage = \"{pg}\"\ndata_dir = \"{}\"\n{}\n[[site]]\nhosts = [\"localhost\"]\ncertificate = {{ internal_ca = true }}\n\
         mtls = \"require\"\ntrust = {{ internal_ca = true }}\nupstream = \"app\"\n\n{}",
        data.display(),
        listen_toml(https, None, None),
        upstream_toml("app", &up.url())
    );
    let config_path = env.write("shared.toml", &config);
    let mut c = gh_cmd(&data, &["serve", "--config", s(&config_path)]);
    c.env("GATEHOUSE_CA_PASSPHRASE", PASSPHRASE);
    let mut gateway = Proc::spawn(c, "gatehouse serve");
    gateway.wait_listening(https, Duration::from_secs(30), &format!("config:\n{config}"));
    let url = format!("https://localhost:{https}/");
    let resolve = format!("localhost:{https}:127.0.0.1");
    let root = s(&root_crt(&first)).to_owned();
    let (crt, key) = (s(&alice.join("alice.crt")).to_owned(), s(&alice.join("alice.key")).to_owned());
    let answered = curl(&["--cacert", &root, "--resolve", &resolve, "--cert", &crt, "--key", &key, &url]);
    assert_eq!(answered.status, 200, "{answered:?}\n{}", gateway.dump());
    // Its site certificate came from the shared CA and was recorded in the shared database.
    let listed = list_json(&first, &["--storage", &pg]);
    assert!(listed.iter().any(|c| c["common_name"] == "localhost"), "{listed:?}");
    assert!(gateway.stderr().contains("took the CA kept in postgres://"), "{}", gateway.stderr());
    gateway.kill();
}

#[test]
fn a_backup_restored_into_a_new_database_carries_the_ca_to_an_empty_data_dir() {
    let pg = postgres();
    let first = tmp();
    on_ok(&first, &pg, &["ca", "init", "--name", "Backed-up CA"]);
    let alice = issue_client(&first, &pg, "alice");
    let backup = first.join("pki.backup");
    let with_backup_passphrase = [("GATEHOUSE_STORAGE", pg.as_str()), ("GATEHOUSE_BACKUP_PASSPHRASE", PASSPHRASE)];
    let o = gh_env(&first, &["store", "backup", s(&backup)], &with_backup_passphrase);
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(o.stdout.contains("the CA: 5 files"), "{}", o.stdout);

    let restored = postgres();
    let o = gh_env(
        &tmp(),
        &["store", "restore", s(&backup)],
        &[("GATEHOUSE_STORAGE", restored.as_str()), ("GATEHOUSE_BACKUP_PASSPHRASE", PASSPHRASE)],
    );
    assert_eq!(o.code, 0, "{}", o.all());
    // A new instance on the restored database: its CA, its records, and it issues.
    let fresh = tmp();
    let bob = issue_client(&fresh, &restored, "bob");
    assert_eq!(read(root_crt(&fresh)), read(root_crt(&first)));
    let listed = list_json(&fresh, &["--storage", &restored]);
    assert!(find_serial(&listed, &alice).is_some() && find_serial(&listed, &bob).is_some(), "{listed:?}");
}

/// `ca.toml` is one policy for every instance on the storage: an edit on one instance is
/// shared when it next opens the storage and taken by the others when they do, so a
/// client certificate's longest lifetime tightened on the first is enforced by the
/// second; an edit that does not parse is refused before it is shared, and edits on
/// two instances at once are refused on the second rather than one of them lost.
#[test]
fn an_edit_of_ca_toml_on_one_instance_is_the_policy_of_every_instance() {
    let pg = postgres();
    let (first, second) = (tmp(), tmp());
    on_ok(&first, &pg, &["ca", "init", "--name", "Policy CA"]);
    on_ok(&second, &pg, &["ca", "root"]);
    let policy = first.join("ca.toml");
    let tightened = read(&policy).replacen("max_days = 3650", "max_days = 30", 1).replacen(
        "default_days = 365\n",
        "default_days = 20\n",
        1,
    );
    assert_ne!(tightened, read(&policy), "the client profile's max_days line was not found");
    write(&policy, &tightened);

    let shared = on_ok(&first, &pg, &["ca", "list"]);
    assert!(shared.stderr.contains("is now the ca.toml of every instance"), "{}", shared.stderr);
    let taken =
        on(&second, &pg, Some(PASSPHRASE), &["ca", "issue", "--profile", "client", "--cn", "c", "--days", "60"]);
    assert!(taken.stderr.contains("took the ca.toml shared in postgres://"), "{}", taken.all());
    assert_eq!(read(second.join("ca.toml")), tightened, "the second instance's copy");
    assert_ne!(taken.code, 0, "60 days is over the shared policy's 30:\n{}", taken.all());
    assert!(taken.stderr.contains("30"), "the refusal names the limit:\n{}", taken.all());

    // An edit that does not parse stays here.
    write(&policy, format!("{tightened}\nnot toml ["));
    let broken = on(&first, &pg, Some(PASSPHRASE), &["ca", "list"]);
    assert_eq!(broken.code, 2, "{}", broken.all());
    assert!(broken.stderr.contains("fix it before it is shared"), "{}", broken.all());
    write(&policy, &tightened);

    // Both instances edit: the first to run shares its edit, the second is refused.
    write(&policy, tightened.replacen("max_days = 30", "max_days = 40", 1));
    write(second.join("ca.toml"), tightened.replacen("max_days = 30", "max_days = 50", 1));
    on_ok(&first, &pg, &["ca", "list"]);
    let conflict = on(&second, &pg, Some(PASSPHRASE), &["ca", "list"]);
    assert_ne!(conflict.code, 0, "{}", conflict.all());
    assert!(conflict.stderr.contains("was edited here and the ca.toml shared in"), "{}", conflict.all());
    assert!(read(second.join("ca.toml")).contains("max_days = 50"), "the refused edit is not lost");
}
