//! `gateway::identity::IdentityHeaders` for each format, and `is_spoofable`:
//! see `gatehouse_fuzz::check_identity`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: gatehouse_fuzz::IdentityInput| {
    gatehouse_fuzz::check_identity(&input);
});
