//! The at-rest format of a secret column: `v1:<base64(nonce || ciphertext)>`, AES-256-GCM with
//! a random 96-bit nonce per value and associated data naming the table, column and row. The
//! associated data is what makes a ciphertext copied into another row (or column) useless: GCM
//! refuses to open it there, so a database writer cannot move one account's token to another.

use std::fmt;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;

/// Prefix of sealed values; the version names the cipher and layout, so a later change (another
/// algorithm, key rotation with a key id) can read old values and rewrite them.
pub const PREFIX_V1: &str = "v1:";
/// Bytes of a key.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
/// GCM's authentication tag, appended to the ciphertext.
const TAG_LEN: usize = 16;

/// A column holding secrets, and what identifies its rows (the associated data's row part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `crm_connections.secrets`: JSON of the client secret, Bitrix24 webhook URL, webhook secret.
    CrmSecrets,
    CrmAccessToken,
    CrmRefreshToken,
    /// `webhook_endpoints.secret`: the signing key of a customer's endpoint.
    WebhookEndpointSecret,
    /// `crm_card_settings.secret`: the HMAC key of deal-card launch URLs.
    CardSecret,
    /// `settings.value` of the server's own signing keys (see [`Field::rows`]): the join-token
    /// (JWT) key and the recording-link key. Whoever reads them can mint tokens and links.
    ServerSecret,
}

impl Field {
    pub const ALL: [Field; 6] = [
        Field::CrmSecrets,
        Field::CrmAccessToken,
        Field::CrmRefreshToken,
        Field::WebhookEndpointSecret,
        Field::CardSecret,
        Field::ServerSecret,
    ];

    /// The rows of the column that hold secrets, when not all of them do (`settings` may hold
    /// other values one day: only these keys are sealed).
    pub fn rows(self) -> Option<&'static [&'static str]> {
        match self {
            Field::ServerSecret => Some(&["jwt_secret", "recording_link_secret"]),
            _ => None,
        }
    }

    pub fn table(self) -> &'static str {
        match self {
            Field::CrmSecrets | Field::CrmAccessToken | Field::CrmRefreshToken => "crm_connections",
            Field::WebhookEndpointSecret => "webhook_endpoints",
            Field::CardSecret => "crm_card_settings",
            Field::ServerSecret => "settings",
        }
    }

    pub fn column(self) -> &'static str {
        match self {
            Field::CrmSecrets => "secrets",
            Field::CrmAccessToken => "amo_access_token",
            Field::CrmRefreshToken => "amo_refresh_token",
            Field::WebhookEndpointSecret | Field::CardSecret => "secret",
            Field::ServerSecret => "value",
        }
    }

    /// The column whose value is the row part of the associated data (the row's key).
    pub fn row_key(self) -> &'static str {
        match self {
            Field::CardSecret => "account_id",
            Field::ServerSecret => "key",
            _ => "id",
        }
    }

    fn aad(self, row: &str) -> Vec<u8> {
        format!("parley:{}.{}:{row}", self.table(), self.column()).into_bytes()
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.table(), self.column())
    }
}

/// Why a stored value could not be opened. None of these carry the value itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("{0} is not encrypted (no `v1:` prefix)")]
    NotSealed(Field),
    #[error("{0} is not valid `v1:` data")]
    Malformed(Field),
    /// Wrong key, a tampered value, or a value copied from another row: GCM cannot tell which.
    #[error(
        "{field} of {row} cannot be decrypted: the secrets key (PARLEY_SECRETS_KEY or the key \
         file) is not the one it was encrypted with, or the value was altered or copied from \
         another row"
    )]
    Undecryptable { field: Field, row: String },
}

/// A key as read from configuration or the key file. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretsKey([u8; KEY_LEN]);

impl SecretsKey {
    /// A fresh key from the OS-seeded CSPRNG.
    pub fn generate() -> SecretsKey {
        let mut k = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut k);
        SecretsKey(k)
    }

    /// Standard base64 of exactly 32 bytes (surrounding whitespace ignored). The error names
    /// the expectation, never the input.
    pub fn from_base64(text: &str) -> Result<SecretsKey, &'static str> {
        const WANT: &str = "the secrets key must be 32 bytes in base64 (for example the output \
                            of `openssl rand -base64 32`)";
        let bytes = STANDARD.decode(text.trim()).map_err(|_| WANT)?;
        let k: [u8; KEY_LEN] = bytes.try_into().map_err(|_| WANT)?;
        Ok(SecretsKey(k))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretsKey(********)")
    }
}

/// Seals and opens secret columns with one key. Cheap to clone.
#[derive(Clone)]
pub struct SecretsCipher {
    aead: Aes256Gcm,
}

impl fmt::Debug for SecretsCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretsCipher(********)")
    }
}

/// Whether a stored value is in the sealed format (what the start-up migration skips).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX_V1)
}

impl SecretsCipher {
    pub fn new(key: &SecretsKey) -> SecretsCipher {
        SecretsCipher {
            aead: Aes256Gcm::new(&key.0.into()),
        }
    }

    /// `v1:` + base64(nonce || ciphertext || tag) of `plaintext`, bound to `field` of `row`.
    pub fn seal(&self, field: Field, row: &str, plaintext: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = field.aad(row);
        let sealed = self
            .aead
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            // AES-GCM encryption fails only for messages beyond ~64 GiB; ours are bounded by the
            // API's input limits (a few KiB).
            .unwrap_or_else(|_| unreachable!("AES-GCM encrypts any message under 64 GiB"));
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        format!("{PREFIX_V1}{}", STANDARD.encode(out))
    }

