//! Frames that are malformed (spec L31-33), items treated as absent (L34-35),
//! unknown tags skipped (L31), frames split across reads, and messages too
//! long to encode. Vectors by hand; "L<n>" is a line of the spec.

mod common;

use common::{decode_whole, hex};
use keyless::{Decoded, EncodeError, Malformed, Message, Opcode, Padding, Tag, decode};

fn malformed(bytes: &[u8]) -> Malformed {
    match decode(bytes) {
        Err(error) => {
            assert!(!error.to_string().contains('\n'), "one line: {error}");
            error
        }
        Ok(other) => panic!("expected malformed, got {other:?}"),
    }
}

#[test]
fn bad_major_version() {
    // L25: the major version is 0x01.
    let bytes = hex("02 00 00 04 00 00 00 09 · 11 00 01 F1");
    assert_eq!(malformed(&bytes), Malformed::Version { major: 2, minor: 0, id: 9 });
    assert_eq!(malformed(&hex("00 00 00 00 00 00 00 01")), Malformed::Version { major: 0, minor: 0, id: 1 });
}

#[test]
fn other_minor_version_is_read() {
    // L26 names minor 0x00; another minor is read as 1.x (see the crate docs).
    let bytes = hex("01 07 00 04 00 00 00 09 · 11 00 01 F1");
    assert_eq!(decode_whole(&bytes), Message::ping(9, vec![]));
}

#[test]
fn item_running_past_the_body() {
    // L32: the payload item says 5 bytes, the body has 3 after its header.
    let bytes = hex("01 00 00 0A 00 00 00 01 · 11 00 01 F1 · 12 00 05 AA BB CC");
    assert_eq!(malformed(&bytes), Malformed::ItemPastBody { tag: 0x12, offset: 4, length: 5, remaining: 3 });
    // The frame's bytes beyond the body do not count: the body length (L27) is 4.
    let bytes = hex("01 00 00 04 00 00 00 01 · 12 00 05 AA · BB CC DD EE");
    assert_eq!(malformed(&bytes), Malformed::ItemPastBody { tag: 0x12, offset: 0, length: 5, remaining: 1 });
    // An unknown tag is no exception: it too must fit.
    let bytes = hex("01 00 00 04 00 00 00 01 · 7E 00 02 AA");
    assert_eq!(malformed(&bytes), Malformed::ItemPastBody { tag: 0x7E, offset: 0, length: 2, remaining: 1 });
}

#[test]
fn body_ending_inside_an_item_header() {
    // L30: an item header is tag (1) and length (2); the body stops after 1 or 2 of them.
    let bytes = hex("01 00 00 05 00 00 00 01 · 11 00 01 F1 · 12");
    assert_eq!(malformed(&bytes), Malformed::ItemHeaderPastBody { tag: 0x12, offset: 4, remaining: 1 });
    let bytes = hex("01 00 00 06 00 00 00 01 · 11 00 01 F1 · 12 00");
    assert_eq!(malformed(&bytes), Malformed::ItemHeaderPastBody { tag: 0x12, offset: 4, remaining: 2 });
}

#[test]
fn known_tag_twice() {
    // L31: "a known tag twice ... is malformed".
    let bytes = hex("01 00 00 08 00 00 00 01 · 11 00 01 F1 · 11 00 01 F1");
    assert_eq!(malformed(&bytes), Malformed::DuplicateTag { tag: Tag::Opcode, offset: 4 });
    // Even when the first one was of a length that makes it absent (L34).
    let mut bytes = hex("01 00 00 1C 00 00 00 01 · 04 00 02 AA BB · 04 00 14");
    bytes.extend([0; 20]);
    assert_eq!(malformed(&bytes), Malformed::DuplicateTag { tag: Tag::Ski, offset: 5 });
    // Padding (0x20, L58) is a known tag too.
    let bytes = hex("01 00 00 06 00 00 00 01 · 20 00 00 · 20 00 00");
    assert_eq!(malformed(&bytes), Malformed::DuplicateTag { tag: Tag::Padding, offset: 3 });
    // An unknown tag twice is skipped twice.
    let bytes = hex("01 00 00 0A 00 00 00 01 · 7F 00 00 · 11 00 01 F1 · 7F 00 00");
    assert_eq!(decode_whole(&bytes), Message::ping(1, vec![]));
}

#[test]
fn opcode_not_one_byte() {
    // L32-33: "an opcode item not exactly 1 byte".
    assert_eq!(malformed(&hex("01 00 00 03 00 00 00 01 · 11 00 00")), Malformed::OpcodeLength { length: 0 });
    assert_eq!(malformed(&hex("01 00 00 05 00 00 00 01 · 11 00 02 F1 F1")), Malformed::OpcodeLength { length: 2 });
}

