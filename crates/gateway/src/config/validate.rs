//! Whether a configuration that parsed can be served: names that must point at a
//! table do, hosts are served once, routes can match and reach an upstream, and
//! what a site's certificate source needs is there. Every problem is reported, in
//! file order.

use std::collections::HashSet;

use toml::Spanned;

use pki::line_col;

use super::{Config, MtlsMode, RouteConfig, RouteMtls, SiteConfig, is_host_pattern};
use crate::acme_client::{AcmeConfig, Challenge};
use crate::certificates::CertificateSource;

impl Config {
    /// Every reason the configuration cannot be served, sites in file order.
    pub(super) fn validate(&self, text: &str) -> Vec<String> {
        let check = Check { config: self, text, upstreams: self.upstreams.iter().map(|u| u.name.as_str()).collect() };
        let mut problems = Vec::new();
        if check.upstreams.len() != self.upstreams.len() {
            problems.push("two [[upstream]] tables have the same name; give each a unique name".to_owned());
        }
        // One problem per upstream (its first), but every upstream.
        problems.extend(self.upstreams.iter().filter_map(|u| u.check().err()).map(|e| e.to_string()));
        if let Some(storage) = &self.storage
            && let Err(e) = store::StorageUrl::parse(storage.get_ref())
        {
            problems.push(format!("{}: storage: {e}", check.at(storage.span())));
        }
        if self.sites.is_empty() && self.acme_server.is_none() {
            problems.push(
                "no [[site]] and no [acme_server] is configured; add a site with hosts, certificate and upstream"
                    .to_owned(),
            );
        }
        let mut seen_hosts = HashSet::new();
        for (i, site) in self.sites.iter().enumerate() {
            check.site(i, site, &mut seen_hosts, &mut problems);
        }
        problems.extend(acme_table_problems(&self.acme, text));
        check.keyless(&mut problems);
        check.listen(&mut problems);
        if self.limits.max_connections == 0 || self.limits.max_header_bytes < 1024 {
            problems.push("limits: max_connections must be at least 1 and max_header_bytes at least 1024".to_owned());
        }
        problems
    }
}

/// One validation run: the configuration, its text (for line numbers) and the
/// names of its upstream pools.
struct Check<'a> {
    config: &'a Config,
    text: &'a str,
    upstreams: HashSet<&'a str>,
}

