//! Test vectors assembled by hand from `shared/keyless-protocol.md` (cited as
//! "spec L<n>", its line numbers): each is encoded to the exact bytes and
//! decoded to the exact message. No byte here comes from gokeyless.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::{decode_whole, hex, with_zeros};
use keyless::{
    CertificateDigest, ComplianceRegion, ErrorCode, KeySelector, Message, Opcode, Padding, SignatureScheme, Ski,
};

/// `message` encodes without padding to exactly `bytes`, and `bytes` decodes to exactly `message`.
fn both_ways(message: &Message, bytes: &[u8]) {
    assert_eq!(message.encode_with(Padding::Off).unwrap(), bytes, "encode {message:?}");
    assert_eq!(&decode_whole(bytes), message, "decode");
}

/// The 20-byte SKI 00 01 .. 13.
fn ski_counting() -> Ski {
    Ski(std::array::from_fn(|i| i as u8))
}

#[test]
fn worked_frame_ping() {
    // Spec L98-99: "Ping, id 1, empty payload — 1024 bytes".
    let bytes = with_zeros(
        hex("01 00 03 F8 00 00 00 01 · 11 00 01 F1 · 20 03 F1"), // L99, then "+ 1009 zero bytes"
        1009,
    );
    assert_eq!(bytes.len(), 1024);
    let ping = Message::ping(1, Vec::new());
    assert_eq!(ping.encode().unwrap(), bytes);
    assert_eq!(decode_whole(&bytes), ping);
}

#[test]
fn worked_frame_key_not_found() {
    // Spec L100-101: "Key-not-found reply to id 0x2A".
    let bytes = with_zeros(hex("01 00 03 F8 00 00 00 2A · 11 00 01 FF · 12 00 01 02 · 20 03 ED"), 1005);
    assert_eq!(bytes.len(), 1024);
    let reply = Message::error(0x2A, ErrorCode::KeyNotFound);
    assert_eq!(reply.encode().unwrap(), bytes);
    assert_eq!(decode_whole(&bytes), reply);
    assert_eq!(decode_whole(&bytes).error_code(), Some(ErrorCode::KeyNotFound));
}

/// Every opcode of spec L63-74, as the one byte of a 0x11 item.
const OPCODES: &[(u8, Opcode)] = &[
    (0x01, Opcode::RsaDecrypt),       // L65
    (0x02, Opcode::RsaSignMd5Sha1),   // L66, MD5-SHA1
    (0x03, Opcode::RsaSignSha1),      // L66, SHA-1
    (0x04, Opcode::RsaSignSha224),    // L66, SHA-224
    (0x05, Opcode::RsaSignSha256),    // L66, SHA-256
    (0x06, Opcode::RsaSignSha384),    // L66, SHA-384
    (0x07, Opcode::RsaSignSha512),    // L66, SHA-512
    (0x12, Opcode::EcdsaSignMd5Sha1), // L67, "same hash order"
    (0x13, Opcode::EcdsaSignSha1),
    (0x14, Opcode::EcdsaSignSha224),
    (0x15, Opcode::EcdsaSignSha256),
    (0x16, Opcode::EcdsaSignSha384),
    (0x17, Opcode::EcdsaSignSha512),
    (0x18, Opcode::Ed25519Sign),      // L68
    (0x21, Opcode::Seal),             // L69
    (0x22, Opcode::Unseal),           // L69
    (0x24, Opcode::Custom),           // L70
    (0x35, Opcode::RsaPssSignSha256), // L71
    (0x36, Opcode::RsaPssSignSha384),
    (0x37, Opcode::RsaPssSignSha512),
    (0xF1, Opcode::Ping),     // L72
    (0xF0, Opcode::Response), // L74 success
    (0xF2, Opcode::Pong),     // L74
    (0xFF, Opcode::Error),    // L74
];

