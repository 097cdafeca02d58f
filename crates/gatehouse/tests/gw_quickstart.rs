//! `gatehouse quickstart`: CA, client bundle, gateway with mTLS required in front of
//! the built-in echo upstream; the printed curl commands work as advertised.
mod support;
use support::*;

use std::time::Duration;

/// Runs a printed shell command with curl output options appended.
fn run_printed(cmd: &str) -> Resp {
    let args: Vec<String> = shell_words(cmd);
    assert_eq!(args[0], "curl", "not a curl command: {cmd}");
    curl(&args[1..])
}

/// Splits a printed command line on whitespace, honouring simple quotes.
fn shell_words(cmd: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in cmd.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn arg_after(words: &[String], flag: &str) -> Option<String> {
    words.iter().position(|w| w == flag).and_then(|i| words.get(i + 1)).cloned()
}

#[test]
fn quickstart_prints_a_command_that_gets_through_and_one_that_is_refused() {
    let env = Env::empty();
    let port = free_port();
    let mut c = gh_cmd(&env.data(), &["quickstart", "--listen", &format!("127.0.0.1:{port}")]);
    c.current_dir(env.path());
    let mut qs = Proc::spawn(c, "gatehouse quickstart");

    // Wait until it printed (at least) two curl commands and listens.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let commands = loop {
        let cmds: Vec<String> =
            qs.stdout_lines().iter().map(|l| l.trim().to_string()).filter(|l| l.starts_with("curl ")).collect();
        if cmds.len() >= 2 && port_open(port) {
            break cmds;
        }
        if let Some(st) = qs.try_exit() {
            panic!("quickstart exited ({st})\n{}", qs.dump());
        }
        assert!(std::time::Instant::now() < deadline, "quickstart printed no curl commands\n{}", qs.dump());
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(commands.len(), 2, "expected two curl commands:\n{}", qs.dump());

    // The CA is in the data dir.
    for f in ["ca/root.crt", "ca/intermediate.crt", "ca/root.key", "ca/intermediate.key"] {
        assert!(env.data().join(f).is_file(), "quickstart did not create {f} in the data dir\n{}", qs.dump());
    }

    let mut through = Vec::new();
    let mut refused = Vec::new();
    for cmd in &commands {
        let r = run_printed(cmd);
        if r.ok() { through.push((cmd.clone(), r)) } else { refused.push((cmd.clone(), r)) }
    }
    assert_eq!(through.len(), 1, "exactly one printed command should get through: {through:#?}\n{refused:#?}");
    assert_eq!(refused.len(), 1, "exactly one printed command should be refused: {refused:#?}");

    // The one that gets through: 200 and the echo shows the Client-Cert it forwarded.
    let (cmd, r) = &through[0];
    let words = shell_words(cmd);
    let crt = arg_after(&words, "--cert").unwrap_or_else(|| panic!("no --cert in {cmd}"));
    let key = arg_after(&words, "--key").unwrap_or_else(|| panic!("no --key in {cmd}"));
    let cert = Cert::from_files(crt.clone().into(), key.clone().into());
    let echoed: Vec<&str> = r
        .body
        .lines()
        .filter_map(|l| l.split_once(':').filter(|(k, _)| k.trim().eq_ignore_ascii_case("client-cert")))
        .map(|(_, v)| v.trim())
        .collect();
    assert_eq!(
        echoed,
        vec![format!(":{}:", base64(&cert.der())).as_str()],
        "echo upstream should show Client-Cert = :base64(DER): once\nbody:\n{}",
        r.body
    );
    assert!(r.body.lines().next().unwrap_or("").starts_with("GET /"), "echo shows the request line: {}", r.body);

    // The client bundle lives in the data dir and is a valid client certificate of the CA.
    for p in [&crt, &key] {
        let p = std::path::Path::new(p);
        assert!(p.is_file(), "{p:?} missing");
        let canon = p.canonicalize().unwrap();
        assert!(
            canon.starts_with(env.data().canonicalize().unwrap()),
            "client bundle {canon:?} is not in the data dir {:?}",
            env.data()
        );
    }
    let v = openssl_ok(&[
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        s(&env.root()),
        "-untrusted",
        s(&env.intermediate()),
        &crt,
    ]);
    assert!(v.contains(": OK"), "client certificate does not verify: {v}");

    // The refused one fails at the handshake and is logged.
    let (cmd, r) = &refused[0];
    assert!(!cmd.contains("--cert"), "the refused command should not present a certificate: {cmd}");
    assert_ne!(r.exit, 0, "refused command should fail: {r:?}");
    let line =
        qs.wait_json(Duration::from_secs(3), |v| v["event"] == "handshake_refused" && v["reason"] == "no_certificate");
    assert!(line.is_some(), "no handshake_refused/no_certificate line\n{}", qs.dump());

    qs.signal("TERM");
    let st = qs.wait_exit(Duration::from_secs(5));
    assert!(st.is_some_and(|s| s.success()), "quickstart should exit 0 on SIGTERM: {st:?}");
}
