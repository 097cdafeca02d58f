use super::*;
use crate::acme_client::Challenge;
use crate::certificates::CertificateSource;

const GOOD: &str = r#"data_dir = "ca"

[listen]
https = "127.0.0.1:8443"

[tls]
min_version = "1.3"

[limits]
max_connections = 10

[identity]
format = "xfcc"

[runtime]
worker_threads = 1

[log]
access = false

[[site]]
hosts = ["a.example"]
certificate = { internal_ca = true }
upstream = "app"

[[site]]
hosts = ["b.example"]
certificate = { internal_ca = true }
upstream = "app"

[[upstream]]
name = "app"
servers = ["http://127.0.0.1:3000"]
"#;

fn messages(text: &str) -> Vec<String> {
    Config::parse(Path::new("t.toml"), text).expect_err("the config should be refused").messages
}

#[test]
fn every_top_level_key_is_read() {
    let config = Config::parse(Path::new("t.toml"), GOOD).expect("valid config");
    assert_eq!(config.sites.len(), 2);
    assert_eq!(config.identity.format, IdentityFormat::Xfcc);
    let host = &config.sites[1].hosts[0];
    assert_eq!(&GOOD[host.span()], "\"b.example\"", "spans are relative to the whole file");
}

#[test]
fn schema_problems_in_every_table_are_reported_in_file_order() {
    let text = GOOD
        .replace("data_dir = \"ca\"\n", "data_dir = \"ca\"\nbacklog = 5\n")
        .replace("access = false", "access = \"no\"")
        .replacen("upstream = \"app\"\n", "upstream = \"app\"\ncolour = \"blue\"\n", 1)
        .replacen("hosts = [\"b.example\"]\n", "hosts = [\"b.example\", 3]\n", 1)
        .replace("servers = [\"http://127.0.0.1:3000\"]", "servers = \"http://127.0.0.1:3000\"");
    assert_eq!(
        messages(&text),
        [
            "line 2, column 1: backlog: unknown field `backlog`, expected one of `data_dir`, `storage`, `listen`, \
             `tls`, `limits`, `identity`, `runtime`, `log`, `site`, `upstream`, `acme_server`, `acme`, `keyless`",
            "line 20, column 10: log.access: invalid type: string \"no\", expected a boolean",
            "line 26, column 1: site[0].colour: unknown field `colour`, expected one of `hosts`, `certificate`, \
             `mtls`, `trust`, `upstream`, `hsts_max_age`, `route`",
            "line 29, column 23: site[1].hosts[1]: invalid type: integer `3`, expected a string",
            "line 35, column 11: upstream[0].servers: invalid type: string \"http://127.0.0.1:3000\", expected a sequence",
        ]
    );
}

#[test]
fn storage_is_a_url_that_names_a_backend() {
    let good = GOOD.replace("data_dir = \"ca\"\n", "data_dir = \"ca\"\nstorage = \"postgres://ca@db:5432/pki\"\n");
    let config = Config::parse(Path::new("t.toml"), &good).expect("valid config");
    assert_eq!(config.storage.map(|s| s.into_inner()).as_deref(), Some("postgres://ca@db:5432/pki"));
    let bad = GOOD.replace("data_dir = \"ca\"\n", "data_dir = \"ca\"\nstorage = \"mysql://ca:pw@db/pki\"\n");
    let found = messages(&bad);
    assert!(
        found.len() == 1 && found[0].starts_with("line 2, column 11: storage: the storage URL mysql://ca:***@db/pki"),
        "{found:?}"
    );
}

#[test]
fn a_problem_deep_in_a_table_names_its_whole_path() {
    let text = GOOD
        .replacen("upstream = \"app\"\n", "upstream = \"app\"\n[[site.route]]\npath_prefix = \"/\"\n[[site.route]]\npath_prefix = \"/a\"\nmtls = \"sometimes\"\n", 1)
        .replace("hosts = [\"b.example\"]\ncertificate = { internal_ca = true }", "hosts = [\"b.example\"]\ncertificate = { internal_ca = \"yes\" }");
    assert_eq!(
        messages(&text),
        [
            "line 29, column 8: site[0].route[1].mtls: unknown variant `sometimes`, expected `require` or `off`",
            "line 33, column 31: site[1].certificate.internal_ca: invalid type: string \"yes\", expected a boolean",
        ]
    );
}

#[test]
fn a_missing_key_names_its_table() {
    let text = GOOD.replacen("hosts = [\"b.example\"]\n", "", 1).replace("[listen]\nhttps = \"127.0.0.1:8443\"\n", "");
    assert_eq!(
        messages(&text),
        [
            "line 24, column 1: site[1]: missing field `hosts`",
            "missing field `listen`; add a [listen] table with https = \"ADDRESS:PORT\"",
        ]
    );
}

/// A configuration with one ACME site: `site` and `acme` are the lines of each table.
fn acme_config(listen: &str, site: &str, acme: &str) -> String {
    format!(
        "[listen]\nhttps = \"127.0.0.1:8443\"\n{listen}\n[[acme]]\nname = \"le\"\n\
         directory = \"https://acme.example/directory\"\n{acme}\n[[site]]\n{site}\nupstream = \"app\"\n\
         [[upstream]]\nname = \"app\"\nservers = [\"http://127.0.0.1:3000\"]\n"
    )
}

