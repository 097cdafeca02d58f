//! Every shipped example (examples/*.toml) passes `gatehouse config check FILE`, as
//! examples/README.md promises. An example that names certificate files of the user's
//! own (origin CA, origin-pull certificate, ...) says how to make them in its header, on
//! `#   $ gatehouse ...` lines: those lines are run, as written, next to a copy of it
//! with a CA in the data dir, and the copy is checked there. As shipped, every example
//! is checked with no CA at all (`config check` only reads): it passes, or names a file
//! its `$` lines make; and the data dir is never created.
mod support;
use support::*;

use std::fs;
use std::path::{Path, PathBuf};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").canonicalize().expect("examples/ dir")
}

fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

/// The `#   $ COMMAND` lines of an example's header: the commands that make the files
/// it names, run in its directory.
fn setup_commands(text: &str) -> Vec<String> {
    text.lines().filter_map(|l| l.strip_prefix('#')?.trim_start().strip_prefix("$ ")).map(str::to_owned).collect()
}

/// Runs `commands` with `sh -e` in `dir`, with `gatehouse` on PATH and T/data its data dir.
fn run_in_shell(env: &Env, dir: &Path, commands: &[String]) {
    let bin_dir = Path::new(bin()).parent().expect("the binary's directory");
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut c = std::process::Command::new("sh");
    c.arg("-e").arg("-c").arg(commands.join("\n")).current_dir(dir);
    c.env("PATH", path).env("GATEHOUSE_DATA_DIR", env.data()).env_remove(PASS_ENV);
    let o = run_limited(c, std::time::Duration::from_secs(120));
    assert_eq!(o.code, 0, "the $ lines failed in {}:\n{}\n{}", dir.display(), commands.join("\n"), o.all());
}

/// `N site(s), M upstream(s)` as `config check` says it.
fn counted(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

#[track_caller]
fn check_ok(env: &Env, file: &Path) {
    let o = env.gh(&["config", "check", s(file)]);
    assert_eq!(o.code, 0, "gatehouse config check {} failed:\n{}", file.display(), o.all());
    let text = fs::read_to_string(file).unwrap();
    let (sites, upstreams) = (text.matches("[[site]]").count(), text.matches("[[upstream]]").count());
    let want = format!("{}: ok ({}, {})", file.display(), counted(sites, "site"), counted(upstreams, "upstream"));
    assert!(o.stdout.contains(&want), "no `{want}` line:\n{}", o.all());
}

#[test]
fn every_example_passes_config_check_after_its_setup_commands() {
    let env = Env::new();
    let all = examples();
    assert!(!all.is_empty(), "no examples/*.toml");
    let mut with_commands = Vec::new();
    for example in &all {
        let stem = example.file_stem().unwrap().to_str().unwrap();
        let dir = env.path().join(stem);
        fs::create_dir_all(&dir).unwrap();
        let copy = dir.join(example.file_name().unwrap());
        fs::copy(example, &copy).unwrap();
        let commands = setup_commands(&fs::read_to_string(example).unwrap());
        if !commands.is_empty() {
            run_in_shell(&env, &dir, &commands);
            with_commands.push(stem.to_owned());
        }
        check_ok(&env, &copy);
    }
    // The origin-pull example names origin-ca.pem and pull/origin-pull.{crt,key}, not shipped.
    assert!(
        with_commands.iter().any(|s| s == "per-path-mtls-origin-pull"),
        "the origin-pull example has no `#   $ gatehouse ...` lines making its files; with them: {with_commands:?}"
    );
}

#[test]
fn every_example_as_shipped_is_checked_without_a_ca_and_nothing_is_written() {
    let env = Env::empty();
    for example in examples() {
        let o = env.gh(&["config", "check", s(&example)]);
        if o.code == 0 {
            assert!(o.stdout.contains(&format!("{}: ok (", example.display())), "{}", o.all());
            continue;
        }
        // Refused only for a file of the user's own, one its `$` lines make.
        assert_eq!(o.code, 2, "config check {}:\n{}", example.display(), o.all());
        let commands = setup_commands(&fs::read_to_string(&example).unwrap()).join(" ");
        let made = commands.split_whitespace().filter(|w| w.contains('.') && !w.starts_with('-'));
        assert!(
            made.into_iter().any(|file| o.stderr.contains(file)),
            "{} fails for something its $ lines do not make:\n{}",
            example.display(),
            o.all()
        );
    }
    assert!(!env.data().exists(), "config check created the data dir {}", env.data().display());
}

/// The origin-pull example as shipped names files that do not exist: the check
/// refuses it with exit 2 and a sentence naming the file and the key.
#[test]
fn example_naming_missing_files_is_refused_naming_them() {
    let env = Env::new();
    let example = examples_dir().join("per-path-mtls-origin-pull.toml");
    assert!(example.exists(), "examples/per-path-mtls-origin-pull.toml is gone");
    let o = env.gh(&["config", "check", s(&example)]);
    assert_eq!(o.code, 2, "check of an example naming missing files:\n{}", o.all());
    let prefix = format!("gatehouse: {}:", example.display());
    assert!(o.stderr.starts_with(&prefix), "stderr does not start with `{prefix}`:\n{}", o.all());
    assert!(o.stderr.contains("origin-ca.pem"), "the missing file is not named:\n{}", o.all());
    assert!(o.stderr.contains("tls.ca"), "the key is not named:\n{}", o.all());
}

/// The `gatehouse agent` example (examples/agent/, not a gateway configuration) is read
/// and validated whole: as shipped, the one thing it lacks is the fleet CA's root, a
/// file of the user's own, which the agent names (exit 2) before contacting anything.
#[test]
fn the_agent_example_is_valid_but_for_the_fleet_root_it_names() {
    let env = Env::new();
    let example = examples_dir().join("agent/consul-node.toml");
    let o = env.gh(&["agent", "--config", s(&example), "--once"]);
    assert_eq!(o.code, 2, "{}", o.all());
    assert!(o.stderr.contains("ca_bundle /etc/gatehouse/fleet-root.pem"), "{}", o.all());
    assert_eq!(o.stderr.lines().count(), 1, "one error, not one per key: {}", o.all());
}
