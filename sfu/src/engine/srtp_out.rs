//! Forwarded RTP leaves through the SFU's own SRTP context instead of rtc's write pipeline.
//!
//! Why: a packet written to an `RTCPeerConnection` is moved by value through every handler of
//! the connection (endpoint, interceptors, SRTP, SCTP, DTLS, ICE…), each with its own queue and
//! statistics maps. On the live server that walk was 45 % of all CPU during a webinar, for a
//! packet that needs three things: its rewritten header marshalled, SRTP with the connection's
//! outbound key, and the address of the selected ICE pair (docs/PERFORMANCE.md).
//!
//! rtc exposes neither the SRTP key nor a raw send path, but it takes its crypto provider from
//! the application and derives the SRTP session keys through it: RFC 3711 §4.3's key derivation
//! is AES in counter mode keyed by the master key over the master salt XOR a label, done with
//! `RTCCrypto::block_encrypt`. [`KeyTap`] wraps the built-in provider, passes every call
//! through unchanged and notes the inputs of those block encryptions; [`KeyTap::outbound_keys`]
//! recovers the outbound master key and salt from them, for the two profiles the SFU offers
//! (AES-128-GCM, RFC 7714, and AES-128-CM with HMAC-SHA1-80, RFC 3711, which is what Chromium
//! negotiates), and only when the recorded derivations have exactly the shape rtc-srtp gives
//! them: the encryption key (label 0), then the SRTCP encryption key (label 3), over the same
//! salt. Anything else (another profile, a future rtc deriving differently) leaves the
//! connection on rtc's path, which stays correct, only slower.
//!
//! Sharing the key with rtc is safe because the two contexts never protect the same thing: once
//! this context exists every RTP packet of the connection is protected here, and rtc's outbound
//! context is left with SRTCP (the sender reports), which has its own session keys and index.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use rtc::crypto::{
    ActiveKeyExchange, AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CbcAlgorithm, CbcCipher,
    CryptoAlgorithm, CryptoError, HashAlgorithm, HmacAlgorithm, KeyExchangeAlgorithm, Mac,
    PublicKey, RTCCrypto, RTCCryptoProvider, RTCRandom, SignatureScheme, SigningKey, StreamCipher,
    StreamCipherAlgorithm,
};
use rtc::rtp::packet::Packet;
use rtc::shared::marshal::{Marshal, MarshalSize};
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;

/// Key derivations a connection performs: two SRTP contexts of at most eight each (AES-CM
/// derives six keys, two of them over two blocks). Recording stops there, so nothing grows.
const MAX_NOTED: usize = 16;
/// RFC 3711 key-derivation labels rtc-srtp derives first, in its order, for both profiles.
const LABEL_SRTP_ENCRYPTION: u8 = 0x00;
const LABEL_SRTCP_ENCRYPTION: u8 = 0x03;
/// The longest master salt (AES-CM's 14 bytes; AES-GCM's is 12).
const MAX_SALT_LEN: usize = 14;

/// The inputs of one AES-128 block encryption: a key-derivation step when SRTP sets up.
#[derive(Clone, Copy)]
struct Derivation {
    key: [u8; 16],
    block: [u8; 16],
}

/// Master key and salt of one direction of an SRTP session.
#[derive(Clone, Debug)]
pub struct MasterKeys {
    pub profile: ProtectionProfile,
    pub key: [u8; 16],
    /// `profile.salt_len()` bytes used.
    salt: [u8; MAX_SALT_LEN],
}

impl MasterKeys {
    pub fn new(profile: ProtectionProfile, key: [u8; 16], salt: &[u8]) -> Option<Self> {
        let len = supported_salt_len(profile)?;
        if salt.len() != len {
            return None;
        }
        let mut s = [0u8; MAX_SALT_LEN];
        s[..len].copy_from_slice(salt);
        Some(Self {
            profile,
            key,
            salt: s,
        })
    }

    pub fn salt(&self) -> &[u8] {
        &self.salt[..self.profile.salt_len()]
    }
}

impl PartialEq for MasterKeys {
    fn eq(&self, other: &Self) -> bool {
        self.profile as u8 == other.profile as u8
            && self.key == other.key
            && self.salt() == other.salt()
    }
}

