//! `gatehouse agent --once` (issue 10) against gatehouse's own ACME server: a node
//! certificate (profile `node`: serverAuth and clientAuth) over http-01 on the agent's
//! own listener, written as cert (leaf and chain), key (0600), chain and CA root, then
//! the reload command run; a second pass finds it not due and touches nothing; a
//! reload that fails is exit 3, a config error exit 2 naming its line.
//!
//! One server ([`GatehouseAcme::shared`]); an agent run that listens on its http-01
//! port holds that port's lock.

mod support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use support::*;

const NAME: &str = "node1.example.test";

/// The agent's file: `http_01_listen` on the server's http-01 port, one `[[acme]]`
/// table `internal` (profile `node`) and one `[[certificate]]` writing into `out`,
/// with `reload`.
fn agent_toml(server: &GatehouseAcme, out: &Path, reload: &str) -> String {
    format!(
        "http_01_listen = \"127.0.0.1:{}\"\n{}\n[[certificate]]\nnames = [\"{NAME}\"]\nacme = \"internal\"\n\
         cert = \"{}\"\nkey = \"{}\"\nchain = \"{}\"\nca = \"{}\"\nreload = \"{reload}\"\n",
        server.http_01_port,
        acme_toml("internal", &server.directory(), &server.root(), "http-01", "profile = \"node\"\n"),
        s(&out.join("cert.pem")),
        s(&out.join("key.pem")),
        s(&out.join("chain.pem")),
        s(&out.join("ca.pem")),
    )
}

/// `gatehouse --data-dir DATA agent --config FILE --once`, the port held.
fn agent_once(server: &GatehouseAcme, data: &Path, config: &Path) -> Out {
    let _port = server.hold_http();
    gh(data, &["agent", "--config", s(config), "--once"])
}

/// (inode, mtime in ns) of each file.
fn stamps(files: &[&Path]) -> Vec<(u64, i128)> {
    files
        .iter()
        .map(|f| {
            let m = fs::metadata(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            (m.ino(), i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()))
        })
        .collect()
}

#[test]
fn agent_once_writes_the_files_runs_reload_and_then_finds_it_not_due() {
    let server = GatehouseAcme::shared();
    let dir = tmp();
    let data = mkdir(dir.join("data"));
    let out = dir.join("out");
    let reloaded = dir.join("reloaded");
    let config = dir.join("agent.toml");
    write(&config, agent_toml(server, &out, &format!("touch {}", s(&reloaded))));

    let o = agent_once(server, &data, &config);
    assert_eq!(o.code, 0, "first --once:\n{}", o.all());
    let cert = out.join("cert.pem");
    for line in [format!("{NAME}: obtained, serial "), format!("{NAME}: wrote {}", s(&cert))] {
        assert!(o.stdout.contains(&line), "want {line:?} in:\n{}", o.all());
    }
    assert!(exists(&reloaded), "the reload command did not run:\n{}", o.all());

    // cert: the leaf then its chain; chain: the same chain; ca: the server's root.
    let in_cert = pem_certs(&read(&cert));
    let chain = pem_certs(&read(out.join("chain.pem")));
    assert!(in_cert.len() >= 2, "cert.pem holds {} certificate(s), want the leaf and its chain", in_cert.len());
    assert_eq!(in_cert[1..], chain[..], "cert.pem's chain vs chain.pem");
    let ca = out.join("ca.pem");
    assert_eq!(fingerprint(&ca), fingerprint(&server.root()), "ca.pem is not the server's root");
    assert_eq!(mode(out.join("key.pem")), 0o600, "key.pem");
    let leaf = out.join("leaf.pem");
    write(&leaf, &in_cert[0]);
    let issued = Issued { leaf, chain: out.join("chain.pem"), key: out.join("key.pem") };
    issued.assert_valid(&ca, &[NAME]);
    server.assert_issued(&issued, &[NAME], SERVER_PROFILE_HOURS);
    let said = o.stdout.split("serial ").nth(1).and_then(|rest| rest.split([',', ' ']).next()).unwrap_or_default();
    assert_eq!(norm_serial(said), norm_serial(&issued.serial()), "the serial --once printed:\n{}", o.stdout);
    let text = x509_text(&issued.leaf);
    for eku in ["TLS Web Server Authentication", "TLS Web Client Authentication"] {
        assert!(text.contains(eku), "the node profile's certificate lacks {eku}:\n{text}");
    }

    // A second pass: not due, nothing written, no reload.
    fs::remove_file(&reloaded).unwrap();
    let files = [cert.as_path(), &out.join("key.pem"), &out.join("chain.pem"), &ca];
    let before = stamps(&files);
    let o = agent_once(server, &data, &config);
    assert_eq!(o.code, 0, "second --once:\n{}", o.all());
    assert!(o.stdout.contains(&format!("{NAME}: not due; renewal at ")), "{}", o.all());
    assert!(!o.stdout.contains("wrote"), "a pass with nothing due wrote files:\n{}", o.all());
    assert_eq!(stamps(&files), before, "a pass with nothing due touched the files");
    assert!(!exists(&reloaded), "a pass with nothing due ran the reload command");

    // The same certificate to new files, with a reload command that fails: exit 3.
    let out2 = dir.join("out2");
    write(&config, agent_toml(server, &out2, "echo reload-broke >&2; exit 7"));
    let o = agent_once(server, &data, &config);
    assert_eq!(o.code, 3, "a failing reload command:\n{}", o.all());
    assert!(o.stdout.contains(&format!("{NAME}: wrote {}", s(&out2.join("cert.pem")))), "{}", o.all());
    for words in ["reload command", "failed", "reload-broke"] {
        assert!(o.stderr.contains(words), "want {words:?} in stderr:\n{}", o.stderr);
    }
    assert_eq!(read(out2.join("cert.pem")), read(&cert), "the kept certificate, written again");
}

