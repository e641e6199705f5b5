//! Signed download links: `/recordings/{id}/{file}?expires=<unix seconds>&sig=<hex>`, where `sig`
//! is HMAC-SHA256 with a server secret over the recording id, the file name and the expiry. A
//! link is handed only to someone allowed to see the recording and works for that one file
//! until it expires; changing any part of it breaks the signature.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a link was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    Expired,
    BadSignature,
}

fn mac(key: &[u8], recording: &str, file: &str, expires: i64) -> Option<HmacSha256> {
    // HMAC takes keys of any length (RFC 2104 §3): this never fails.
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    // Newline-separated: neither an id nor a file name can hold one, so the parts cannot be
    // shifted into each other.
    mac.update(format!("{recording}\n{file}\n{expires}").as_bytes());
    Some(mac)
}

/// The hex signature of a link.
pub fn sign(key: &[u8], recording: &str, file: &str, expires: i64) -> String {
    mac(key, recording, file, expires)
        .map(|m| hex::encode(m.finalize().into_bytes()))
        .unwrap_or_default()
}

/// Checks a link's signature (in constant time) and then its expiry against `now`.
pub fn verify(
    key: &[u8],
    recording: &str,
    file: &str,
    expires: i64,
    sig: &str,
    now: i64,
) -> Result<(), LinkError> {
    let given = hex::decode(sig).map_err(|_| LinkError::BadSignature)?;
    mac(key, recording, file, expires)
        .ok_or(LinkError::BadSignature)?
        .verify_slice(&given)
        .map_err(|_| LinkError::BadSignature)?;
    if now >= expires {
        return Err(LinkError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"a server secret for recording links";

    #[test]
    fn a_link_works_for_its_file_until_it_expires() {
        let sig = sign(KEY, "rec_1", "a.ogg", 1000);
        assert_eq!(verify(KEY, "rec_1", "a.ogg", 1000, &sig, 999), Ok(()));
        assert_eq!(
            verify(KEY, "rec_1", "a.ogg", 1000, &sig, 1000),
            Err(LinkError::Expired)
        );
        for (rec, file, exp) in [
            ("rec_2", "a.ogg", 1000),
            ("rec_1", "b.ogg", 1000),
            ("rec_1", "a.ogg", 5000),
        ] {
            assert_eq!(
                verify(KEY, rec, file, exp, &sig, 0),
                Err(LinkError::BadSignature),
                "{rec} {file} {exp}"
            );
        }
        assert_eq!(
            verify(b"another key", "rec_1", "a.ogg", 1000, &sig, 0),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            verify(KEY, "rec_1", "a.ogg", 1000, "zz", 0),
            Err(LinkError::BadSignature)
        );
    }
}
