//! Classifies datagrams arriving on the shared media port (RFC 7983) and pulls the local ICE ufrag
//! out of STUN binding requests, so a first packet from an unknown address finds its peer connection.

/// What a datagram on the media port carries, by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatagramKind {
    Stun,
    Dtls,
    Rtp,
    Other,
}

pub fn classify(data: &[u8]) -> DatagramKind {
    match data.first() {
        Some(0..=3) => DatagramKind::Stun,
        Some(20..=63) => DatagramKind::Dtls,
        Some(128..=191) => DatagramKind::Rtp,
        _ => DatagramKind::Other,
    }
}

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;

/// The local (server-side) ufrag of a STUN message's USERNAME attribute, `"local:remote"`.
/// Returns `None` for anything that is not a well-formed STUN message with a USERNAME.
pub fn stun_local_ufrag(data: &[u8]) -> Option<&str> {
    if data.len() < 20 || data.get(4..8)? != MAGIC_COOKIE {
        return None;
    }
    let body_len = u16::from_be_bytes([data[2], data[3]]) as usize;
    let body = data.get(20..20 + body_len)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[at], body[at + 1]]);
        let len = u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
        let value = body.get(at + 4..at + 4 + len)?;
        if typ == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        // Attributes are padded to a multiple of four bytes.
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attr = Vec::new();
        attr.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attr.extend_from_slice(username.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        msg.extend_from_slice(&MAGIC_COOKIE);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&attr);
        msg
    }

    #[test]
    fn finds_local_ufrag() {
        let msg = binding_request("srvUfrag:cli1");
        assert_eq!(classify(&msg), DatagramKind::Stun);
        assert_eq!(stun_local_ufrag(&msg), Some("srvUfrag"));
    }

    #[test]
    fn rejects_truncated_and_garbage() {
        let msg = binding_request("abcde:f");
        for cut in 0..msg.len() {
            // Any prefix either parses to the right ufrag or to nothing; it never panics.
            let got = stun_local_ufrag(&msg[..cut]);
            assert!(got.is_none() || got == Some("abcde"));
        }
        assert_eq!(stun_local_ufrag(&[0u8; 40]), None);
        assert_eq!(classify(&[200]), DatagramKind::Other);
        assert_eq!(classify(&[]), DatagramKind::Other);
        assert_eq!(classify(&[22, 254, 253]), DatagramKind::Dtls);
        assert_eq!(classify(&[0x80, 96]), DatagramKind::Rtp);
    }
}