#[test]
fn unknown_tags_are_skipped() {
    // L31: tags not in the table of L43-58 (0x00, 0x07, 0x10, 0x18, 0x21, 0xFF), with data, around a ping.
    // Body: 3 + 5 + 4 + 4 + 3 + 6 + 3 = 28 = 0x1C.
    let bytes = hex("01 00 00 1C 00 00 00 03 \
         00 00 00 · 07 00 02 01 02 · 10 00 01 FF · 11 00 01 F1 · 18 00 00 · 21 00 03 AA BB CC · FF 00 00");
    assert_eq!(decode_whole(&bytes), Message::ping(3, vec![]));
}

#[test]
fn items_that_do_not_fit_their_type_are_absent() {
    // L34-35: an SKI that is not 20 bytes, a digest that is not 32, is absent.
    let mut bytes = hex("01 00 00 3E 00 00 00 01 · 04 00 13");
    bytes.extend([0xAA; 19]);
    bytes.extend(hex("01 00 21"));
    bytes.extend([0xBB; 33]);
    bytes.extend(hex("11 00 01 05"));
    let message = decode_whole(&bytes);
    assert_eq!((message.ski, message.certificate_digest, message.opcode), (None, None, Some(Opcode::RsaSignSha256)));
    // L33-34 "IP items are 4 or 16 bytes"; this crate reads another length as absent,
    // and the same for a string that is not UTF-8 and a compliance region not 1 byte.
    let bytes = hex(
        "01 00 00 19 00 00 00 01 · 03 00 05 01 02 03 04 05 · 05 00 00 · 02 00 02 C3 28 · 06 00 01 FF · 17 00 02 01 01",
    );
    let message = decode_whole(&bytes);
    assert_eq!(message, Message { id: 1, ..Message::default() });
}

#[test]
fn split_across_reads() {
    let frame = Message::ping(0x77, vec![1, 2, 3]).encode().unwrap();
    assert_eq!(frame.len(), 1024);
    // Less than a header: 8 bytes are needed.
    for cut in 0..8 {
        assert_eq!(decode(&frame[..cut]), Ok(Decoded::Incomplete { needed: 8 }));
    }
    // A header and part of the body: the whole frame is needed.
    for cut in [8, 9, 500, 1023] {
        assert_eq!(decode(&frame[..cut]), Ok(Decoded::Incomplete { needed: 1024 }));
    }
    // The first read ends mid-body; the second brings the rest and the start of the next frame.
    let next = Message::pong(0x78, vec![]).encode_with(Padding::Off).unwrap();
    let mut buffer = frame[..700].to_vec();
    assert!(matches!(decode(&buffer), Ok(Decoded::Incomplete { needed: 1024 })));
    buffer.extend_from_slice(&frame[700..]);
    buffer.extend_from_slice(&next[..3]);
    let Ok(Decoded::Complete { message, consumed }) = decode(&buffer) else { panic!("one frame is whole") };
    assert_eq!((message, consumed), (Message::ping(0x77, vec![1, 2, 3]), 1024));
    buffer.drain(..consumed);
    assert_eq!(decode(&buffer), Ok(Decoded::Incomplete { needed: 8 }));
    buffer.extend_from_slice(&next[3..]);
    assert_eq!(decode(&buffer), Ok(Decoded::Complete { message: Message::pong(0x78, vec![]), consumed: next.len() }));
}

#[test]
fn too_long_to_encode() {
    // L27 and L30: the body and each item have 16-bit lengths.
    let long_item = Message::success(1, vec![0; 65_536]);
    assert_eq!(long_item.encode(), Err(EncodeError::ItemTooLong { tag: Tag::Payload, length: 65_536 }));
    // The largest payload fits in an item, but not with the opcode beside it.
    let long_body = Message::success(1, vec![0; 65_535]);
    assert_eq!(long_body.encode(), Err(EncodeError::BodyTooLong { length: 4 + 3 + 65_535 }));
    // The largest body that fits: payload 65535 − 3 bytes, nothing else.
    let largest = Message { id: 1, payload: Some(vec![7; 65_532]), ..Message::default() };
    let bytes = largest.encode().unwrap();
    assert_eq!(bytes.len(), 8 + 65_535);
    assert_eq!(decode_whole(&bytes), largest);
    // A failed encode leaves the buffer as it was.
    let mut out = vec![0xEE];
    assert!(long_body.encode_into(Padding::ToMinimum, &mut out).is_err());
    assert_eq!(out, [0xEE]);
}
