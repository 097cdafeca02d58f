//! `acme::jws::parse`, `Request::verify`, `Jwk::from_json` and the external account
//! binding check on arbitrary bytes: see `gatehouse_fuzz::check_jws`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gatehouse_fuzz::check_jws(data);
});