#[test]
fn acme_sites_are_checked_against_their_tables() {
    let http = "http = \"127.0.0.1:8080\"";
    let ok = acme_config(http, "hosts = [\"a.test\"]\ncertificate = { acme = \"le\" }", "");
    let config = Config::parse(Path::new("t.toml"), &ok).expect("valid");
    assert_eq!(config.sites[0].certificate.source(), Ok(&CertificateSource::Acme("le".into())));
    assert_eq!(config.acme[0].get_ref().challenge, Challenge::Http01, "http-01 unless told otherwise");

    let wildcard = acme_config(http, "hosts = [\"a.test\", \"*.b.test\"]\ncertificate = { acme = \"le\" }", "");
    assert_eq!(
        messages(&wildcard),
        ["line 9, column 20: site[0].hosts entry \"*.b.test\" is a wildcard, which only dns-01 can prove, but \
             [[acme]] \"le\" uses http-01; use an [[acme]] table with challenge = \"dns-01\""]
    );
    let unknown = acme_config(http, "hosts = [\"a.test\"]\ncertificate = { acme = \"zerossl\" }", "");
    assert_eq!(
        messages(&unknown),
        ["site[0].certificate.acme = \"zerossl\" names no [[acme]] table; define it or fix the name"]
    );
    let no_http = acme_config("", "hosts = [\"a.test\"]\ncertificate = { acme = \"le\" }", "");
    let found = messages(&no_http);
    assert!(found.len() == 1 && found[0].contains("add http = \"0.0.0.0:80\" to [listen]"), "{found:?}");
    let tls = acme_config("", "hosts = [\"a.test\"]\ncertificate = { acme = \"le\" }", "challenge = \"tls-alpn-01\"");
    Config::parse(Path::new("t.toml"), &tls).expect("tls-alpn-01 needs no plain-HTTP listener");
    let no_dns = acme_config(http, "hosts = [\"*.b.test\"]\ncertificate = { acme = \"le\" }", "challenge = \"dns-01\"");
    let found = messages(&no_dns);
    assert!(found.len() == 1 && found[0].contains("challenge = \"dns-01\" but no dns table"), "{found:?}");
    let both = acme_config(http, "hosts = [\"a.test\"]\ncertificate = { acme = \"le\", internal_ca = true }", "");
    assert_eq!(
        messages(&both),
        ["site[0].certificate has more than one of files, internal_ca = true and acme; choose one"]
    );
    let bad_challenge =
        acme_config(http, "hosts = [\"a.test\"]\ncertificate = { acme = \"le\" }", "challenge = \"dns\"");
    let found = messages(&bad_challenge);
    assert!(found.len() == 1 && found[0].contains("acme[0].challenge: unknown variant `dns`"), "{found:?}");
}

#[test]
fn keyless_sites_name_their_table_and_give_no_key() {
    let config = |certificate: &str, table: &str| {
        format!(
            "[listen]\nhttps = \"127.0.0.1:8443\"\n[[keyless]]\nname = \"ks\"\nservers = [\"127.0.0.1:2407\"]\n{table}\n\
             [[site]]\nhosts = [\"a.test\"]\ncertificate = {certificate}\nupstream = \"app\"\n\
             [[upstream]]\nname = \"app\"\nservers = [\"http://127.0.0.1:3000\"]\n"
        )
    };
    let ok = Config::parse(Path::new("t.toml"), &config("{ cert = \"a.pem\", keyless = \"ks\" }", "")).expect("valid");
    assert_eq!(
        ok.sites[0].certificate.source(),
        Ok(&CertificateSource::Keyless { cert: "a.pem".into(), name: "ks".into() })
    );
    assert_eq!(ok.keyless[0].get_ref().timeout_ms, 2000);
    for (certificate, table, message) in [
        (
            "{ cert = \"a.pem\", keyless = \"other\" }",
            "",
            "site[0].certificate.keyless = \"other\" names no [[keyless]] table; define it or fix the name",
        ),
        (
            "{ keyless = \"ks\" }",
            "",
            "site[0].certificate has keyless but no cert; give the site's certificate chain as cert",
        ),
        (
            "{ cert = \"a.pem\", key = \"a.key\", keyless = \"ks\" }",
            "",
            "site[0].certificate has keyless and a key; a keyless site's key stays on the key server, drop key",
        ),
        (
            "{ cert = \"a.pem\", keyless = \"ks\" }",
            "client_cert = \"gw.crt\"",
            "line 3, column 1: keyless[0] needs both client_cert and client_key, or neither",
        ),
    ] {
        assert_eq!(messages(&config(certificate, table)), [message], "{certificate} {table}");
    }
    let unknown = messages(&config("{ cert = \"a.pem\", keyless = \"ks\" }", "retries = 3"));
    assert!(unknown.len() == 1 && unknown[0].contains("keyless[0].retries: unknown field `retries`"), "{unknown:?}");
}

