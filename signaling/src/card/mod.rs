//! The CRM deal card: signed launch URLs, the CRM-user → Parley-user links, short-lived card
//! sessions, and where the card reads its deal from.
//!
//! A CRM shows `/crm/card?account=…&deal=…&crm_user=…&exp=…&sig=…` in an iframe. `sig` is the
//! lower-case hex HMAC-SHA256, keyed with the account's card secret, of the canonical query
//! `account=<id>&deal=<deal>&crm_user=<crm user>&exp=<unix seconds>` (those four, that order).
//! Deal and CRM user ids are restricted to `[A-Za-z0-9_.:-]{1,64}` so the canonical text needs
//! no percent-encoding rules: what the CRM signs is exactly what it puts in the URL.
//!
//! The card is framable only by the CRM's web origin, which is the account's CRM connection's
//! `frame_origin` (given, or derived from the amoCRM / Bitrix24 address): one place for it.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::{FromRow, Row};
use uuid::Uuid;

use crate::crm::{CrmConnector, Deal};
use crate::secrets::{Field, SecretsCipher};
use crate::store::DbPool;

/// Launch URLs may be minted at most this far ahead: a leaked URL stays usable for a bounded time.
pub const MAX_LAUNCH_AHEAD_SECS: i64 = 24 * 3600;
/// A card session lasts an hour; the CRM relaunches the card (new signed URL) after that.
pub const CARD_SESSION_SECS: i64 = 3600;
/// Card session tokens: `cs_` + 43 alphanumerics (about 256 bits), stored as SHA-256.
pub const CARD_TOKEN_PREFIX: &str = "cs_";
/// Cookie of the card session (HttpOnly, scoped to the card API's path).
pub const CARD_COOKIE: &str = "parley_card";
pub const MAX_EXTERNAL_ID: usize = 64;

/// Whether a deal or CRM user id has the allowed shape (see the module docs).
pub fn valid_external_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_EXTERNAL_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// The text that is signed.
pub fn canonical(account: &str, deal: &str, crm_user: &str, exp: i64) -> String {
    format!("account={account}&deal={deal}&crm_user={crm_user}&exp={exp}")
}

/// Hex HMAC-SHA256 of `text` (what a CRM computes; used by tests and docs).
pub fn sign(secret: &str, text: &str) -> String {
    let mut mac = mac(secret);
    mac.update(text.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn mac(secret: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// Checks `sig_hex` against `text` in constant time (`verify_slice` compares without early exit).
pub fn verify(secret: &str, text: &str, sig_hex: &str) -> bool {
    if sig_hex.len() != 64 {
        return false;
    }
    let Ok(sig) = hex::decode(sig_hex) else {
        return false;
    };
    let mut mac = mac(secret);
    mac.update(text.as_bytes());
    mac.verify_slice(&sig).is_ok()
}

/// Normalises a CRM origin for the `frame-ancestors` directive: `scheme://host[:port]`, https
/// only, except plain http on loopback hosts (local development and tests). Anything with a
/// path, query, credentials or a wildcard is refused, so the CSP can never be widened by input.
pub fn normalise_origin(input: &str) -> Option<String> {
    if input.len() > 200 || input.contains('*') {
        return None;
    }
    let url = reqwest::Url::parse(input.trim()).ok()?;
    let host = url.host_str()?;
    let loopback = matches!(host, "localhost" | "127.0.0.1" | "[::1]");
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return None,
    }
    if !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return None;
    }
    let origin = url.origin().ascii_serialization();
    // Defence in depth: the origin goes into a header; only CSP-safe characters.
    origin
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'/' | b'.' | b'-' | b'[' | b']'))
        .then_some(origin)
}

/// Where the card reads a deal with its contacts. The CRM-connection work provides the real
/// per-account resolver; until then [`NoDealSource`] answers "no connector", and the card shows
/// the deal id with an empty contact list.
#[async_trait]
pub trait DealSource: Send + Sync {
    /// The account's connector, if it has a CRM connected.
    async fn connector(&self, account: Uuid) -> Option<Arc<dyn CrmConnector>>;
}

pub struct NoDealSource;

#[async_trait]
impl DealSource for NoDealSource {
    async fn connector(&self, _account: Uuid) -> Option<Arc<dyn CrmConnector>> {
        None
    }
}

/// Reads the deal through `source`; `Ok(None)` when the account has no connector.
pub async fn read_deal(
    source: &dyn DealSource,
    account: Uuid,
    deal: &str,
) -> Result<Option<Deal>, crate::crm::CrmError> {
    match source.connector(account).await {
        Some(c) => c.read_deal(deal).await.map(Some),
        None => Ok(None),
    }
}

