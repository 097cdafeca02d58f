//! Every shipped example (examples/*.toml) passes `gatehouse config check FILE`
//! when a CA exists in the data dir. An example that names certificate files the
//! repository does not ship (origin CA, origin-pull certificate, ...) is copied to
//! a temp dir where exactly those files are made with `gatehouse ca issue` /
//! `ca crl` / the CA root, so that the check passes there.
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

/// A line without its `#` comment (a `#` inside a "string" is kept).
fn strip_comment(line: &str) -> &str {
    let mut in_str = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            '\\' if in_str && !escaped => {
                escaped = true;
                continue;
            }
            '"' if !escaped => in_str = !in_str,
            '#' if !in_str => return &line[..i],
            _ => {}
        }
        escaped = false;
    }
    line
}

/// The "..." strings right after `KEY =` (a single string or a [list]) wherever `KEY`
/// appears as a whole key, in comment-free text.
fn values_of(text: &str, key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(pos) = text[from..].find(key) {
        let start = from + pos;
        let end = start + key.len();
        from = end;
        let before_ok = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let rest = text[end..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let rest = rest[1..].trim_start();
        let (region, is_list) = if let Some(list) = rest.strip_prefix('[') {
            (&list[..list.find(']').unwrap_or(list.len())], true)
        } else {
            (rest, false)
        };
        let mut parts = region.split('"');
        parts.next();
        while let (Some(v), Some(_)) = (parts.next(), parts.next()) {
            out.push(v.to_string());
            if !is_list {
                break;
            }
        }
    }
    out
}

/// Files an example names, by role.
#[derive(Default, Debug)]
struct Named {
    ca: Vec<String>,
    client_pairs: Vec<(String, String)>,
    server_pairs: Vec<(String, String)>,
    crls: Vec<String>,
}

fn named_files(text: &str) -> Named {
    let clean: String = text.lines().map(strip_comment).collect::<Vec<_>>().join("\n");
    let mut n = Named::default();
    n.ca.extend(values_of(&clean, "ca"));
    n.ca.extend(values_of(&clean, "ca_files"));
    n.crls.extend(values_of(&clean, "crl_files"));
    let (cc, ck) = (values_of(&clean, "client_cert"), values_of(&clean, "client_key"));
    assert_eq!(cc.len(), ck.len(), "client_cert/client_key not paired: {cc:?} {ck:?}");
    n.client_pairs = cc.into_iter().zip(ck).collect();
    let (c, k) = (values_of(&clean, "cert"), values_of(&clean, "key"));
    assert_eq!(c.len(), k.len(), "certificate cert/key not paired: {c:?} {k:?}");
    n.server_pairs = c.into_iter().zip(k).collect();
    n
}

impl Named {
    fn all(&self) -> Vec<&String> {
        let mut v: Vec<&String> = self.ca.iter().chain(&self.crls).collect();
        for (a, b) in self.client_pairs.iter().chain(&self.server_pairs) {
            v.push(a);
            v.push(b);
        }
        v
    }
}

#[track_caller]
fn check_ok(env: &Env, file: &Path) {
    let o = env.gh(&["config", "check", s(file)]);
    assert_eq!(o.code, 0, "gatehouse config check {} failed:\n{}", file.display(), o.all());
    let want = format!("{}: ok (", file.display());
    assert!(o.stdout.contains(&want), "no `{want}... sites, ... upstreams)` line:\n{}", o.all());
    assert!(o.stdout.contains("sites,") && o.stdout.contains("upstreams)"), "{}", o.all());
}

/// Copies `example` into T/NAME/, creates every file it names that is missing there, checks it.
fn check_with_created_files(env: &Env, example: &Path, named: &Named) {
    let stem = example.file_stem().unwrap().to_str().unwrap();
    let dir = env.path().join(stem);
    fs::create_dir_all(&dir).unwrap();
    let copy = dir.join(example.file_name().unwrap());
    fs::copy(example, &copy).unwrap();
    let target = |rel: &str| -> PathBuf {
        assert!(Path::new(rel).is_relative(), "{}: names a missing absolute path {rel}", example.display());
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        p
    };
    for ca in &named.ca {
        let p = target(ca);
        if !p.exists() {
            fs::copy(env.root(), &p).unwrap();
        }
    }
    for crl in &named.crls {
        let p = target(crl);
        if !p.exists() {
            env.gh_ok(&["ca", "crl", "--out", s(&p)]);
        }
    }
    let scratch = env.path().join(format!("{stem}-issued"));
    for (profile, pairs) in [("client", &named.client_pairs), ("server", &named.server_pairs)] {
        for (crt, key) in pairs {
            let (crt_p, key_p) = (target(crt), target(key));
            if crt_p.exists() && key_p.exists() {
                continue;
            }
            let cn = Path::new(crt).file_stem().unwrap().to_str().unwrap().to_string();
            let sans: Vec<String> = if profile == "server" { vec![format!("DNS:{cn}")] } else { vec![] };
            let sans: Vec<&str> = sans.iter().map(String::as_str).collect();
            let issued = env.issue_in(&scratch.join(&cn), profile, &cn, &sans, &[]);
            fs::copy(issued.chain(), &crt_p).unwrap();
            fs::copy(&issued.key, &key_p).unwrap();
        }
    }
    check_ok(env, &copy);
}

#[test]
fn every_example_passes_config_check() {
    let env = Env::new();
    let all = examples();
    assert!(!all.is_empty(), "no examples/*.toml");
    let mut copied = 0;
    for example in &all {
        let text = fs::read_to_string(example).unwrap();
        let named = named_files(&text);
        let base = example.parent().unwrap();
        let missing: Vec<&String> = named.all().into_iter().filter(|f| !base.join(f).exists()).collect();
        if missing.is_empty() {
            check_ok(&env, example);
        } else {
            check_with_created_files(&env, example, &named);
            copied += 1;
        }
    }
    // The origin-pull example names origin-ca.pem and pull/origin-pull.{crt,key}, which are not shipped.
    assert!(copied >= 1, "expected at least the origin-pull example to need its certificate files");
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
