//! The padding rule of spec L37-40: "if 8 + B < 1024 (B = bytes of the other
//! items), add an item of length max(0, 1024 − (8 + B + 3))", at and around
//! the boundary, and receivers not requiring it.

mod common;

use common::decode_whole;
use keyless::{Message, Opcode, Padding};

/// A success response whose items other than padding take `b` bytes:
/// opcode (3 + 1) and payload (3 + n), so n = b - 7.
fn with_other_items(b: usize) -> Message {
    Message::success(0x0A0B_0C0D, vec![0x5A; b - 7])
}

/// The frame's length, and the padding item's data length (`None`: no padding item).
fn padded(b: usize) -> (usize, Option<usize>) {
    let message = with_other_items(b);
    let unpadded = message.encode_with(Padding::Off).unwrap();
    assert_eq!(unpadded.len(), 8 + b);
    let bytes = message.encode().unwrap();
    // The same items, in the same place: only the length field differs.
    assert_eq!(bytes[..2], unpadded[..2]);
    assert_eq!(bytes[4..8 + b], unpadded[4..]);
    // The body length in the header counts the padding.
    assert_eq!(usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), bytes.len() - 8);
    assert_eq!(decode_whole(&bytes), message, "padding is not part of the message");
    let padding = (bytes.len() > 8 + b).then(|| {
        let item = &bytes[8 + b..];
        assert_eq!(item[0], 0x20, "the padding item comes after the others");
        let length = usize::from(u16::from_be_bytes([item[1], item[2]]));
        assert_eq!(item.len(), 3 + length);
        assert!(item[3..].iter().all(|&z| z == 0), "padding is zero bytes");
        length
    });
    (bytes.len(), padding)
}

#[test]
fn around_the_boundary() {
    // 8 + B = 1020: an item of 1024 − 1023 = 1 zero byte, frame 1024.
    assert_eq!(padded(1012), (1024, Some(1)));
    // 8 + B = 1021: an item of max(0, 1024 − 1024) = 0 bytes, frame 1024.
    assert_eq!(padded(1013), (1024, Some(0)));
    // 8 + B = 1022: still < 1024, so an item of max(0, −1) = 0 bytes: frame 1025.
    assert_eq!(padded(1014), (1025, Some(0)));
    // 8 + B = 1023: an empty item again: frame 1026.
    assert_eq!(padded(1015), (1026, Some(0)));
    // 8 + B = 1024: not < 1024, no padding item.
    assert_eq!(padded(1016), (1024, None));
    // 8 + B = 1025: no padding item.
    assert_eq!(padded(1017), (1025, None));
}

#[test]
fn small_messages_reach_1024_exactly() {
    for b in [7, 8, 100, 500, 1000] {
        assert_eq!(padded(b), (1024, Some(1024 - (8 + b + 3))));
    }
    // No items at all: B = 0, an item of 1013 zero bytes.
    let empty = Message { id: 1, ..Message::default() };
    let bytes = empty.encode().unwrap();
    assert_eq!(bytes.len(), 1024);
    assert_eq!(&bytes[..11], &[0x01, 0x00, 0x03, 0xF8, 0, 0, 0, 1, 0x20, 0x03, 0xF5]);
    assert_eq!(decode_whole(&bytes), empty);
}

#[test]
fn receivers_do_not_require_padding() {
    // L40. The unpadded frame decodes to the same message as the padded one.
    for b in [7, 1013, 1014, 1017] {
        let message = with_other_items(b);
        assert_eq!(decode_whole(&message.encode_with(Padding::Off).unwrap()), message);
    }
}

#[test]
fn padding_contents_and_position_are_ignored() {
    // Non-zero padding, before the opcode: still the same message.
    let bytes = [0x01, 0x00, 0x00, 0x09, 0, 0, 0, 5, 0x20, 0x00, 0x02, 0xAB, 0xCD, 0x11, 0x00, 0x01, 0xF1];
    assert_eq!(decode_whole(&bytes), Message { id: 5, opcode: Some(Opcode::Ping), ..Message::default() });
}
