//! `gatehouse config check FILE`: exit 0 and `FILE: ok (N sites, M upstreams)`, or
//! exit 2 with `gatehouse: FILE: line L, column C: ...` naming the key / file, one
//! line per error (then `FILE: N errors` when there are several).
mod support;
use support::*;

use std::fs;
use std::path::{Path, PathBuf};
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
    let mut c = gh_cmd(&env.data(), &["serve", "--config", s(&file)]);
    c.current_dir("/");
    let o = run_limited(c, Duration::from_secs(10));
    assert_eq!(o.code, 2, "serve with an invalid config should exit 2:\n{}", o.all());
    assert!(
        o.stderr.contains("colour") && o.stderr.contains(&format!("line {}", line_of(&text, "colour"))),
        "{}",
        o.stderr
    );
}

/// Writes `text` as bad.toml, checks it (exit 2 expected) and returns its `gatehouse: ` lines.
#[track_caller]
fn error_lines(env: &Env, conf: &Path, text: &str) -> Vec<String> {
    let file = conf.join("bad.toml");
    fs::write(&file, text).unwrap();
    let o = check(env, &file);
    assert_eq!(o.code, 2, "config check should exit 2:\n{}\nconfig:\n{text}", o.all());
    assert!(!o.stdout.contains(": ok"), "{}", o.all());
    let prefix = format!("gatehouse: {}: ", file.display());
    let lines: Vec<String> = o.stderr.lines().filter(|l| l.starts_with("gatehouse: ")).map(str::to_owned).collect();
    for l in &lines {
        assert!(l.starts_with(&prefix), "every error line names the file ({prefix:?}):\n{}", o.stderr);
    }
    lines
}

/// The one error line naming `needle`; it must say `line N,` when `line` is given.
#[track_caller]
fn assert_reported(lines: &[String], needle: &str, line: Option<usize>) {
    let named: Vec<&String> = lines.iter().filter(|l| l.contains(needle)).collect();
    assert_eq!(named.len(), 1, "one error line should name {needle:?}:\n{}", lines.join("\n"));
    if let Some(n) = line {
        assert!(named[0].contains(&format!(": line {n}, column ")), "{needle:?} should be on line {n}:\n{}", named[0]);
    }
}

#[test]
fn problems_in_different_tables_are_all_reported_with_their_lines() {
    let (env, conf) = setup();
    let text = format!("lsten_backlog = 5\n{VALID}")
        .replace("mtls = \"optional\"\n", "mtls = \"optional\"\ncolour = \"blue\"\n")
        .replace("hosts = [\"*.example.com\"]\n", "hosts = [\"*.example.com\"]\nmtls = \"sometimes\"\n");
    let lines = error_lines(&env, &conf, &text);
    assert_reported(&lines, "lsten_backlog", Some(1));
    assert_reported(&lines, "site[0].colour", Some(line_of(&text, "colour")));
    assert_reported(&lines, "site[1].mtls", Some(line_of(&text, "\"sometimes\"")));
    assert!(lines.last().is_some_and(|l| l.ends_with("bad.toml: 3 errors")), "{}", lines.join("\n"));
    assert_eq!(lines.len(), 4, "three errors and the count:\n{}", lines.join("\n"));
}

#[test]
fn every_semantic_problem_is_reported() {
    let (env, conf) = setup();
    let text = VALID
        .replace("path_prefix = \"/api\"", "path_prefix = \"api\"")
        .replace("upstream = \"api\"\n\n[[upstream]]", "upstream = \"nowhere\"\n\n[[upstream]]");
    let lines = error_lines(&env, &conf, &text);
    assert_reported(&lines, "site[0].route[0].path_prefix \"api\" must start with '/'", None);
    assert_reported(&lines, "site[1].upstream = \"nowhere\"", Some(line_of(&text, "\"nowhere\"")));
    assert_eq!(lines.len(), 3, "two errors and the count:\n{}", lines.join("\n"));
}

#[test]
fn every_upstream_is_checked() {
    let (env, conf) = setup();
    let text = VALID
        .replace("servers = [\"http://127.0.0.1:3000\"]", "servers = [\"ftp://127.0.0.1:3000\"]")
        .replace("servers = [\"http://127.0.0.1:3001\"]", "servers = []");
    let lines = error_lines(&env, &conf, &text);
    assert_reported(&lines, "upstream \"app\": servers[0] \"ftp://127.0.0.1:3000\"", None);
    assert_reported(&lines, "upstream \"api\": servers is empty", None);
}

#[test]
fn a_syntax_error_is_the_only_error_reported() {
    let (env, conf) = setup();
    // The unknown key after it is never reached: the parser stops at the syntax error.
    let text = VALID
        .replace("header_read_timeout_ms = 5000\n", "header_read_timeout_ms = \n")
        .replace("mtls = \"optional\"\n", "mtls = \"optional\"\ncolour = \"blue\"\n");
    let lines = error_lines(&env, &conf, &text);
    assert_eq!(lines.len(), 1, "one error, no count:\n{}", lines.join("\n"));
    assert!(
        lines[0].contains(&format!(": line {}, column ", line_of(&text, "header_read_timeout_ms"))),
        "{}",
        lines[0]
    );
}