/// The profiles protected here: 128-bit keys, so the derivation runs on AES-128 blocks.
fn supported_salt_len(profile: ProtectionProfile) -> Option<usize> {
    match profile {
        ProtectionProfile::AeadAes128Gcm | ProtectionProfile::Aes128CmHmacSha1_80 => {
            Some(profile.salt_len())
        }
        _ => None,
    }
}

/// The profile rtc reports as negotiated (its transport statistics' `srtp_cipher`).
pub fn profile_named(name: &str) -> Option<ProtectionProfile> {
    match name {
        "SRTP_AEAD_AES_128_GCM" => Some(ProtectionProfile::AeadAes128Gcm),
        "SRTP_AES128_CM_HMAC_SHA1_80" => Some(ProtectionProfile::Aes128CmHmacSha1_80),
        _ => None,
    }
}

/// A crypto provider that behaves exactly as the built-in one and notes SRTP key derivations.
/// One per subscriber connection (the notes are that connection's).
pub struct KeyTap {
    crypto: TapCrypto,
}

struct TapCrypto {
    inner: Arc<dyn RTCCryptoProvider>,
    noted: Mutex<Noted>,
}

#[derive(Default)]
struct Noted {
    derivations: Vec<Derivation>,
    /// Set once the keys were taken: nothing more is recorded and nothing secret stays here.
    closed: bool,
}

impl KeyTap {
    pub fn new() -> Result<Arc<Self>, CryptoError> {
        Ok(Arc::new(Self {
            crypto: TapCrypto {
                inner: rtc::crypto::default_provider()?,
                noted: Mutex::new(Noted::default()),
            },
        }))
    }

    /// The outbound (local) master key and salt of the negotiated `profile`.
    ///
    /// rtc creates the local context before the remote one, so the first key whose first two
    /// derivations are labels 0 and 3 over the same salt is the local master key. Taking the
    /// keys clears the notes (the remote direction's key included) and stops recording.
    pub fn outbound_keys(&self, profile: ProtectionProfile) -> Option<MasterKeys> {
        let mut noted = self.crypto.noted.lock().unwrap_or_else(|e| e.into_inner());
        let found = local_keys(&noted.derivations, profile);
        if found.is_some() {
            noted.derivations.clear();
            noted.derivations.shrink_to_fit();
            noted.closed = true;
        }
        found
    }

    /// The wrapped provider's crypto (nothing noted), for the contexts the SFU builds itself.
    pub fn plain_crypto(&self) -> &dyn RTCCrypto {
        self.crypto.inner.crypto()
    }
}

fn local_keys(noted: &[Derivation], profile: ProtectionProfile) -> Option<MasterKeys> {
    let salt_len = supported_salt_len(profile)?;
    for (i, first) in noted.iter().enumerate() {
        if noted[..i].iter().any(|d| d.key == first.key) {
            continue;
        }
        let Some(second) = noted[i + 1..].iter().find(|d| d.key == first.key) else {
            continue;
        };
        if is_derivation_start(first, second, salt_len) {
            let mut salt = [0u8; MAX_SALT_LEN];
            salt[..salt_len].copy_from_slice(&first.block[..salt_len]);
            salt[7] ^= LABEL_SRTP_ENCRYPTION;
            return MasterKeys::new(profile, first.key, &salt[..salt_len]);
        }
    }
    None
}

/// RFC 3711 §4.3.3: the block is the salt, zero-padded to 14 bytes, with the label XORed into
/// byte 7, followed by a two-byte block counter (0 for the first block of a key).
fn is_derivation_start(first: &Derivation, second: &Derivation, salt_len: usize) -> bool {
    let well_formed = |d: &Derivation| d.block[salt_len..].iter().all(|b| *b == 0);
    well_formed(first)
        && well_formed(second)
        && first.block[..7] == second.block[..7]
        && first.block[8..salt_len] == second.block[8..salt_len]
        && first.block[7] ^ second.block[7] == LABEL_SRTP_ENCRYPTION ^ LABEL_SRTCP_ENCRYPTION
}

impl RTCCryptoProvider for KeyTap {
    fn name(&self) -> &'static str {
        self.crypto.inner.name()
    }

    fn crypto(&self) -> &dyn RTCCrypto {
        &self.crypto
    }

    fn random(&self) -> &dyn RTCRandom {
        self.crypto.inner.random()
    }
}

impl RTCCrypto for TapCrypto {
    fn supports(&self, algorithm: CryptoAlgorithm) -> bool {
        self.inner.crypto().supports(algorithm)
    }

