//! `gatehouse config check FILE`: exit 0 and `FILE: ok (N sites, M upstreams)`, or
//! exit 2 with `gatehouse: FILE: line L, column C: ...` naming the key / file.
mod gw_common;
use gw_common::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// T/conf/tls/{localhost.fullchain.pem,localhost.key}; configs live in T/conf and use relative paths.
fn setup() -> (Env, PathBuf) {
    let env = Env::new();
    let c = localhost_cert(&env);
    let conf = env.path().join("conf");
    fs::create_dir_all(conf.join("tls")).unwrap();
    fs::copy(c.fullchain.as_ref().unwrap(), conf.join("tls/localhost.fullchain.pem")).unwrap();
    fs::copy(&c.key, conf.join("tls/localhost.key")).unwrap();
    (env, conf)
}

const VALID: &str = r#"[listen]
https = "127.0.0.1:18443"

[limits]
header_read_timeout_ms = 5000

[[site]]
hosts = ["localhost", "127.0.0.1"]
certificate = { cert = "tls/localhost.fullchain.pem", key = "tls/localhost.key" }
mtls = "optional"
trust = { internal_ca = true }
upstream = "app"

[[site.route]]
path_prefix = "/api"
mtls = "require"
upstream = "api"

[[site]]
hosts = ["*.example.com"]
certificate = { cert = "tls/localhost.fullchain.pem", key = "tls/localhost.key" }
upstream = "api"

[[upstream]]
name = "app"
servers = ["http://127.0.0.1:3000"]

[[upstream]]
name = "api"
servers = ["http://127.0.0.1:3001"]
"#;

/// 1-based line of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle} not in config")) + 1
}

fn check(env: &Env, file: &Path) -> Out {
    env.gh(&["config", "check", s(file)])
}

#[track_caller]
fn assert_config_error(env: &Env, conf: &Path, text: &str, must_name: &str, line: Option<usize>) {
    let file = conf.join("bad.toml");
    fs::write(&file, text).unwrap();
    let o = check(env, &file);
    assert_eq!(o.code, 2, "config check should exit 2:\n{}\nconfig:\n{text}", o.all());
    assert!(o.stderr.contains(must_name), "stderr should name {must_name:?}:\n{}", o.stderr);
    assert!(o.stderr.contains("bad.toml"), "stderr should name the file:\n{}", o.stderr);
    if let Some(n) = line {
        let want = format!("line {n}");
        let found = o.stderr.contains(&format!("{want},")) || o.stderr.contains(&format!("{want}:"));
        assert!(found, "stderr should say {want:?}:\n{}\nconfig:\n{text}", o.stderr);
    }
    assert!(o.stdout.trim().is_empty() || !o.stdout.contains(": ok"), "{}", o.all());
}

#[test]
fn valid_file_exits_0_with_counts() {
    let (env, conf) = setup();
    let file = conf.join("gw.toml");
    fs::write(&file, VALID).unwrap();
    let o = check(&env, &file);
    assert_eq!(o.code, 0, "{}", o.all());
    assert!(o.stdout.contains(": ok (2 sites, 2 upstreams)"), "stdout: {}", o.stdout);
    assert!(o.stdout.contains("gw.toml"), "stdout names the file: {}", o.stdout);
}

#[test]
fn unknown_key_exits_2_naming_key_and_line() {
    let (env, conf) = setup();
    // In a site table.
    let text = VALID.replace("mtls = \"optional\"\n", "mtls = \"optional\"\ncolour = \"blue\"\n");
    assert_config_error(&env, &conf, &text, "colour", Some(line_of(&text, "colour")));
    // In [limits].
    let text = VALID.replace("header_read_timeout_ms = 5000\n", "header_read_timeout_ms = 5000\nheader_timeout = 3\n");
    assert_config_error(&env, &conf, &text, "header_timeout", Some(line_of(&text, "header_timeout =")));
    // At the top level.
    let text = format!("lsten_backlog = 5\n{VALID}");
    assert_config_error(&env, &conf, &text, "lsten_backlog", Some(1));
}

#[test]
fn undefined_upstream_exits_2_naming_the_line() {
    let (env, conf) = setup();
    let text = VALID.replace("upstream = \"app\"\n", "upstream = \"nowhere\"\n");
    assert_config_error(&env, &conf, &text, "nowhere", Some(line_of(&text, "\"nowhere\"")));
    // In a route.
    let text = VALID.replace("upstream = \"api\"\n\n[[site]]", "upstream = \"apj\"\n\n[[site]]");
    assert_config_error(&env, &conf, &text, "apj", Some(line_of(&text, "\"apj\"")));
}

#[test]
fn missing_certificate_file_exits_2_naming_the_file() {
    let (env, conf) = setup();
    let text = VALID.replacen("tls/localhost.fullchain.pem", "tls/missing-chain.pem", 1);
    assert_config_error(&env, &conf, &text, "missing-chain.pem", None);
    let text = VALID.replacen("tls/localhost.key", "tls/missing.key", 1);
    assert_config_error(&env, &conf, &text, "missing.key", None);
}

#[test]
fn serve_refuses_a_config_with_an_unknown_key() {
    let (env, conf) = setup();
    let text = VALID.replace("mtls = \"optional\"\n", "mtls = \"optional\"\ncolour = \"blue\"\n");
    let file = conf.join("bad.toml");
    fs::write(&file, &text).unwrap();
    let mut c = Command::new(bin());
    c.arg("--data-dir").arg(env.data()).args(["serve", "--config", s(&file)]).current_dir("/");
    let o = run_limited(c, Duration::from_secs(10));
    assert_eq!(o.code, 2, "serve with an invalid config should exit 2:\n{}", o.all());
    assert!(
        o.stderr.contains("colour") && o.stderr.contains(&format!("line {}", line_of(&text, "colour"))),
        "{}",
        o.stderr
    );
}
