//! The README's tour, run as written: its ```sh blocks, from "## A tour" to the next
//! "## " heading, go through `sh -e` in a scratch directory holding a copy of examples/,
//! with `gatehouse` the binary under test and nothing inherited (no data dir, no
//! passphrase). Every command runs but `gatehouse serve`: the example it serves listens
//! on ports 443 and 80, which need privileges and may be taken; its config is checked by
//! the tour's `config check` line just before, and `serve` itself by the gw_* tests on
//! free ports. Then what the tour promises is looked at: the bundles, the revocation in
//! the CRL, the signed CSR.
mod support;
use support::*;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn repository() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The tour's shell commands, a continued line (ending in `\`) joined with the next.
fn tour_commands(readme: &str) -> Vec<String> {
    let start = readme.find("\n## A tour").expect("README.md has no `## A tour` section");
    let section = &readme[start + 1..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |i| i + 1)];
    let mut commands = Vec::new();
    let mut in_block = false;
    let mut pending = String::new();
    for line in section.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block && line.trim() == "```sh";
            continue;
        }
        if !in_block {
            continue;
        }
        pending.push_str(line);
        if pending.ends_with('\\') {
            pending.push('\n');
            continue;
        }
        let command = std::mem::take(&mut pending);
        if !command.trim().is_empty() && !command.trim_start().starts_with('#') {
            commands.push(command);
        }
    }
    commands
}

/// Copies the directory `from` to `to`, files only.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn the_readme_tour_runs_as_written() {
    require("openssl");
    let readme = fs::read_to_string(repository().join("README.md")).unwrap();
    let commands = tour_commands(&readme);
    let (served, run): (Vec<String>, Vec<String>) =
        commands.into_iter().partition(|c| c.trim_start().starts_with("gatehouse serve "));
    assert!(run.len() > 10, "the tour has only these commands:\n{}", run.join("\n"));
    for serve in &served {
        let config = serve.split_whitespace().nth(3).expect("gatehouse serve --config FILE");
        let checked = format!("gatehouse config check {config}");
        assert!(run.iter().any(|c| c.starts_with(&checked)), "the tour serves {config} without `{checked}` first");
    }

    let dir = tmp();
    copy_dir(&repository().join("examples"), &dir.path().join("examples"));
    let bin_dir = Path::new(bin()).parent().expect("the binary's directory");
    let mut c = Command::new("sh");
    c.arg("-e").arg("-c").arg(run.join("\n")).current_dir(dir.path());
    c.env("PATH", format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default()));
    c.env_remove("GATEHOUSE_DATA_DIR").env_remove(PASS_ENV);
    let o = run_limited(c, Duration::from_secs(300));
    assert_eq!(o.code, 0, "the README tour stopped:\n{}", o.all());
    assert!(o.stdout.contains("examples/closed-sns-mtls.toml: ok (1 site, 1 upstream)"), "{}", o.all());

    let path = |name: &str| dir.path().join(name);
    for file in ["trust-store.pem", "users/alice.p12", "users/alice-iphone.p12", "users/bob.p12", "users/carol.p12"] {
        assert!(path(file).is_file(), "the tour made no {file}:\n{}", o.all());
    }
    assert!(read(path("users/passwords.csv")).contains("bob"), "bob's generated password is not in passwords.csv");

    // The passphrase carried from `ca init` to the commands that need the CA key.
    let key = read(path("gatehouse-data/ca/intermediate.key"));
    assert!(key.contains("ENCRYPTED PRIVATE KEY"), "the tour's CA key is not encrypted");

    // alice's certificate, revoked by the tour, is in the CRL it published.
    let serial = serial_of(&path("users/alice.crt"));
    let crl = openssl_ok(&["crl", "-in", s(&path("crl.pem")), "-noout", "-text"]);
    assert!(crl.contains(&serial), "alice's serial {serial} is not in the tour's CRL:\n{crl}");
    assert!(crl.contains("Key Compromise"), "the CRL lacks the reason keyCompromise:\n{crl}");

    // The CSR made with openssl was signed into a client certificate that chains to the root.
    assert_verifies(&path("gatehouse-data"), "sslclient", &path("device.crt"));
}