    fn hash(&self, algorithm: HashAlgorithm, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.crypto().hash(algorithm, data)
    }

    fn block_encrypt(
        &self,
        algorithm: BlockCipherAlgorithm,
        key: &[u8],
        block: &mut [u8],
    ) -> Result<(), CryptoError> {
        if algorithm == BlockCipherAlgorithm::Aes128
            && let (Ok(key), Ok(input)) = (<[u8; 16]>::try_from(key), <[u8; 16]>::try_from(&*block))
        {
            let mut noted = self.noted.lock().unwrap_or_else(|e| e.into_inner());
            if !noted.closed && noted.derivations.len() < MAX_NOTED {
                noted.derivations.push(Derivation { key, block: input });
            }
        }
        self.inner.crypto().block_encrypt(algorithm, key, block)
    }

    fn new_hmac(&self, algorithm: HmacAlgorithm, key: &[u8]) -> Result<Box<dyn Mac>, CryptoError> {
        self.inner.crypto().new_hmac(algorithm, key)
    }

    fn new_stream_cipher(
        &self,
        algorithm: StreamCipherAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn StreamCipher>, CryptoError> {
        self.inner.crypto().new_stream_cipher(algorithm, key)
    }

    fn new_aead(
        &self,
        algorithm: AeadAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn AeadCipher>, CryptoError> {
        self.inner.crypto().new_aead(algorithm, key)
    }

    fn new_cbc(
        &self,
        algorithm: CbcAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn CbcCipher>, CryptoError> {
        self.inner.crypto().new_cbc(algorithm, key)
    }

    fn start_key_exchange(
        &self,
        algorithm: KeyExchangeAlgorithm,
    ) -> Result<Box<dyn ActiveKeyExchange>, CryptoError> {
        self.inner.crypto().start_key_exchange(algorithm)
    }

    fn generate_signing_key(
        &self,
        scheme: SignatureScheme,
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().generate_signing_key(scheme)
    }

    fn import_signing_key(
        &self,
        scheme: SignatureScheme,
        pkcs8_der: &[u8],
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().import_signing_key(scheme, pkcs8_der)
    }

    fn verify_signature(
        &self,
        scheme: SignatureScheme,
        public_key: PublicKey<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        self.inner
            .crypto()
            .verify_signature(scheme, public_key, message, signature)
    }
}

/// The outbound SRTP of one subscriber connection, and where its media goes.
pub struct OutboundSrtp {
    context: Context,
    /// The selected pair: our socket and the subscriber's address (kept current by the engine
    /// from the datagrams rtc itself sends on the connection).
    pub local: SocketAddr,
    pub to: SocketAddr,
    /// Reused plaintext buffer.
    plain: Vec<u8>,
}

impl OutboundSrtp {
    pub fn new(
        keys: &MasterKeys,
        crypto: &dyn RTCCrypto,
        local: SocketAddr,
        to: SocketAddr,
    ) -> Result<Self, rtc::shared::error::Error> {
        let context = Context::new(&keys.key, keys.salt(), keys.profile, None, None, crypto)?;
        Ok(Self {
            context,
            local,
            to,
            plain: Vec::with_capacity(1500),
        })
    }

    /// The SRTP datagram of a forwarded packet.
    pub fn protect(&mut self, packet: &Packet) -> Result<BytesMut, rtc::shared::error::Error> {
        let header_len = packet.header.marshal_size();
        self.plain.clear();
        self.plain.resize(header_len, 0);
        packet.header.marshal_to(&mut self.plain)?;
        self.plain.extend_from_slice(&packet.payload);
        self.context
            .encrypt_rtp_with_header(&self.plain, &packet.header)
    }
}

/// Whether a datagram rtc sends on a connection follows the selected pair: DTLS and SRTP/SRTCP
/// do (RFC 7983 first-byte ranges), STUN does not (an ICE-lite agent answers checks on every
/// candidate pair, selected or not).
pub fn follows_selected_pair(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(20..=63 | 128..=191))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtp::header::Header;
    use rtc::shared::marshal::Unmarshal;

    const GCM: ProtectionProfile = ProtectionProfile::AeadAes128Gcm;
    const CM: ProtectionProfile = ProtectionProfile::Aes128CmHmacSha1_80;

    impl KeyTap {
        fn crypto_for_rtc(&self) -> &dyn RTCCrypto {
            RTCCryptoProvider::crypto(self)
        }
    }

    fn keys(profile: ProtectionProfile, seed: u8) -> MasterKeys {
        let key: [u8; 16] = std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8));
        let salt: Vec<u8> = (0..profile.salt_len())
            .map(|i| seed ^ (0xa5 + i as u8))
            .collect();
        MasterKeys::new(profile, key, &salt).unwrap()
    }