/// The account's card settings. `Debug` hides the secret.
#[derive(Clone)]
pub struct CardSettings {
    /// The HMAC key of launch URLs (stored sealed: the server must recompute HMACs with it).
    pub secret: String,
}

impl std::fmt::Debug for CardSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardSettings { secret: \"***\" }")
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct CardSession {
    pub account_id: String,
    pub user_id: String,
    pub crm_user_id: String,
    pub deal_id: String,
    #[sqlx(try_from = "crate::store::time::DbTime")]
    pub expires_at: DateTime<Utc>,
}

/// A CRM user linked to a Parley user, as the admin console lists it.
#[derive(Debug, Clone, FromRow)]
pub struct LinkRow {
    pub crm_user_id: String,
    pub user_id: String,
    pub email: String,
    pub display_name: String,
    #[sqlx(try_from = "crate::store::time::DbTime")]
    pub created_at: DateTime<Utc>,
}

/// The card's tables (see migrations `20260421000000_crm_card.sql` and
/// `20260506120000_crm_frame_origin.sql`).
#[derive(Clone)]
pub struct CardStore {
    pool: DbPool,
    cipher: SecretsCipher,
}

impl CardStore {
    pub fn new(pool: DbPool, cipher: SecretsCipher) -> Self {
        CardStore { pool, cipher }
    }

    pub async fn settings(&self, account: &str) -> sqlx::Result<Option<CardSettings>> {
        let sealed: Option<String> =
            sqlx::query_scalar("SELECT secret FROM crm_card_settings WHERE account_id = $1")
                .bind(account)
                .fetch_optional(&self.pool)
                .await?;
        sealed
            .map(|s| {
                self.cipher
                    .open(Field::CardSecret, account, &s)
                    .map(|secret| CardSettings { secret })
                    .map_err(|e| sqlx::Error::Decode(e.into()))
            })
            .transpose()
    }

