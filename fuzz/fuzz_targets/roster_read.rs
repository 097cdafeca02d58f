//! `pki::read_roster` (the `ca batch` CSV) on arbitrary bytes: see `gatehouse_fuzz::check_roster`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gatehouse_fuzz::check_roster(data);
});