    /// What rtc does at the end of a handshake, through the tap: the local context, then the
    /// remote one.
    fn handshake(tap: &KeyTap, local: &MasterKeys, remote: &MasterKeys) {
        for k in [local, remote] {
            Context::new(
                &k.key,
                k.salt(),
                k.profile,
                None,
                None,
                tap.crypto_for_rtc(),
            )
            .unwrap();
        }
    }

    /// rtc-srtp's own context set-up, run through the tap, yields the keys it was given: the
    /// tap reads the derivation the way the pinned rtc-srtp performs it, for both profiles.
    #[test]
    fn the_tap_recovers_the_outbound_master_key_and_salt() {
        for profile in [GCM, CM] {
            let tap = KeyTap::new().unwrap();
            let (local, remote) = (keys(profile, 1), keys(profile, 2));
            handshake(&tap, &local, &remote);
            assert_eq!(tap.outbound_keys(profile), Some(local), "{profile:?}");
            // Taken once: the notes are gone, the remote key with them.
            assert_eq!(tap.outbound_keys(profile), None);
        }
    }

    /// The profile comes from rtc's statistics, the derivations only confirm it: AES-CM's are
    /// not taken for AES-GCM's (its salt runs into the GCM padding), and a profile not
    /// protected here gives nothing. (The converse cannot be told: a GCM derivation is an AES-CM
    /// one whose salt ends in two zero bytes.)
    #[test]
    fn derivations_of_another_profile_give_no_keys() {
        let tap = KeyTap::new().unwrap();
        handshake(&tap, &keys(CM, 1), &keys(CM, 2));
        assert_eq!(tap.outbound_keys(GCM), None);
        assert_eq!(
            tap.outbound_keys(ProtectionProfile::Aes128CmHmacSha1_32),
            None
        );
        assert_eq!(tap.outbound_keys(CM), Some(keys(CM, 1)));
    }

    /// What `protect` sends, a receiver holding the same session decrypts to the packet, across
    /// a sequence-number wrap (the rollover counter).
    #[test]
    fn a_protected_packet_decrypts_at_the_other_end() {
        for profile in [GCM, CM] {
            let tap = KeyTap::new().unwrap();
            let k = keys(profile, 7);
            let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap();
            let mut out = OutboundSrtp::new(&k, tap.plain_crypto(), addr, addr).unwrap();
            let mut receiver =
                Context::new(&k.key, k.salt(), profile, None, None, tap.plain_crypto()).unwrap();
            for seq in [65_534u16, 65_535, 0, 1] {
                let packet = Packet {
                    header: Header {
                        version: 2,
                        marker: true,
                        payload_type: 96,
                        sequence_number: seq,
                        timestamp: 90_000,
                        ssrc: 0x1234_5678,
                        ..Default::default()
                    },
                    payload: bytes::Bytes::from_static(b"\x10\x80\x01vp8 payload"),
                };
                let datagram = out.protect(&packet).unwrap();
                assert!(follows_selected_pair(&datagram));
                let mut plain = receiver.decrypt_rtp(&datagram).unwrap().freeze();
                assert_eq!(
                    Packet::unmarshal(&mut plain).unwrap(),
                    packet,
                    "{profile:?}"
                );
            }
        }
    }

    #[test]
    fn negotiated_profile_names_map_to_the_supported_profiles() {
        let named = |n| profile_named(n).map(|p| p as u8);
        assert_eq!(named("SRTP_AEAD_AES_128_GCM"), Some(GCM as u8));
        assert_eq!(named("SRTP_AES128_CM_HMAC_SHA1_80"), Some(CM as u8));
        assert_eq!(named("SRTP_AEAD_AES_256_GCM"), None);
        assert_eq!(named(""), None);
    }

    #[test]
    fn stun_does_not_follow_the_selected_pair() {
        assert!(!follows_selected_pair(&[0x00, 0x01]));
        assert!(follows_selected_pair(&[22, 254, 253]));
        assert!(!follows_selected_pair(&[]));
    }
}
