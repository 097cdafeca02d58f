//! `keyless::decode` on arbitrary bytes, and what it accepts encoded and decoded
//! again: see `gatehouse_fuzz::check_keyless`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gatehouse_fuzz::check_keyless(data);
});
