//! Text forms the tests compare: base64 (RFC 9440 `Client-Cert`), serial numbers in
//! their several spellings, and JSON.

use super::Value;

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

/// Canonical serial for comparisons across forms: uppercase, no colons, no `0x`, no leading zeros.
pub fn norm_serial(s: &str) -> String {
    let t: String = s.chars().filter(|c| *c != ':' && !c.is_whitespace()).collect::<String>().to_uppercase();
    let t = t.trim_start_matches("0X").trim_start_matches('0');
    if t.is_empty() { "0".into() } else { t.to_string() }
}

/// Lowercase colon form: "5a:3f:..." (as `openssl x509 -text` prints it).
pub fn colon_lower(hex: &str) -> String {
    let h = hex.to_lowercase();
    let h = if h.len() % 2 == 1 { format!("0{h}") } else { h };
    h.as_bytes().chunks(2).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(":")
}

#[track_caller]
pub fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}