#[test]
fn every_opcode_alone() {
    for &(byte, opcode) in OPCODES {
        // L25-28 header: 1.0, body 4 bytes, id 7 · L51 opcode item, 1 byte.
        let mut bytes = hex("01 00 00 04 00 00 00 07 · 11 00 01");
        bytes.push(byte);
        both_ways(&Message { id: 7, opcode: Some(opcode), ..Message::default() }, &bytes);
        assert_eq!(Opcode::from_u8(byte), opcode);
    }
    // An opcode the spec does not define still decodes (the server answers 0x05, L77).
    both_ways(
        &Message { id: 7, opcode: Some(Opcode::Unknown(0x99)), ..Message::default() },
        &hex("01 00 00 04 00 00 00 07 · 11 00 01 99"),
    );
}

#[test]
fn rsa_decrypt_by_ski() {
    let message = Message::request(0x0102_0304, Opcode::RsaDecrypt, KeySelector::Ski(ski_counting()), hex("C0FFEE"));
    let bytes = hex("01 00 00 21 01 02 03 04 \
         04 00 14 00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F 10 11 12 13 \
         11 00 01 01 \
         12 00 03 C0 FF EE");
    // L30 items in tag order: SKI (L48, 20 bytes), opcode (L51, 0x01 = L65), payload (L52).
    // Body: 23 + 4 + 6 = 33 = 0x21.
    both_ways(&message, &bytes);
}

#[test]
fn rsa_pkcs1_sign_sha256_by_ski() {
    let message =
        Message::request(0x0102_0304, Opcode::RsaSignSha256, KeySelector::Ski(ski_counting()), vec![0xAA; 32]);
    let mut bytes = hex("01 00 00 3E 01 02 03 04 \
         04 00 14 00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F 10 11 12 13 \
         11 00 01 05 \
         12 00 20");
    // L66: 0x05 is SHA-256; the payload is the 32-byte digest. Body: 23 + 4 + 35 = 62 = 0x3E.
    bytes.extend([0xAA; 32]);
    both_ways(&message, &bytes);
    assert_eq!(message.check_request(), Ok(Opcode::RsaSignSha256));
}

#[test]
fn ecdsa_sign_sha384_by_certificate_digest() {
    let digest = CertificateDigest([0x5C; 32]);
    let message = Message::request(9, Opcode::EcdsaSignSha384, KeySelector::CertificateDigest(digest), vec![0x48; 48]);
    // L45: item 0x01, 32 bytes · L67: 0x16 is ECDSA with SHA-384 · payload 48 bytes.
    // Body: 35 + 4 + 51 = 90 = 0x5A.
    let mut bytes = hex("01 00 00 5A 00 00 00 09 · 01 00 20");
    bytes.extend([0x5C; 32]);
    bytes.extend(hex("11 00 01 16 · 12 00 30"));
    bytes.extend([0x48; 48]);
    both_ways(&message, &bytes);
    assert_eq!(decode_whole(&bytes).key_selector(), Some(KeySelector::CertificateDigest(digest)));
}

#[test]
fn ed25519_signs_the_whole_message() {
    // L68: the payload is the message itself, any length. Body: 23 + 4 + 5 = 32 = 0x20.
    let message = Message::request(0xFFFF_FFFF, Opcode::Ed25519Sign, KeySelector::Ski(Ski([0x01; 20])), b"hi".to_vec());
    let mut bytes = hex("01 00 00 20 FF FF FF FF · 04 00 14");
    bytes.extend([0x01; 20]);
    bytes.extend(hex("11 00 01 18 · 12 00 02 68 69"));
    both_ways(&message, &bytes);
}

#[test]
fn rsa_pss_sign_sha512() {
    // L71: 0x37 is RSA-PSS with SHA-512; a 64-byte digest. Body: 23 + 4 + 67 = 94 = 0x5E.
    let message = Message::request(2, Opcode::RsaPssSignSha512, KeySelector::Ski(Ski([0xEE; 20])), vec![0x64; 64]);
    let mut bytes = hex("01 00 00 5E 00 00 00 02 · 04 00 14");
    bytes.extend([0xEE; 20]);
    bytes.extend(hex("11 00 01 37 · 12 00 40"));
    bytes.extend([0x64; 64]);
    both_ways(&message, &bytes);
}