    /// Creates or replaces (rotates) the account's secret.
    pub async fn put_settings(
        &self,
        account: &str,
        secret: &str,
        now: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO crm_card_settings (account_id, secret, created_at) \
             VALUES ($1, $2, $3) ON CONFLICT (account_id) DO UPDATE SET \
             secret = excluded.secret, created_at = excluded.created_at",
        )
        .bind(account)
        .bind(self.cipher.seal(Field::CardSecret, account, secret))
        .bind(crate::store::time::text(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn link_user(
        &self,
        account: &str,
        crm_user: &str,
        user: &str,
        now: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO crm_user_links (account_id, crm_user_id, user_id, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, crm_user_id) DO UPDATE SET \
             user_id = excluded.user_id, created_at = excluded.created_at",
        )
        .bind(account)
        .bind(crm_user)
        .bind(user)
        .bind(crate::store::time::text(now))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes a link and ends the card sessions opened through it.
    pub async fn unlink_user(&self, account: &str, crm_user: &str) -> sqlx::Result<bool> {
        let r =
            sqlx::query("DELETE FROM crm_user_links WHERE account_id = $1 AND crm_user_id = $2")
                .bind(account)
                .bind(crm_user)
                .execute(&self.pool)
                .await?;
        sqlx::query("DELETE FROM crm_card_sessions WHERE account_id = $1 AND crm_user_id = $2")
            .bind(account)
            .bind(crm_user)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// When the account's card secret was set (last rotated), if it has one: never the secret.
    pub async fn secret_set_at(&self, account: &str) -> sqlx::Result<Option<DateTime<Utc>>> {
        let at: Option<crate::store::time::DbTime> =
            sqlx::query_scalar("SELECT created_at FROM crm_card_settings WHERE account_id = $1")
                .bind(account)
                .fetch_optional(&self.pool)
                .await?;
        Ok(at.map(|t| t.0))
    }

    /// One page of the account's CRM-user links, by CRM user id, with the linked user's name
    /// and address; and how many there are.
    pub async fn links(
        &self,
        account: &str,
        limit: u32,
        offset: u32,
    ) -> sqlx::Result<(Vec<LinkRow>, u64)> {
        let rows = sqlx::query_as::<_, LinkRow>(
            "SELECT l.crm_user_id, l.user_id, u.email, u.display_name, l.created_at \
             FROM crm_user_links l JOIN users u ON u.id = l.user_id \
             WHERE l.account_id = $1 ORDER BY l.crm_user_id LIMIT $2 OFFSET $3",
        )
        .bind(account)
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM crm_user_links l JOIN users u ON u.id = l.user_id \
             WHERE l.account_id = $1",
        )
        .bind(account)
        .fetch_one(&self.pool)
        .await?;
        Ok((rows, u64::try_from(total).unwrap_or(0)))
    }

    pub async fn linked_user(&self, account: &str, crm_user: &str) -> sqlx::Result<Option<String>> {
        sqlx::query("SELECT user_id FROM crm_user_links WHERE account_id = $1 AND crm_user_id = $2")
            .bind(account)
            .bind(crm_user)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get("user_id"))
            .transpose()
    }

    pub async fn insert_session(
        &self,
        token_hash: &str,
        s: &CardSession,
        now: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        // Expired sessions are swept on every launch so the table stays small.
        sqlx::query("DELETE FROM crm_card_sessions WHERE expires_at < $1")
            .bind(crate::store::time::text(now))
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO crm_card_sessions (token_hash, account_id, user_id, crm_user_id, \
             deal_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(token_hash)
        .bind(&s.account_id)
        .bind(&s.user_id)
        .bind(&s.crm_user_id)
        .bind(&s.deal_id)
        .bind(crate::store::time::text(now))
        .bind(crate::store::time::text(s.expires_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn session(&self, token_hash: &str) -> sqlx::Result<Option<CardSession>> {
        sqlx::query_as(
            "SELECT account_id, user_id, crm_user_id, deal_id, expires_at \
             FROM crm_card_sessions WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn set_meeting_deal(&self, meeting: &str, deal: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE meetings SET deal_id = $1 WHERE id = $2")
            .bind(deal)
            .bind(meeting)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Meetings of one deal of one account, newest first (at most `limit`).
    pub async fn deal_meetings(
        &self,
        account: &str,
        deal: &str,
        limit: i64,
    ) -> sqlx::Result<Vec<DealMeetingRow>> {
        sqlx::query_as(
            "SELECT id, title, scheduled_start, created_at, started_at, ended_at, invite_secret \
             FROM meetings WHERE account_id = $1 AND deal_id = $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(account)
        .bind(deal)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Whether `meeting` was made for this deal of this account (what a card session may read).
    pub async fn is_deal_meeting(
        &self,
        account: &str,
        deal: &str,
        meeting: &str,
    ) -> sqlx::Result<bool> {
        let row = sqlx::query(
            "SELECT 1 FROM meetings WHERE id = $1 AND account_id = $2 AND deal_id = $3",
        )
        .bind(meeting)
        .bind(account)
        .bind(deal)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// Whether a summary is stored for the meeting. The summaries table belongs to the
    /// summaries work; if it is absent the answer is simply "no".
    pub async fn has_summary(&self, meeting: &str) -> bool {
        sqlx::query("SELECT 1 FROM meeting_summaries WHERE meeting_id = $1")
            .bind(meeting)
            .fetch_optional(&self.pool)
            .await
            .ok()
            .flatten()
            .is_some()
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct DealMeetingRow {
    pub id: String,
    pub title: String,
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
    pub scheduled_start: Option<DateTime<Utc>>,
    #[sqlx(try_from = "crate::store::time::DbTime")]
    pub created_at: DateTime<Utc>,
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
    pub started_at: Option<DateTime<Utc>>,
    #[sqlx(try_from = "crate::store::time::OptDbTime")]
    pub ended_at: Option<DateTime<Utc>>,
    pub invite_secret: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_forgeries_do_not() {
        let text = canonical("a", "42", "7", 1_900_000_000);
        let sig = sign("k", &text);
        assert!(verify("k", &text, &sig));
        assert!(!verify("other", &text, &sig));
        assert!(!verify(
            "k",
            &canonical("a", "43", "7", 1_900_000_000),
            &sig
        ));
        assert!(!verify("k", &text, "zz"));
        assert!(!verify("k", &text, &"g".repeat(64)));
    }

    #[test]
    fn origins_are_normalised_or_refused() {
        assert_eq!(
            normalise_origin("https://Crm.Example.com/").as_deref(),
            Some("https://crm.example.com")
        );
        assert_eq!(
            normalise_origin("http://127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        for bad in [
            "http://crm.example.com",
            "https://*.example.com",
            "https://crm.example.com/path",
            "https://u:p@crm.example.com",
            "https://crm.example.com?x=1",
            "javascript:alert(1)",
            "*",
            "",
        ] {
            assert_eq!(normalise_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn external_ids() {
        assert!(valid_external_id("12345"));
        assert!(valid_external_id("D_1.a:b-c"));
        assert!(!valid_external_id(""));
        assert!(!valid_external_id("a&b"));
        assert!(!valid_external_id(&"1".repeat(65)));
    }
}
