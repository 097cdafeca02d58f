//! `--storage` and `gatehouse store migrate / copy` against a real PostgreSQL (a
//! throwaway cluster of this test binary, from the `test-cluster` crate): the CA
//! keeps its records there, and a copy between SQLite and PostgreSQL, either way,
//! leaves `ca list --json` and the CRL's revoked certificates as they were, an
//! ACME account and order made by lego still serve that client, and two gateways
//! whose config names the PostgreSQL storage enforce a revocation made there, and
//! its release.

mod support;
use support::*;

use std::path::Path;

/// A new, empty database in this binary's PostgreSQL cluster.
fn postgres() -> String {
    test_cluster::database_blocking()
}

/// `gatehouse --data-dir DIR --storage URL ARGS...`, asserting success.
#[track_caller]
fn gh_on(dir: &Path, url: &str, args: &[&str]) -> String {
    let mut all = vec!["--storage", url];
    all.extend_from_slice(args);
    gh_ok(dir, &all)
}

/// `ca list --json` of the CA in `dir` with its records at `url`.
#[track_caller]
fn list_on(dir: &Path, url: &str) -> Vec<Value> {
    list_json(dir, &["--storage", url])
}

/// The revoked certificates of a new CRL signed from `url` and its number (see [`crl_revoked`]).
#[track_caller]
fn crl_on(dir: &Path, url: &str) -> (String, u64) {
    crl_revoked(dir, &["--storage", url])
}

/// `gatehouse store copy --from FROM --to TO` in `dir`, asserting success; its stdout.
#[track_caller]
fn copy(dir: &Path, from: &str, to: &str) -> String {
    gh_ok(dir, &["store", "copy", "--from", from, "--to", to])
}

#[test]
fn a_copy_sqlite_to_postgres_and_back_keeps_ca_list_and_the_crl() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    let sqlite = format!("sqlite://{}", db(&d).display());
    let a = serial_line(&issue(&d, &out, "server", "a.example.test", &[]));
    issue(&d, &out, "server", "b.example.test", &[]);
    let c = serial_line(&issue(&d, &out, "client", "carol", &[]));
    gh_ok(&d, &["ca", "revoke", &a, "--reason", "keyCompromise"]);
    gh_ok(&d, &["ca", "revoke", &c, "--reason", "certificateHold"]);
    let (revoked, number) = crl_on(&d, &sqlite);
    let listed = list_json(&d, &[]);

    let pg = postgres();
    let copied = copy(&d, &sqlite, &pg);
    assert!(copied.contains("3 certificates (2 revoked, 0 never delivered)"), "{copied}");
    assert!(copied.contains("1 CRL number"), "{copied}");
    assert_eq!(list_on(&d, &pg), listed, "ca list --json after the copy to PostgreSQL");
    let (revoked_pg, number_pg) = crl_on(&d, &pg);
    assert_eq!(revoked_pg, revoked, "the CRL's revoked certificates after the copy to PostgreSQL");
    assert_eq!(number_pg, number + 1, "CRL numbers go on from the source's");

    // The CA now issues and revokes on PostgreSQL; the SQLite file it left is not written.
    let pg_out = mkdir(d.join("pg-out"));
    let e = serial_line(&gh_on(&d, &pg, &["ca", "issue", "--profile", "client", "--cn", "erin", "--out", s(&pg_out)]));
    gh_on(&d, &pg, &["ca", "revoke", &e, "--reason", "superseded"]);
    assert!(find_serial(&list_on(&d, &pg), &e).is_some_and(|entry| entry["status"] == "revoked"));
    assert!(find_serial(&list_json(&d, &[]), &e).is_none(), "a certificate issued on PostgreSQL is in the SQLite file");

    let back = format!("sqlite://{}", d.join("back.db").display());
    let copied = copy(&d, &pg, &back);
    assert!(copied.contains("4 certificates (3 revoked, 0 never delivered)"), "{copied}");
    assert_eq!(list_on(&d, &back), list_on(&d, &pg), "ca list --json after the copy back to SQLite");
    let (revoked_back, number_back) = crl_on(&d, &back);
    let (revoked_pg, number_pg) = crl_on(&d, &pg);
    assert_eq!(revoked_back, revoked_pg, "the CRL's revoked certificates after the copy back to SQLite");
    assert_eq!(number_back, number_pg, "both took the next number after the copy's");
}