impl Check<'_> {
    /// `line N, column M` of a span of the file.
    fn at(&self, span: std::ops::Range<usize>) -> String {
        line_col(self.text, span.start)
    }

    /// `key = "NAME"` must name an `[[upstream]]`.
    fn upstream(&self, name: &Spanned<String>, key: &str, problems: &mut Vec<String>) {
        if !self.upstreams.contains(name.get_ref().as_str()) {
            problems.push(format!(
                "{}: {key} = \"{}\" names no [[upstream]]; define it or fix the name",
                self.at(name.span()),
                name.get_ref()
            ));
        }
    }

    /// One `[[site]]`: its hosts (each served by one site only), certificate source,
    /// trust store, upstream and routes.
    fn site(&self, i: usize, site: &SiteConfig, seen_hosts: &mut HashSet<String>, problems: &mut Vec<String>) {
        if site.hosts.is_empty() {
            problems.push(format!("site[{i}].hosts is empty; list the host names this site serves"));
        }
        for host in &site.hosts {
            let name = host.get_ref().to_ascii_lowercase();
            if !is_host_pattern(&name) {
                problems.push(format!(
                    "{}: site[{i}].hosts entry \"{name}\" is not a host name, IP address or *.wildcard",
                    self.at(host.span())
                ));
            } else if !seen_hosts.insert(name.clone()) {
                problems
                    .push(format!("{}: host \"{name}\" is served by two sites; keep it in one", self.at(host.span())));
            }
        }
        self.certificate(i, site, problems);
        if matches!(site.mtls, MtlsMode::Optional | MtlsMode::Require) {
            match &site.trust {
                Some(t) if t.internal_ca || !t.ca_files.is_empty() => {}
                _ => problems.push(format!(
                    "site[{i}] has mtls = \"{}\" but no trust store; add trust = {{ internal_ca = true }} or trust = {{ ca_files = [...] }}",
                    if site.mtls == MtlsMode::Require { "require" } else { "optional" }
                )),
            }
        }
        if let Some(u) = &site.upstream {
            self.upstream(u, &format!("site[{i}].upstream"), problems);
        }
        for (j, route) in site.routes.iter().enumerate() {
            self.route(i, site, j, route, problems);
        }
        if site.upstream.is_none() && site.routes.iter().all(|r| r.path_prefix != "/") {
            problems.push(format!(
                "site[{i}] has no upstream for paths no route matches; set site[{i}].upstream or add a route for \"/\""
            ));
        }
    }

    /// A site's certificate source, and the `[[keyless]]` or `[[acme]]` table it names.
    fn certificate(&self, i: usize, site: &SiteConfig, problems: &mut Vec<String>) {
        match site.certificate.source() {
            Err(problem) => problems.push(format!("site[{i}].certificate {problem}")),
            Ok(CertificateSource::Keyless { name, .. }) => {
                if !self.config.keyless.iter().any(|k| k.get_ref().name == *name) {
                    problems.push(format!(
                        "site[{i}].certificate.keyless = \"{name}\" names no [[keyless]] table; define it or fix the name"
                    ));
                }
            }
            Ok(CertificateSource::Acme(name)) => match self.config.acme_table(name) {
                None => problems.push(format!(
                    "site[{i}].certificate.acme = \"{name}\" names no [[acme]] table; define it or fix the name"
                )),
                Some(acme) => problems.extend(site_acme_problems(i, site, acme.get_ref(), self.config, self.text)),
            },
            Ok(_) => {}
        }
    }

    /// Route `j` of site `i`: a canonical prefix, a client-certificate requirement the
    /// site can ask for, an upstream.
    fn route(&self, i: usize, site: &SiteConfig, j: usize, route: &RouteConfig, problems: &mut Vec<String>) {
        if !route.path_prefix.starts_with('/') {
            problems.push(format!("site[{i}].route[{j}].path_prefix \"{}\" must start with '/'", route.path_prefix));
        } else {
            match crate::target::canonical_path(&route.path_prefix) {
                Ok(None) => {}
                Ok(Some(canonical)) => problems.push(format!(
                    "site[{i}].route[{j}].path_prefix \"{}\" is not in canonical form; write it as \"{canonical}\" (requests are matched on their canonical path)",
                    route.path_prefix
                )),
                Err(e) => problems
                    .push(format!("site[{i}].route[{j}].path_prefix \"{}\" can never match: {e}", route.path_prefix)),
            }
        }
        if route.mtls == Some(RouteMtls::Require) && !matches!(site.mtls, MtlsMode::Optional | MtlsMode::Require) {
            problems.push(format!(
                "site[{i}].route[{j}] requires a client certificate but the site has mtls = off or passthrough; set the site's mtls = \"optional\""
            ));
        }
        match &route.upstream {
            Some(u) => self.upstream(u, &format!("site[{i}].route[{j}].upstream"), problems),
            None if site.upstream.is_none() => {
                problems.push(format!("site[{i}].route[{j}] has no upstream and the site has none; set one"));
            }
            None => {}
        }
    }

    /// The `[[keyless]]` tables: unique names, a client pair or none, and key servers
    /// listed or able to attach through the tunnel.
    fn keyless(&self, problems: &mut Vec<String>) {
        let mut names = HashSet::new();
        let tunnel = self.config.listen.as_ref().and_then(|l| l.keyless_tunnel);
        for (i, table) in self.config.keyless.iter().enumerate() {
            let (keyless, at) = (table.get_ref(), self.at(table.span()));
            if !names.insert(keyless.name.as_str()) {
                problems
                    .push(format!("{at}: keyless[{i}].name \"{}\" is used by two [[keyless]] tables", keyless.name));
            }
            if keyless.client_cert.is_some() != keyless.client_key.is_some() {
                problems.push(format!("{at}: keyless[{i}] needs both client_cert and client_key, or neither"));
            }
            if keyless.servers.is_empty() && tunnel.is_some() && keyless.server_name.is_none() {
                problems.push(format!(
                    "{at}: keyless[{i}] takes key servers from the tunnel but has no server_name; set the name their \
                     certificates carry (without it any client certificate of the same CA could attach)"
                ));
            }
            if keyless.servers.is_empty() && tunnel.is_none() {
                problems.push(format!(
                    "{at}: keyless[{i}] has no servers and there is no [listen] keyless_tunnel for key servers to \
                     attach to; list servers = [\"IP:PORT\"] or set keyless_tunnel"
                ));
            }
        }
    }

    /// `[listen]`'s keyless tunnel: set only with key servers to attach, with names a
    /// certificate can carry.
    fn listen(&self, problems: &mut Vec<String>) {
        let Some(listen) = &self.config.listen else { return };
        if listen.keyless_tunnel.is_some() && self.config.keyless.is_empty() {
            problems.push(
                "listen.keyless_tunnel is set but no [[keyless]] table uses key servers; add one or drop keyless_tunnel"
                    .to_owned(),
            );
        }
        if listen.keyless_tunnel.is_none() && !listen.keyless_tunnel_names.is_empty() {
            problems.push("listen.keyless_tunnel_names without keyless_tunnel; set keyless_tunnel".to_owned());
        }
        for name in &listen.keyless_tunnel_names {
            if !is_host_pattern(name) || name.starts_with("*.") {
                problems.push(format!("listen.keyless_tunnel_names: {name:?} is not a host name or IP address"));
            }
        }
    }
}