#[test]
fn seal_unseal_and_custom() {
    // L69: seal 0x21 / unseal 0x22, blob in and out.
    both_ways(
        &Message { id: 3, opcode: Some(Opcode::Seal), payload: Some(b"blob".to_vec()), ..Message::default() },
        &hex("01 00 00 0B 00 00 00 03 · 11 00 01 21 · 12 00 04 62 6C 6F 62"),
    );
    both_ways(
        &Message { id: 4, opcode: Some(Opcode::Unseal), payload: Some(b"blob".to_vec()), ..Message::default() },
        &hex("01 00 00 0B 00 00 00 04 · 11 00 01 22 · 12 00 04 62 6C 6F 62"),
    );
    // L70 + L53: custom 0x24 with its function name in item 0x13 ("f1").
    both_ways(
        &Message {
            id: 5,
            opcode: Some(Opcode::Custom),
            payload: Some(vec![]),
            custom_function_name: Some("f1".to_owned()),
            ..Message::default()
        },
        &hex("01 00 00 0C 00 00 00 05 · 11 00 01 24 · 12 00 00 · 13 00 02 66 31"),
    );
}

#[test]
fn ping_pong_and_success() {
    // L72: ping with a payload; L74: the pong echoes it.
    both_ways(&Message::ping(6, vec![0xAB, 0xCD]), &hex("01 00 00 09 00 00 00 06 · 11 00 01 F1 · 12 00 02 AB CD"));
    both_ways(&Message::pong(6, vec![0xAB, 0xCD]), &hex("01 00 00 09 00 00 00 06 · 11 00 01 F2 · 12 00 02 AB CD"));
    // L74: "payload echoed; omitted when empty".
    both_ways(&Message::pong(6, vec![]), &hex("01 00 00 04 00 00 00 06 · 11 00 01 F2"));
    // L74: 0xF0 success, payload = result.
    both_ways(&Message::success(6, vec![0x30, 0x00]), &hex("01 00 00 09 00 00 00 06 · 11 00 01 F0 · 12 00 02 30 00"));
}

/// Every error code of spec L81-84, with its log name.
const ERROR_CODES: &[(u8, ErrorCode, &str)] = &[
    (0x00, ErrorCode::None, "none"),
    (0x01, ErrorCode::CryptoFailure, "crypto_failure"),
    (0x02, ErrorCode::KeyNotFound, "key_not_found"),
    (0x03, ErrorCode::Read, "read"),
    (0x04, ErrorCode::VersionMismatch, "version_mismatch"),
    (0x05, ErrorCode::BadOpcode, "bad_opcode"),
    (0x06, ErrorCode::UnexpectedOpcode, "unexpected_opcode"),
    (0x07, ErrorCode::Format, "format"),
    (0x08, ErrorCode::Internal, "internal"),
    (0x09, ErrorCode::CertificateNotFound, "certificate_not_found"),
    (0x0A, ErrorCode::Expired, "expired"),
    (0x0B, ErrorCode::RemoteConfiguration, "remote_configuration"),
];

#[test]
fn every_error_code() {
    assert_eq!(ERROR_CODES.len(), ErrorCode::ALL.len());
    for &(byte, code, name) in ERROR_CODES {
        // L74: 0xFF error, payload = 1 error byte.
        let mut bytes = hex("01 00 00 08 00 00 01 00 · 11 00 01 FF · 12 00 01");
        bytes.push(byte);
        let reply = Message::error(0x100, code);
        both_ways(&reply, &bytes);
        assert_eq!(decode_whole(&bytes).error_code(), Some(code));
        assert_eq!(code.name(), name);
        assert!(code.to_string().starts_with(&format!("keyless error 0x{byte:02X}: ")));
    }
    let unknown = hex("01 00 00 08 00 00 01 00 · 11 00 01 FF · 12 00 01 0C");
    assert_eq!(decode_whole(&unknown).error_code(), Some(ErrorCode::Unknown(0x0C)));
}