#[test]
fn ca_init_on_postgres_keeps_the_records_there_and_the_keys_in_the_data_dir() {
    let d = tmp();
    let pg = postgres();
    let passphrase = ("GATEHOUSE_CA_PASSPHRASE", "the passphrase of this CA");
    let init = gh_env(&d, &["--storage", &pg, "ca", "init"], &[passphrase]);
    assert_eq!(init.code, 0, "{}", init.all());
    let shown = test_cluster::with_password(&pg, "***");
    assert!(init.stdout.lines().any(|l| l.starts_with("database:") && l.ends_with(&shown)), "{}", init.stdout);
    assert!(root_crt(&d).exists() && inter_key(&d).exists(), "the CA's certificates and keys are in the data dir");
    assert!(!db(&d).exists(), "ca init --storage postgres:// made a SQLite file too");
    // GATEHOUSE_STORAGE selects it as --storage does.
    let env = [("GATEHOUSE_STORAGE", pg.as_str()), passphrase];
    let issued = gh_env(&d, &["ca", "issue", "--profile", "client", "--cn", "dave", "--out", s(&d)], &env);
    assert_eq!(issued.code, 0, "{}", issued.all());
    let serial = serial_line(&issued.stdout);
    assert!(find_serial(&list_on(&d, &pg), &serial).is_some());
    assert!(!db(&d).exists(), "ca issue with GATEHOUSE_STORAGE made a SQLite file");
}

#[test]
fn store_migrate_says_from_which_version_to_which() {
    let d = tmp();
    let pg = postgres();
    let first = gh_on(&d, &pg, &["store", "migrate"]);
    assert!(first.contains("schema migrated from version 0 to version "), "{first}");
    let again = gh_on(&d, &pg, &["store", "migrate"]);
    assert!(again.contains("is this gatehouse's; nothing to do"), "{again}");
    // Without --storage: the data dir's SQLite file.
    let sqlite = gh_ok(&d, &["store", "migrate"]);
    assert!(sqlite.starts_with(&format!("sqlite://{}: schema migrated from version 0", db(&d).display())), "{sqlite}");
}

#[test]
fn a_copy_into_a_database_that_holds_records_is_refused() {
    let d = init_ca(&[]);
    let out = mkdir(d.join("out"));
    issue(&d, &out, "client", "frank", &[]);
    let sqlite = format!("sqlite://{}", db(&d).display());
    let pg = postgres();
    copy(&d, &sqlite, &pg);
    let err = gh_fails(&d, &["store", "copy", "--from", &sqlite, "--to", &pg], 1);
    assert!(err.contains("already holds 1 certificate") && err.contains("copy only into an empty database"), "{err}");
    assert_eq!(list_on(&d, &pg).len(), 1, "the refused copy changed the target");
    let err = gh_fails(&d, &["store", "copy", "--from", &sqlite, "--to", &sqlite], 2);
    assert!(err.contains("--from and --to both name"), "{err}");
    let missing = format!("sqlite://{}", d.join("none.db").display());
    let err = gh_fails(&d, &["store", "copy", "--from", &missing, "--to", &pg], 1);
    assert!(err.contains("there is no such file"), "{err}");
}

