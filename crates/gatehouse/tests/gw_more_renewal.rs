//! Site certificates from the internal CA (`certificate = { internal_ca = true }`):
//! kept in DATA/gateway/certs/HOST.fullchain.pem + HOST.key, reused while more than a
//! third of their lifetime is left, renewed (at start) otherwise.
mod support;
use support::*;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

const HOST: &str = "renew.test";

fn renew_config(https: u16, up: &Upstream) -> String {
    format!(
        "{}\n[[site]]\nhosts = [\"{HOST}\", \"127.0.0.1\"]\ncertificate = {{ internal_ca = true }}\nupstream = \"app\"\n{}",
        listen_toml(https, None, None),
        upstream_toml("app", &up.url())
    )
}

fn stop(mut gw: Gateway) {
    gw.proc.signal("TERM");
    let st = gw.proc.wait_exit(Duration::from_secs(10));
    assert!(st.is_some_and(|s| s.success()), "gateway did not exit 0 on SIGTERM ({st:?})\n{}", gw.proc.dump());
}

/// The leaf the gateway serves for SNI renew.test, written to T/NAME.pem.
fn served_leaf(env: &Env, gw: &Gateway, name: &str) -> PathBuf {
    let root = env.root();
    let o = gw.s_client(&["-servername", HOST, "-showcerts", "-CAfile", s(&root), "-verify_return_error"], "");
    assert!(
        o.stdout.contains("Verify return code: 0 (ok)"),
        "the served chain must verify against the root:\n{}",
        o.all()
    );
    let pem = first_pem(&o.stdout).unwrap_or_else(|| panic!("no certificate from s_client:\n{}", o.all()));
    env.write(&format!("{name}.pem"), &pem)
}

/// A server certificate for renew.test + 127.0.0.1 signed with the internal intermediate
/// key by `openssl ca`, valid from `start` to `end` (Unix times); returns (crt, key).
fn openssl_ca_server(env: &Env, start: i64, end: i64) -> (PathBuf, PathBuf) {
    let ext = format!("extendedKeyUsage = serverAuth\nsubjectAltName = DNS:{HOST},IP:127.0.0.1\n");
    let c = env.openssl_ca("renew-old", HOST, &ext, &generalized_time(start), &generalized_time(end));
    (c.crt, c.key)
}

#[test]
fn internal_ca_site_certificate_is_reused_then_renewed_at_start_when_nearly_expired() {
    let env = Env::new();
    let up = Upstream::start(&env);
    let certs = env.data().join("gateway/certs");
    let fullchain = certs.join(format!("{HOST}.fullchain.pem"));
    let keyfile = certs.join(format!("{HOST}.key"));

    // First start: a certificate is issued and stored.
    let https = free_port();
    let gw = Gateway::start(&env, "gw.toml", https, &renew_config(https, &up));
    let first = served_leaf(&env, &gw, "first");
    let first_serial = serial_of(&first);
    stop(gw);
    assert!(fullchain.exists() && keyfile.exists(), "expected {} and {}", s(&fullchain), s(&keyfile));
    assert_eq!(
        norm_serial(&serial_of(&fullchain)),
        norm_serial(&first_serial),
        "the stored certificate is the one served"
    );

    // Second start: plenty of lifetime left, so the same certificate is reused.
    let https = free_port();
    let gw = Gateway::start(&env, "gw.toml", https, &renew_config(https, &up));
    let again = served_leaf(&env, &gw, "again");
    assert_eq!(norm_serial(&serial_of(&again)), norm_serial(&first_serial), "a fresh site certificate must be reused");
    stop(gw);

    // Replace it with one for the same names that has 0.5 of its 10 days left.
    let now = unix_now();
    let (old_crt, old_key) = openssl_ca_server(&env, now - 9 * 86_400 - 43_200, now + 43_200);
    let old_serial = serial_of(&old_crt);
    assert!(
        valid_after(&old_crt, 0) && !valid_after(&old_crt, 86_400),
        "the replacement must be valid now but not tomorrow"
    );
    openssl_ok(&["verify", "-CAfile", s(&env.root()), "-untrusted", s(&env.intermediate()), s(&old_crt)]);
    let inter = fs::read_to_string(env.intermediate()).unwrap();
    fs::write(&fullchain, format!("{}{inter}", fs::read_to_string(&old_crt).unwrap())).unwrap();
    fs::copy(&old_key, &keyfile).unwrap();

    // Third start: renewed at start.
    let https = free_port();
    let gw = Gateway::start(&env, "gw.toml", https, &renew_config(https, &up));
    let renewed = served_leaf(&env, &gw, "renewed");
    let new_serial = serial_of(&renewed);
    assert_ne!(
        norm_serial(&new_serial),
        norm_serial(&old_serial),
        "the gateway served the nearly expired certificate instead of renewing it\n{}",
        gw.proc.dump()
    );
    assert_ne!(norm_serial(&new_serial), norm_serial(&first_serial), "the renewed certificate must be a new one");
    assert!(valid_after(&renewed, 30 * 86_400), "the renewed certificate must have a fresh notAfter (> 30 days)");
    let text = openssl_ok(&["x509", "-in", s(&renewed), "-noout", "-ext", "subjectAltName"]);
    assert!(text.contains(&format!("DNS:{HOST}")) && text.contains("IP Address:127.0.0.1"), "{text}");
    // Stored for the next start.
    assert_eq!(norm_serial(&serial_of(&fullchain)), norm_serial(&new_serial), "the renewed certificate is stored");
    // And it serves requests.
    let r = gw.curl(HOST, "/", &[]);
    assert!(r.ok(), "{r:?}");

    // Recorded in the CA's database as a server certificate.
    let list: Value = serde_json::from_str(&env.gh_ok(&["ca", "list", "--json"])).expect("ca list --json");
    let list = list.as_array().expect("ca list --json is an array");
    let entry = list
        .iter()
        .find(|e| e["serial"].as_str().map(norm_serial) == Some(norm_serial(&new_serial)))
        .unwrap_or_else(|| panic!("renewed serial {new_serial} not in `ca list --json`: {list:?}"));
    assert_eq!(entry["profile"], "server", "{entry}");
    assert_eq!(entry["status"], "valid", "{entry}");
    drop(gw);
}
