//! `gateway::target::canonical_path` and `under_prefix`: see `gatehouse_fuzz::check_path`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Paths arrive as bytes; only UTF-8 ones reach the canonicalizer as &str.
    let text = String::from_utf8_lossy(data);
    gatehouse_fuzz::check_path(&text);
});
