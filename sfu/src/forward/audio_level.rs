//! The RFC 6464 client-to-mixer audio level header extension.
//!
//! The `rtc` crate already splits the one-byte and two-byte header extension forms; this parses
//! the extension's payload: one byte, `V` (voice activity, as the sender's VAD judged it) and a
//! 7-bit level in -dBov (0 = loudest, 127 = silence).

/// One audio level sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioLevel {
    /// The sender's voice activity flag.
    pub voice: bool,
    /// Level in -dBov: 0 is the loudest, 127 silence.
    pub level: u8,
}

/// Parses the extension payload. The two-byte form may pad it, so only the first byte is read;
/// an empty payload is `None`.
pub fn parse(ext_payload: &[u8]) -> Option<AudioLevel> {
    let b = *ext_payload.first()?;
    Some(AudioLevel {
        voice: b & 0x80 != 0,
        level: b & 0x7F,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        type Case<'a> = (&'a [u8], Option<(bool, u8)>);
        let cases: &[Case] = &[
            (&[], None),
            (&[0x00], Some((false, 0))),
            (&[0x7F], Some((false, 127))),
            (&[0x80], Some((true, 0))),
            (&[0x9E], Some((true, 30))),
            (&[0x9E, 0x00, 0x00], Some((true, 30))),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                parse(bytes),
                want.map(|(voice, level)| AudioLevel { voice, level }),
                "{bytes:02x?}"
            );
        }
    }
}
