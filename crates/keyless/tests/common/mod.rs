//! Helpers shared by the test files: hand-written hex, and decoding a buffer
//! that must hold exactly one frame.

#![allow(dead_code)]

use keyless::{Decoded, Message, decode};

/// The bytes of `text`, pairs of hex digits; spaces, newlines and `·` (the
/// spec's item separator) are ignored so a vector can be laid out like the spec.
pub fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    let leftover: String = text.chars().filter(|c| !c.is_ascii_hexdigit() && !c.is_whitespace() && *c != '·').collect();
    assert!(leftover.is_empty(), "not hex: {leftover:?}");
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex digit"))
        .collect()
}

/// The message in `bytes`, which must be exactly one whole frame.
pub fn decode_whole(bytes: &[u8]) -> Message {
    match decode(bytes) {
        Ok(Decoded::Complete { message, consumed }) => {
            assert_eq!(consumed, bytes.len(), "the frame is the whole buffer");
            message
        }
        other => panic!("expected a whole frame, got {other:?}"),
    }
}

/// `bytes` followed by `n` zero bytes (the data of a padding item).
pub fn with_zeros(mut bytes: Vec<u8>, n: usize) -> Vec<u8> {
    bytes.resize(bytes.len() + n, 0);
    bytes
}
