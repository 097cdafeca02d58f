//! `pki::CheckedCsr::parse` and the CA's checks on arbitrary bytes: see `gatehouse_fuzz::check_csr`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    gatehouse_fuzz::check_csr(data);
});