#[test]
fn agent_config_error_is_exit_2_naming_the_line() {
    let dir = tmp();
    let data = mkdir(dir.join("data"));
    let bundle = dir.join("bundle.pem");
    write(&bundle, "");
    let toml = format!(
        "http_01_listen = \"127.0.0.1:9\"\n{}\n[[certificate]]\nnames = [\"{NAME}\"]\nacme = \"nope\"\n\
         cert = \"cert.pem\"\nkey = \"key.pem\"\n",
        acme_toml("internal", "https://127.0.0.1:9/acme/directory", &bundle, "http-01", "")
    );
    let config = dir.join("agent.toml");
    write(&config, &toml);
    let o = gh(&data, &["agent", "--config", s(&config), "--once"]);
    assert_eq!(o.code, 2, "{}", o.all());
    assert!(o.stderr.contains("acme = \"nope\"") && o.stderr.contains("[[acme]]"), "{}", o.stderr);
    // The line of the [[certificate]] table, or of a key in it.
    let table = toml.lines().position(|l| l == "[[certificate]]").unwrap() + 1;
    let line: usize = o
        .stderr
        .split("line ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no line number in:\n{}", o.stderr));
    assert!(
        (table..=table + 4).contains(&line),
        "line {line}, want the [[certificate]] at line {table}:\n{}",
        o.stderr
    );
}

/// Two agents with data dirs of their own and one PostgreSQL storage: the first orders,
/// the second (a node whose disk is new) gets the same certificate from the database
/// without ordering, its key encrypted there with the CA passphrase; without a
/// passphrase the agent refuses to start rather than keep keys in the clear.
#[test]
fn agents_on_one_postgresql_storage_share_one_certificate() {
    const PAIR: &str = "pair.example.test";
    let server = GatehouseAcme::shared();
    let storage = test_cluster::database_blocking();
    let dir = tmp();
    let shared = [(PASS_ENV, "a passphrase for the agents' keys")];
    let agent = |node: &str, env: &[(&str, &str)]| {
        let data = mkdir(dir.join(node).join("data"));
        let out = dir.join(node).join("out");
        let config = dir.join(node).join("agent.toml");
        write(&config, agent_toml(server, &out, "true").replace(NAME, PAIR));
        let _port = server.hold_http();
        let o = gh_env(&data, &["--storage", &storage, "agent", "--config", s(&config), "--once"], env);
        (o, out)
    };

    let (o, out_a) = agent("a", &shared);
    assert_eq!(o.code, 0, "first agent:\n{}", o.all());
    assert!(o.stdout.contains(&format!("{PAIR}: obtained, serial ")), "{}", o.all());

    let (o, out_b) = agent("b", &shared);
    assert_eq!(o.code, 0, "second agent:\n{}", o.all());
    assert!(!o.stdout.contains("obtained"), "the second agent ordered again instead of sharing:\n{}", o.all());
    assert!(o.stdout.contains(&format!("{PAIR}: not due; renewal at ")), "{}", o.all());
    assert_eq!(read(out_b.join("cert.pem")), read(out_a.join("cert.pem")), "one certificate for both agents");
    assert_eq!(read(out_b.join("key.pem")), read(out_a.join("key.pem")), "and its key");
    assert_eq!(mode(out_b.join("key.pem")), 0o600);

    let (o, _) = agent("c", &[]);
    assert_eq!(o.code, 2, "no passphrase:\n{}", o.all());
    assert!(o.stderr.contains("GATEHOUSE_CA_PASSPHRASE"), "{}", o.all());
}
