//! Reading the configuration file table by table, so that one run reports a
//! problem in every table rather than stopping at the first, each with its
//! key path and line.

use std::path::PathBuf;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use pki::line_col;

use super::{
    AcmeServerSettings, Config, IdentitySettings, Limits, Listen, LogSettings, RuntimeSettings, SiteConfig, TlsSettings,
};
use crate::upstream::UpstreamConfig;

/// Deserializes the document one top-level table at a time, and each element
/// of `[[site]]` and `[[upstream]]` on its own, so that one run reports a
/// schema problem (unknown key, wrong type, missing key) in every table; within
/// a table serde stops at the first. A TOML syntax error stops the parser, so
/// it is the only problem reported.
pub(super) fn read_tables(text: &str) -> Result<Config, Vec<String>> {
    let root = DeTable::parse(text).map_err(|e| vec![toml_message(text, e.span(), e.message())])?;
    let mut problems = SchemaProblems { text, found: Vec::new() };
    for (key, value) in root.get_ref().iter() {
        let name: &str = key.get_ref();
        match name {
            "data_dir" => problems.read::<PathBuf>(name, value),
            "storage" => problems.read::<String>(name, value),
            "listen" => problems.read::<Listen>(name, value),
            "tls" => problems.read::<TlsSettings>(name, value),
            "limits" => problems.read::<Limits>(name, value),
            "identity" => problems.read::<IdentitySettings>(name, value),
            "runtime" => problems.read::<RuntimeSettings>(name, value),
            "log" => problems.read::<LogSettings>(name, value),
            "site" => problems.read_each::<SiteConfig>(name, value),
            "upstream" => problems.read_each::<UpstreamConfig>(name, value),
            "acme_server" => problems.read::<AcmeServerSettings>(name, value),
            "acme" => problems.read_each::<crate::acme_client::AcmeConfig>(name, value),
            "keyless" => problems.read_each::<crate::keyless::KeylessConfig>(name, value),
            _ => {
                // Config's own derive, given a table of just this key, names it and lists the known ones.
                let alone: DeTable = [(key.clone(), value.clone())].into_iter().collect();
                let unknown = Config::deserialize(toml::de::Deserializer::from(Spanned::new(root.span(), alone)));
                if let Err(e) = unknown {
                    problems.note(name, value, &e);
                }
            }
        }
    }
    let mut found = problems.found;
    // The map iterates keys by name; the operator reads the file top to bottom.
    found.sort_by_key(|(offset, _)| *offset);
    let mut messages: Vec<String> = found.into_iter().map(|(_, message)| message).collect();
    // Sites need a listener; an ACME-only configuration does not.
    if !root.get_ref().contains_key("listen") && root.get_ref().contains_key("site") {
        messages.push("missing field `listen`; add a [listen] table with https = \"ADDRESS:PORT\"".to_owned());
    }
    if !messages.is_empty() {
        return Err(messages);
    }
    // Every table has been read once already; this builds the whole with serde's defaults.
    Config::deserialize(toml::de::Deserializer::from(root)).map_err(|e| vec![toml_message(text, e.span(), e.message())])
}

/// Schema problems, each with the byte offset it is at.
struct SchemaProblems<'t> {
    text: &'t str,
    found: Vec<(usize, String)>,
}

impl SchemaProblems<'_> {
    /// Deserializes the value of key `path` as a `T`, noting its first problem.
    fn read<T: DeserializeOwned>(&mut self, path: &str, value: &Spanned<DeValue<'_>>) {
        if let Err(e) = T::deserialize(ValueDeserializer::from(value.clone())) {
            self.note(path, value, &e);
        }
    }

    /// Deserializes each element of the array of tables `name` as a `T` on its own.
    fn read_each<T: DeserializeOwned>(&mut self, name: &str, value: &Spanned<DeValue<'_>>) {
        match value.get_ref() {
            DeValue::Array(elements) => {
                for (i, element) in elements.iter().enumerate() {
                    self.read::<T>(&format!("{name}[{i}]"), element);
                }
            }
            // Not an array: serde says what it is instead.
            _ => self.read::<Vec<T>>(name, value),
        }
    }

    /// Notes `error`, found in `value` (the value of key `path`), naming the
    /// key below `path` it is at and its line.
    fn note(&mut self, path: &str, value: &Spanned<DeValue<'_>>, error: &toml::de::Error) {
        let message = error.message().trim_end();
        let Some(offset) = error.span().map(|span| span.start) else {
            self.found.push((value.span().start, format!("{path}: {message}")));
            return;
        };
        let below = key_path_at(value.get_ref(), offset).unwrap_or_default();
        self.found.push((offset, format!("{}: {path}{below}: {message}", line_col(self.text, offset))));
    }
}

/// The key path (`.route[0].mtls`) inside `value` of the key or value at byte
/// `offset`; `None` when it is `value` itself (a missing key: the span is the
/// table's header).
fn key_path_at(value: &DeValue<'_>, offset: usize) -> Option<String> {
    let within = |path: String, child: &Spanned<DeValue<'_>>| match key_path_at(child.get_ref(), offset) {
        Some(below) => Some(path + &below),
        None => child.span().contains(&offset).then_some(path),
    };
    match value {
        DeValue::Table(table) => table.iter().find_map(|(key, child)| {
            let path = format!(".{}", key.get_ref());
            if key.span().contains(&offset) { Some(path) } else { within(path, child) }
        }),
        DeValue::Array(elements) => elements.iter().enumerate().find_map(|(i, child)| within(format!("[{i}]"), child)),
        _ => None,
    }
}

fn toml_message(text: &str, span: Option<std::ops::Range<usize>>, message: &str) -> String {
    match span {
        Some(span) => format!("{}: {}", line_col(text, span.start), message.trim_end()),
        None => message.trim_end().to_owned(),
    }
}