#[test]
fn a_postgres_not_running_a_wrong_password_or_a_bad_url_is_one_clear_line() {
    let d = init_ca(&[]);
    // What a stopped server looks like to a client: nothing listens on its port.
    let url = format!("postgres://ca:s3cret@127.0.0.1:{}/pki", free_port());
    for args in [&["ca", "list"][..], &["store", "migrate"], &["ca", "revoke", "0A"]] {
        let mut all = vec!["--storage", url.as_str()];
        all.extend_from_slice(args);
        let err = gh_fails(&d, &all, 1);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("cannot connect to the database postgres://ca:***@127.0.0.1:"), "{err}");
        assert!(err.contains("check that PostgreSQL is running there"), "{err}");
        assert!(!err.contains("s3cret"), "the password was printed: {err}");
    }
    // ca init reaches the database before it makes the CA: nothing is left behind.
    let empty = tmp();
    gh_fails(&empty, &["--storage", &url, "ca", "init"], 1);
    assert!(!root_crt(&empty).exists(), "ca init made a CA whose database it cannot reach");
    // A server that is there, but the password is wrong.
    let wrong = test_cluster::with_password(&postgres(), "not-the-password");
    let err = gh_fails(&d, &["--storage", &wrong, "ca", "list"], 1);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("password authentication failed"), "{err}");
    assert!(!err.contains("not-the-password"), "the password was printed: {err}");
    let err = gh_fails(&d, &["--storage", "mysql://ca:s3cret@db/pki", "ca", "list"], 2);
    assert!(
        err.starts_with("gatehouse: --storage: the storage URL mysql://ca:***@db/pki names no known backend"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    let o = gh_env(&d, &["ca", "list"], &[("GATEHOUSE_STORAGE", "sqlite:")]);
    assert_eq!(o.code, 2, "{}", o.all());
    assert!(o.stderr.contains("GATEHOUSE_STORAGE: the storage URL sqlite: has no file path"), "{}", o.stderr);
}

#[test]
fn config_check_accepts_storage_and_names_a_bad_one() {
    let d = tmp();
    let config = d.join("gatehouse.toml");
    let acme_server = format!("[acme_server]\nlisten = \"127.0.0.1:{}\"\n", free_port());
    write(&config, format!("storage = \"postgres://ca@127.0.0.1:5432/pki\"\n\n{acme_server}"));
    let ok = gh_ok(&d, &["config", "check", s(&config)]);
    assert!(ok.contains(": ok"), "{ok}");
    write(&config, format!("storage = \"mysql://ca@db/pki\"\n\n{acme_server}"));
    let err = gh_fails(&d, &["config", "check", s(&config)], 2);
    assert!(
        err.contains("line 1, column 11: storage: the storage URL mysql://ca@db/pki names no known backend"),
        "{err}"
    );
}

#[test]
fn an_acme_order_made_by_lego_survives_a_copy_to_postgres() {
    let mut server = GatehouseAcme::start_with(&AcmeServerOptions { restartable: true, ..Default::default() });
    let lego = server.lego();
    let names = ["copied.example.test"];
    let issued = server.obtain_http(&lego, &names);
    server.assert_issued(&issued, &names, SERVER_PROFILE_HOURS);
    server.stop();

    let data = server.env.data();
    let pg = postgres();
    let copied = copy(&data, &format!("sqlite://{}", db(&data).display()), &pg);
    assert!(copied.contains("1 ACME account, 1 order, 1 authorization"), "{copied}");
    let listed = list_json(&data, &[]);
    assert_eq!(list_on(&data, &pg), listed, "ca list --json after the copy to PostgreSQL");

    // The same server on the copy: lego's account and the order that issued the
    // certificate are found there, so lego may revoke it with its account key.
    server.config = format!("storage = \"{pg}\"\n\n{}", server.config);
    server.env.write("acme.toml", &server.config);
    server.restart();
    assert_client_ok("lego revoke", &lego.revoke(&names));
    let entry = find_serial(&list_on(&data, &pg), &issued.serial()).cloned().expect("the certificate on PostgreSQL");
    assert_eq!(entry["status"], "revoked", "{entry}");
    let (revoked, _) = crl_on(&data, &pg);
    let listed_in_crl = revoked
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number:"))
        .any(|serial| norm_serial(serial) == norm_serial(&issued.serial()));
    assert!(listed_in_crl, "{} is not in the CRL:\n{revoked}", issued.serial());
    let left = list_json(&data, &[]);
    let left = find_serial(&left, &issued.serial()).cloned().expect("the certificate in the SQLite file");
    assert_eq!(left["status"], "valid", "the server on PostgreSQL wrote to the SQLite file: {left}");
}

#[test]
fn two_gateways_with_storage_on_postgres_follow_a_revocation_and_its_release() {
    let env = Env::new();
    let data = env.data();
    let pg = postgres();
    copy(&data, &format!("sqlite://{}", db(&data).display()), &pg);
    let up = Upstream::start(&env);
    let site = "mtls = \"require\"\ntrust = { internal_ca = true }\n";
    let gateways: Vec<Gateway> = ["gw1.toml", "gw2.toml"]
        .into_iter()
        .map(|name| {
            let https = free_port();
            let config = localhost_config(&env, &listen_toml(https, None, None), &up, "", site);
            Gateway::start(&env, name, https, &format!("storage = \"{pg}\"\n{config}"))
        })
        .collect();
    let alice = env.issue_in(&env.path().join("pg-certs"), "client", "alice", &[], &["--storage", &pg]);
    for gw in &gateways {
        assert_eq!(gw.curl_cert("localhost", "/", &alice, &[]).status, 200);
    }
    assert!(find_serial(&list_json(&data, &[]), &alice.serial).is_none(), "alice was recorded in the SQLite file");

    // $ gatehouse --storage postgres://... ca revoke SERIAL --reason certificateHold
    gh_on(&data, &pg, &["ca", "revoke", &alice.serial, "--reason", "certificateHold"]);
    for (i, gw) in gateways.iter().enumerate() {
        assert!(
            gw.until_answer(&alice, false),
            "gateway {i} still served a certificate on hold after 20 s\n{}",
            gw.proc.dump()
        );
    }
    // $ gatehouse --storage postgres://... ca unrevoke SERIAL
    gh_on(&data, &pg, &["ca", "unrevoke", &alice.serial]);
    for (i, gw) in gateways.iter().enumerate() {
        assert!(
            gw.until_answer(&alice, true),
            "gateway {i} still refused a released certificate after 20 s\n{}",
            gw.proc.dump()
        );
    }
}