#[test]
fn key_servers_are_listed_or_attach_through_the_tunnel() {
    let config = |listen: &str, servers: &str, tables: bool| {
        let table = if tables { format!("[[keyless]]\nname = \"ks\"\nservers = {servers}\n") } else { String::new() };
        let certificate =
            if tables { "{ cert = \"a.pem\", keyless = \"ks\" }" } else { "{ cert = \"a.pem\", key = \"a.key\" }" };
        format!(
            "[listen]\nhttps = \"127.0.0.1:8443\"\n{listen}\n{table}\
             [[site]]\nhosts = [\"a.test\"]\ncertificate = {certificate}\nupstream = \"app\"\n\
             [[upstream]]\nname = \"app\"\nservers = [\"http://127.0.0.1:3000\"]\n"
        )
    };
    let tunnel = "keyless_tunnel = \"127.0.0.1:2408\"\nkeyless_tunnel_names = [\"edge.example.com\"]";
    assert_eq!(
        messages(&config(tunnel, "[]", true)),
        ["line 5, column 1: keyless[0] takes key servers from the tunnel but has no server_name; set the name \
          their certificates carry (without it any client certificate of the same CA could attach)"]
    );
    let ok = Config::parse(Path::new("t.toml"), &config(tunnel, "[]\nserver_name = \"keys.internal\"", true))
        .expect("valid");
    let listen = ok.listen.expect("listen");
    assert_eq!(listen.keyless_tunnel, Some("127.0.0.1:2408".parse().unwrap()));
    assert_eq!(listen.keyless_tunnel_names, ["edge.example.com"]);
    assert_eq!(
        messages(&config("", "[]", true)),
        ["line 4, column 1: keyless[0] has no servers and there is no [listen] keyless_tunnel for key servers \
          to attach to; list servers = [\"IP:PORT\"] or set keyless_tunnel"]
    );
    assert_eq!(
        messages(&config(tunnel, "[]", false)),
        ["listen.keyless_tunnel is set but no [[keyless]] table uses key servers; add one or drop keyless_tunnel"]
    );
    let bad_name = "keyless_tunnel = \"127.0.0.1:2408\"\nkeyless_tunnel_names = [\"*.example.com\", \"a b\"]";
    assert_eq!(messages(&config(bad_name, "[\"127.0.0.1:2407\"]", true)).len(), 2);
    assert_eq!(
        messages(&config("keyless_tunnel_names = [\"edge\"]", "[\"127.0.0.1:2407\"]", true)),
        ["listen.keyless_tunnel_names without keyless_tunnel; set keyless_tunnel"]
    );
}

#[test]
fn a_syntax_error_is_the_only_one() {
    let text = GOOD.replace("worker_threads = 1", "worker_threads = ").replace("access = false", "colour = 1");
    let found = messages(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("line 16, column 18: "), "{found:?}");
}

#[test]
fn every_semantic_problem_is_reported() {
    let text = GOOD
        .replacen("upstream = \"app\"\n", "upstream = \"app\"\n[[site.route]]\npath_prefix = \"api\"\n", 1)
        .replace("hosts = [\"b.example\"]", "hosts = [\"a.example\"]")
        .replacen("upstream = \"app\"\n\n[[upstream]]", "upstream = \"nowhere\"\n\n[[upstream]]", 1)
        .replace("servers = [\"http://127.0.0.1:3000\"]", "servers = []");
    assert_eq!(
        messages(&text),
        [
            "upstream \"app\": servers is empty; list at least one URL",
            "site[0].route[0].path_prefix \"api\" must start with '/'",
            "line 29, column 10: host \"a.example\" is served by two sites; keep it in one",
            "line 31, column 12: site[1].upstream = \"nowhere\" names no [[upstream]]; define it or fix the name",
        ]
    );
}

#[test]
fn messages_quoting_the_file_stay_one_short_line() {
    let long = "x".repeat(5000);
    let semantic = GOOD.replace("hosts = [\"b.example\"]", "hosts = [\"b\\n.example\"]").replacen(
        "upstream = \"app\"\n",
        &format!("upstream = \"{long}\"\n"),
        1,
    );
    let mut found = messages(&semantic);
    found.extend(messages(&GOOD.replace("format = \"xfcc\"", "format = \"a\\u001b[2Jb\"")));
    assert_eq!(found.len(), 3, "{found:?}");
    for message in &found {
        assert!(!message.chars().any(char::is_control), "{message:?}");
        assert!(message.len() < 500, "{} bytes: {}", message.len(), &message[..100]);
    }
    assert!(found.iter().any(|m| m.contains("b\\n.example")), "{found:?}");
    assert!(found.iter().any(|m| m.ends_with("… (cut)")), "{found:?}");
}

#[test]
fn the_error_shows_one_line_per_problem() {
    let error = ConfigError::new(Path::new("gw.toml"), vec!["one".to_owned(), "two".to_owned()]);
    assert_eq!(error.to_string(), "gw.toml: one\ngw.toml: two");
}