/// What is wrong with the `[[acme]]` tables on their own: names used twice, a dns-01
/// table without `dns`, a `dns` table without dns-01.
pub fn acme_table_problems(tables: &[Spanned<AcmeConfig>], text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    for (i, table) in tables.iter().enumerate() {
        let (acme, at) = (table.get_ref(), line_col(text, table.span().start));
        if !names.insert(acme.name.as_str()) {
            problems.push(format!("{at}: acme[{i}].name \"{}\" is used by two [[acme]] tables", acme.name));
        }
        if !acme.directory.starts_with("https://") {
            problems.push(format!(
                "{at}: acme[{i}].directory \"{}\" is not an https:// URL; give the CA's directory URL",
                acme.directory
            ));
        }
        match (acme.challenge, &acme.dns) {
            (Challenge::Dns01, None) => problems.push(format!(
                "{at}: acme[{i}] has challenge = \"dns-01\" but no dns table; add dns = {{ rfc2136 = {{ ... }} }} or dns = {{ exec = \"PATH\" }}"
            )),
            (Challenge::Http01 | Challenge::TlsAlpn01, Some(_)) => problems.push(format!(
                "{at}: acme[{i}] has a dns table but challenge = \"{}\"; set challenge = \"dns-01\" or drop the dns table",
                acme.challenge
            )),
            _ => {}
        }
    }
    problems
}

/// What keeps a site from getting its certificate through `acme`: a wildcard without
/// dns-01, http-01 without a plain-HTTP listener.
fn site_acme_problems(i: usize, site: &SiteConfig, acme: &AcmeConfig, config: &Config, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if acme.challenge != Challenge::Dns01 {
        for host in site.hosts.iter().filter(|h| h.get_ref().starts_with("*.")) {
            problems.push(format!(
                "{}: site[{i}].hosts entry \"{}\" is a wildcard, which only dns-01 can prove, but [[acme]] \"{}\" uses {}; \
                 use an [[acme]] table with challenge = \"dns-01\"",
                line_col(text, host.span().start),
                host.get_ref(),
                acme.name,
                acme.challenge
            ));
        }
    }
    if acme.challenge == Challenge::Http01 && config.listen.as_ref().is_some_and(|l| l.http.is_none()) {
        problems.push(format!(
            "site[{i}] gets its certificate through [[acme]] \"{}\" with http-01, which is answered on the plain-HTTP \
             listener; add http = \"0.0.0.0:80\" to [listen] or use tls-alpn-01",
            acme.name
        ));
    }
    problems
}
