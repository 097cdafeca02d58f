//! RFC 7512 `pkcs11:` URIs, as `[[keys]] uri = "..."` names keys:
//! `pkcs11:token=LABEL;object=LABEL;id=%01?module-path=PATH&pin-source=file:PATH`.
//!
//! Path attributes understood: `token` (required), `object` (`CKA_LABEL`), `id`
//! (`CKA_ID`, percent-encoded bytes) and `type` (only `private`, the keys this
//! server uses). Query attributes: `module-path` (required: the server loads
//! modules by path, not by `module-name`), `pin-source` (a `file:` URI or a
//! path; relative paths are taken from the config file's directory) and
//! `pin-value` (accepted, but the PIN then sits in the config file, so the
//! server warns). Any other attribute is refused by name rather than ignored,
//! since ignoring a selector (`serial`, `slot-id`) could pick another token's keys.

use std::path::Path;

use crate::config::{PinSource, Pkcs11Keys};

/// Reads `uri`, with relative paths taken from `base`; the error says what is
/// wrong and what to write instead.
pub(crate) fn parse(uri: &str, base: &Path) -> Result<Pkcs11Keys, String> {
    let rest = uri.strip_prefix("pkcs11:").ok_or_else(|| format!("{uri:?} does not start with pkcs11:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (mut token, mut object, mut id) = (None, None, None);
    for (name, value) in attributes(path, ';')? {
        match name.as_str() {
            "token" => token = Some(text(name.as_str(), value)?),
            "object" => object = Some(text(name.as_str(), value)?),
            "id" => id = Some(value),
            "type" if value == b"private" => {}
            "type" => return Err("type must be private (the key server uses private keys)".to_owned()),
            other => return Err(unsupported(other)),
        }
    }
    let (mut module, mut pin) = (None, None);
    for (name, value) in attributes(query, '&')? {
        match name.as_str() {
            "module-path" => module = Some(base.join(text(name.as_str(), value)?)),
            "pin-source" => {
                let source = text(name.as_str(), value)?;
                if source.starts_with('|') {
                    return Err("pin-source from a program (|...) is not supported; use file:PATH".to_owned());
                }
                // file:///abs, file:/abs and file:rel name a file; so does a bare path.
                let file = source.strip_prefix("file://").or_else(|| source.strip_prefix("file:")).unwrap_or(&source);
                pin = Some(PinSource::File(base.join(file)));
            }
            "pin-value" => {
                tracing::warn!("a pkcs11 URI carries pin-value: the PIN sits in the config file; prefer pin-source");
                pin = Some(PinSource::Value(text(name.as_str(), value)?));
            }
            "module-name" => return Err("module-name is not supported; give module-path=PATH".to_owned()),
            other => return Err(unsupported(other)),
        }
    }
    Ok(Pkcs11Keys {
        module: module.ok_or("no module-path; add ?module-path=/path/to/module.so")?,
        token: token.ok_or("no token; add token=LABEL")?,
        pin: pin.ok_or("no PIN; add pin-source=file:PATH")?,
        object,
        id,
    })
}

fn unsupported(name: &str) -> String {
    format!("attribute {name} is not supported (token, object, id, type; module-path, pin-source, pin-value are)")
}

/// `name=value` pairs separated by `separator`, values percent-decoded.
fn attributes(text: &str, separator: char) -> Result<Vec<(String, Vec<u8>)>, String> {
    text.split(separator)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').ok_or_else(|| format!("{part:?} is not name=value"))?;
            Ok((name.to_ascii_lowercase(), percent_decode(value)?))
        })
        .collect()
}

fn text(name: &str, value: Vec<u8>) -> Result<String, String> {
    String::from_utf8(value).map_err(|_| format!("{name} is not UTF-8 once percent-decoded"))
}

fn percent_decode(value: &str) -> Result<Vec<u8>, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value.get(i + 1..i + 3).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
            let byte = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{value:?}: % must be followed by two hex digits"))?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_percent_decoded_and_paths_resolved() {
        let k = parse(
            "pkcs11:token=my%20token;object=ec1;id=%01%ff;type=private?module-path=lib/m.so&pin-source=file:///run/pin",
            Path::new("/etc/ks"),
        )
        .unwrap();
        assert_eq!(k.token, "my token");
        assert_eq!((k.object.as_deref(), k.id.as_deref()), (Some("ec1"), Some(&[1u8, 0xFF][..])));
        assert_eq!(k.module, Path::new("/etc/ks/lib/m.so"));
        assert_eq!(k.pin, PinSource::File("/run/pin".into()));
        let k = parse("pkcs11:token=t?module-path=/m.so&pin-value=1234", Path::new("/")).unwrap();
        assert_eq!(k.pin, PinSource::Value("1234".into()));
        assert_eq!(format!("{:?}", k.pin), "Value(..)", "the PIN is never printed");
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let e = |uri: &str| parse(uri, Path::new("/")).unwrap_err();
        assert!(e("pkcs11:serial=1;token=t?module-path=/m&pin-value=1").contains("serial"));
        assert!(e("pkcs11:token=t?module-name=softhsm2&pin-value=1").contains("module-path"));
        assert!(e("pkcs11:token=t?module-path=/m").contains("pin-source"));
        assert!(e("pkcs11:token=t?module-path=/m&pin-source=|/bin/ask").contains("program"));
        assert!(e("pkcs11:token=%zz").contains("hex"));
        assert!(e("file:/x").contains("pkcs11:"));
        assert!(e("pkcs11:token=t;type=cert?module-path=/m&pin-value=1").contains("private"));
    }
}