#[test]
fn every_item_at_once() {
    let message = Message {
        id: 0xDEAD_BEEF,
        opcode: Some(Opcode::EcdsaSignSha256),
        payload: Some(vec![0x33; 32]),
        certificate_digest: Some(CertificateDigest([0x11; 32])),
        sni: Some("a.example".to_owned()),
        client_ip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
        ski: Some(Ski([0x22; 20])),
        server_ip: Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))),
        certificate_id: Some("c1".to_owned()),
        custom_function_name: Some("f".to_owned()),
        extra: Some(vec![0x01, 0x02]),
        tracing_span: Some(vec![0x03]),
        request_context: Some(r#"{"request_id":"r1"}"#.to_owned()),
        compliance_region: Some(ComplianceRegion::FedRampHigh),
    };
    // Spec L45-57, one item per tag, in tag order. Body = 35+12+7+23+19+5+4+35+4+5+4+22+4 = 179 = 0xB3.
    let mut bytes = hex("01 00 00 B3 DE AD BE EF");
    bytes.extend(hex("01 00 20")); // L45 certificate digest
    bytes.extend([0x11; 32]);
    bytes.extend(hex("02 00 09 61 2E 65 78 61 6D 70 6C 65")); // L46 SNI "a.example"
    bytes.extend(hex("03 00 04 C0 00 02 01")); // L47 client IP 192.0.2.1
    bytes.extend(hex("04 00 14")); // L48 SKI
    bytes.extend([0x22; 20]);
    bytes.extend(hex("05 00 10 20 01 0D B8 00 00 00 00 00 00 00 00 00 00 00 01")); // L49 server IP 2001:db8::1
    bytes.extend(hex("06 00 02 63 31")); // L50 certificate ID "c1"
    bytes.extend(hex("11 00 01 15")); // L51 opcode, L67 ECDSA SHA-256
    bytes.extend(hex("12 00 20")); // L52 payload
    bytes.extend([0x33; 32]);
    bytes.extend(hex("13 00 01 66")); // L53 custom function name "f"
    bytes.extend(hex("14 00 02 01 02")); // L54 extra
    bytes.extend(hex("15 00 01 03")); // L55 tracing span
    bytes.extend(hex("16 00 13")); // L56 request context, 19 bytes of JSON
    bytes.extend(br#"{"request_id":"r1"}"#);
    bytes.extend(hex("17 00 01 01")); // L57 compliance region FedRAMP High
    both_ways(&message, &bytes);
}

#[test]
fn items_in_any_order() {
    // L30-31: "any order". The payload, opcode and SKI of rsa_decrypt_by_ski, reversed.
    let bytes = hex("01 00 00 21 01 02 03 04 \
         12 00 03 C0 FF EE \
         11 00 01 01 \
         04 00 14 00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F 10 11 12 13");
    assert_eq!(
        decode_whole(&bytes),
        Message::request(0x0102_0304, Opcode::RsaDecrypt, KeySelector::Ski(ski_counting()), hex("C0FFEE"))
    );
}

#[test]
fn signature_schemes_map_to_the_spec_opcodes() {
    // RFC 8446 §4.2.3 code points to the opcodes of spec L66-71.
    let table = [
        (0x0201, Some(0x03)),
        (0x0203, Some(0x13)),
        (0x0401, Some(0x05)),
        (0x0403, Some(0x15)),
        (0x0501, Some(0x06)),
        (0x0503, Some(0x16)),
        (0x0601, Some(0x07)),
        (0x0603, Some(0x17)),
        (0x0804, Some(0x35)),
        (0x0805, Some(0x36)),
        (0x0806, Some(0x37)),
        (0x0807, Some(0x18)),
        (0x0808, None),
        (0x0809, Some(0x35)),
        (0x080A, Some(0x36)),
        (0x080B, Some(0x37)),
    ];
    for (code_point, opcode) in table {
        let scheme = SignatureScheme::from_u16(code_point).unwrap();
        assert_eq!(scheme.opcode().map(Opcode::to_u8), opcode, "{scheme:?}");
    }
}
