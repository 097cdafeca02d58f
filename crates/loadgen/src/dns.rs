//! A stub DNS server (UDP) for ACME servers that cannot resolve `*.localhost`
//! themselves (pebble built with Go 1.19 asks a DNS server for it): every A
//! question gets 127.0.0.1, every other question an empty NOERROR answer.

use tokio::net::UdpSocket;

/// Header (12 bytes) + question; anything shorter or stranger is dropped.
fn answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // The question's name: labels up to the root label.
    let mut i = 12;
    loop {
        let len = usize::from(*query.get(i)?);
        if len == 0 {
            i += 1;
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        i += 1 + len;
    }
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    let question_end = i + 4;
    if query.len() < question_end {
        return None;
    }
    let is_a = qtype == 1;
    let mut out = Vec::with_capacity(question_end + 16);
    out.extend_from_slice(&query[..2]); // id
    out.push(0x84 | (query[2] & 0x01)); // QR, AA, RD copied
    out.push(0x80); // RA, NOERROR
    out.extend_from_slice(&[0, 1, 0, u8::from(is_a), 0, 0, 0, 0]);
    out.extend_from_slice(&query[12..question_end]);
    if is_a {
        // Name: pointer to the question's; A IN, TTL 60, 127.0.0.1.
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
    }
    Some(out)
}

/// Answers on `socket` until the runtime stops.
pub async fn serve(socket: UdpSocket) {
    let mut buf = vec![0u8; 1500];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                eprintln!("dns stub: {e}");
                continue;
            }
        };
        if let Some(reply) = answer(&buf[..n]) {
            let _ = socket.send_to(&reply, peer).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::answer;

    #[test]
    fn a_question_gets_loopback() {
        // id 0x1234, RD, one question: o1.localhost A IN
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(b"\x02o1\x09localhost\x00\x00\x01\x00\x01");
        let r = answer(&q).expect("an answer");
        assert_eq!(&r[..2], &[0x12, 0x34]);
        assert_eq!(&r[6..8], &[0, 1]);
        assert_eq!(&r[r.len() - 4..], &[127, 0, 0, 1]);
        // AAAA: no answer records
        let n = q.len();
        q[n - 3] = 28;
        let r = answer(&q).expect("an answer");
        assert_eq!(&r[6..8], &[0, 0]);
    }
}