    /// The plaintext of a value [`seal`](Self::seal)ed for `field` of `row`.
    pub fn open(&self, field: Field, row: &str, stored: &str) -> Result<String, OpenError> {
        let b64 = stored
            .strip_prefix(PREFIX_V1)
            .ok_or(OpenError::NotSealed(field))?;
        let bytes = STANDARD
            .decode(b64)
            .map_err(|_| OpenError::Malformed(field))?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError::Malformed(field));
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let aad = field.aad(row);
        let plain = self
            .aead
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::Undecryptable {
                field,
                row: row.to_owned(),
            })?;
        // We only ever seal UTF-8; anything else means the value is not ours.
        String::from_utf8(plain).map_err(|_| OpenError::Malformed(field))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> SecretsCipher {
        SecretsCipher::new(&SecretsKey::generate())
    }

    #[test]
    fn round_trip_with_a_fresh_nonce_each_time() {
        let c = cipher();
        let secret = "amo-refresh-token-Ω-0001";
        let a = c.seal(Field::CrmRefreshToken, "crm_1", secret);
        let b = c.seal(Field::CrmRefreshToken, "crm_1", secret);
        assert!(a.starts_with("v1:") && is_sealed(&a));
        assert_ne!(a, b, "a random nonce per value");
        assert!(!a.contains(secret));
        assert_eq!(
            c.open(Field::CrmRefreshToken, "crm_1", &a).as_deref(),
            Ok(secret)
        );
        assert_eq!(
            c.open(Field::CrmRefreshToken, "crm_1", &b).as_deref(),
            Ok(secret)
        );
        // The empty string is a value too.
        let e = c.seal(Field::CardSecret, "acc", "");
        assert_eq!(c.open(Field::CardSecret, "acc", &e).as_deref(), Ok(""));
    }

    #[test]
    fn a_tampered_value_is_refused() {
        let c = cipher();
        let sealed = c.seal(Field::CrmSecrets, "crm_1", r#"{"client_secret":"s"}"#);
        let mut bytes = STANDARD
            .decode(sealed.strip_prefix("v1:").expect("prefix"))
            .expect("b64");
        for i in [0, NONCE_LEN, bytes.len() - 1] {
            bytes[i] ^= 0x01;
            let tampered = format!("v1:{}", STANDARD.encode(&bytes));
            assert!(
                matches!(
                    c.open(Field::CrmSecrets, "crm_1", &tampered),
                    Err(OpenError::Undecryptable { .. })
                ),
                "byte {i}"
            );
            bytes[i] ^= 0x01;
        }
        let truncated = &sealed[..sealed.len() - 8];
        assert!(c.open(Field::CrmSecrets, "crm_1", truncated).is_err());
        assert_eq!(
            c.open(Field::CrmSecrets, "crm_1", "v1:AAAA"),
            Err(OpenError::Malformed(Field::CrmSecrets))
        );
        assert_eq!(
            c.open(Field::CrmSecrets, "crm_1", "v1:not base64!"),
            Err(OpenError::Malformed(Field::CrmSecrets))
        );
        assert_eq!(
            c.open(Field::CrmSecrets, "crm_1", "plain"),
            Err(OpenError::NotSealed(Field::CrmSecrets))
        );
    }

    #[test]
    fn another_row_or_column_cannot_open_it() {
        let c = cipher();
        let sealed = c.seal(Field::CrmAccessToken, "crm_a", "token-of-a");
        for (field, row) in [
            (Field::CrmAccessToken, "crm_b"),
            (Field::CrmRefreshToken, "crm_a"),
            (Field::WebhookEndpointSecret, "crm_a"),
        ] {
            let e = c
                .open(field, row, &sealed)
                .expect_err("wrong associated data");
            assert!(
                matches!(e, OpenError::Undecryptable { .. }),
                "{field} {row}"
            );
        }
    }

    #[test]
    fn another_key_cannot_open_it_and_the_error_holds_no_secret() {
        let sealed = cipher().seal(Field::CardSecret, "acc-1", "card-hmac-key");
        let e = cipher()
            .open(Field::CardSecret, "acc-1", &sealed)
            .expect_err("wrong key");
        let text = e.to_string();
        assert!(text.contains("crm_card_settings.secret of acc-1"), "{text}");
        assert!(text.contains("PARLEY_SECRETS_KEY"), "{text}");
        assert!(!text.contains("card-hmac-key") && !text.contains(&sealed));
    }

    #[test]
    fn keys_parse_from_base64_and_never_print() {
        let k = SecretsKey::generate();
        let text = k.to_base64();
        assert_eq!(
            SecretsKey::from_base64(&format!(" {text}\n")),
            Ok(k.clone())
        );
        assert!(!format!("{k:?}").contains(&text));
        assert!(!format!("{:?}", SecretsCipher::new(&k)).contains(&text));
        for bad in [
            "",
            "c2hvcnQ=",
            "not base64 at all",
            &STANDARD.encode([7u8; 33]),
        ] {
            let e = SecretsKey::from_base64(bad).expect_err(bad);
            assert!(e.contains("32 bytes"), "{e}");
        }
    }
}
