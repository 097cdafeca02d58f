//! `gateway::Config::parse` on arbitrary text: see `gatehouse_fuzz::check_config`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        gatehouse_fuzz::check_config(text);
    }
});
