//! Property tests: every message survives encode then decode, padded or not;
//! a frame cut short asks for more; decode never panics, and what it accepts
//! encodes to a frame that decodes to the same message.

use std::net::IpAddr;

use keyless::{CertificateDigest, ComplianceRegion, Decoded, Message, Opcode, Padding, Ski, Tag, decode};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![any::<[u8; 4]>().prop_map(IpAddr::from), any::<[u8; 16]>().prop_map(IpAddr::from)]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..300)
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,40}"
}

fn message() -> impl Strategy<Value = Message> {
    let core = (
        any::<u32>(),
        option::of(any::<u8>().prop_map(Opcode::from_u8)),
        option::of(vec(any::<u8>(), 0..2000)),
        option::of(any::<[u8; 32]>().prop_map(CertificateDigest)),
        option::of(text()),
        option::of(ip()),
        option::of(any::<[u8; 20]>().prop_map(Ski)),
    );
    let rest = (
        option::of(ip()),
        option::of(text()),
        option::of(text()),
        option::of(bytes()),
        option::of(bytes()),
        option::of(text()),
        option::of(any::<u8>().prop_map(ComplianceRegion::from_u8)),
    );
    (core, rest).prop_map(
        |(
            (id, opcode, payload, certificate_digest, sni, client_ip, ski),
            (server_ip, certificate_id, custom_function_name, extra, tracing_span, request_context, compliance_region),
        )| Message {
            id,
            opcode,
            payload,
            certificate_digest,
            sni,
            client_ip,
            ski,
            server_ip,
            certificate_id,
            custom_function_name,
            extra,
            tracing_span,
            request_context,
            compliance_region,
        },
    )
}

/// A frame that gets past the version check: 1.x, a body of items with known
/// and unknown tags whose lengths are sometimes wrong, and a body length that
/// is sometimes wrong.
fn plausible_frame() -> impl Strategy<Value = Vec<u8>> {
    let tag = prop_oneof![
        4 => proptest::sample::select(Tag::ALL.map(Tag::to_u8).to_vec()),
        1 => any::<u8>(),
    ];
    let item = (tag, vec(any::<u8>(), 0..40), prop_oneof![8 => Just(None), 1 => option::of(any::<u16>())]);
    (any::<u8>(), any::<u32>(), vec(item, 0..12), prop_oneof![8 => Just(None), 1 => option::of(any::<u16>())]).prop_map(
        |(minor, id, items, body_len)| {
            let mut body = Vec::new();
            for (tag, data, declared) in items {
                body.push(tag);
                body.extend(declared.unwrap_or(data.len() as u16).to_be_bytes());
                body.extend(data);
            }
            let mut frame = vec![0x01, minor];
            frame.extend(body_len.unwrap_or(body.len() as u16).to_be_bytes());
            frame.extend(id.to_be_bytes());
            frame.extend(body);
            frame
        },
    )
}

/// What every input must satisfy: no panic (the caller's), a consumed count
/// within the buffer, a need beyond it, and a message that round-trips.
fn check_decode(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode(bytes) {
        Ok(Decoded::Complete { message, consumed }) => {
            prop_assert!((8..=bytes.len()).contains(&consumed));
            for padding in [Padding::ToMinimum, Padding::Off] {
                let again = message.encode_with(padding).expect("a decoded message fits in a frame");
                prop_assert_eq!(
                    decode(&again),
                    Ok(Decoded::Complete { message: message.clone(), consumed: again.len() })
                );
            }
        }
        Ok(Decoded::Incomplete { needed }) => prop_assert!(needed > bytes.len()),
        Err(error) => prop_assert!(!error.to_string().is_empty()),
    }
    Ok(())
}

proptest! {
    #[test]
    fn padded_round_trip(message in message()) {
        let bytes = message.encode().unwrap();
        prop_assert!(bytes.len() >= 1024);
        prop_assert_eq!(decode(&bytes), Ok(Decoded::Complete { message, consumed: bytes.len() }));
    }

    #[test]
    fn unpadded_round_trip(message in message()) {
        let bytes = message.encode_with(Padding::Off).unwrap();
        prop_assert_eq!(decode(&bytes), Ok(Decoded::Complete { message, consumed: bytes.len() }));
    }

    #[test]
    fn a_cut_frame_asks_for_more(message in message(), cut in any::<prop::sample::Index>()) {
        let bytes = message.encode().unwrap();
        let cut = cut.index(bytes.len());
        let needed = if cut < 8 { 8 } else { bytes.len() };
        prop_assert_eq!(decode(&bytes[..cut]), Ok(Decoded::Incomplete { needed }));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn decode_takes_any_bytes(bytes in vec(any::<u8>(), 0..2048)) {
        check_decode(&bytes)?;
    }

    #[test]
    fn decode_takes_any_plausible_frame(frame in plausible_frame()) {
        check_decode(&frame)?;
    }
}
