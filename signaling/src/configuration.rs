//! One configuration struct, assembled from (lowest to highest priority) built-in defaults, an
//! optional TOML file, `PARLEY_*` environment variables and command-line flags.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use clap::Parser;
use parley_licensing::Money;
use parley_licensing::service::{Clock, ManualClock};
use serde::Deserialize;

/// A value that must never be printed. `Debug`/`Display` show a mask.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"********\"")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// A hand-moved "today" for the licensing rules. A test hook only: nothing in the environment,
/// the file or the flags can set it, so a production server always reads the Moscow date.
/// Tests keep a clone and move the date between calls (windows, pro-rata days, renewals).
#[derive(Clone)]
pub struct LicensingClock(Arc<ManualClock>);

impl LicensingClock {
    pub fn new(today: NaiveDate) -> Self {
        LicensingClock(Arc::new(ManualClock::new(today)))
    }
    pub fn set(&self, today: NaiveDate) {
        self.0.set(today);
    }
    pub fn today(&self) -> NaiveDate {
        self.0.today()
    }
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.0.clone()
    }
}

impl fmt::Debug for LicensingClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LicensingClock({})", self.today())
    }
}

/// The card acquirer (YooKassa, API v3): the shop's id and secret key for HTTP Basic auth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YooKassaConfig {
    pub shop_id: String,
    pub secret_key: Secret,
    /// `https://api.yookassa.ru` unless configured (tests point it at a stand-in).
    pub api_url: String,
}

/// Several nodes behind one address (see [`crate::cluster`]): present when `PARLEY_REDIS_URL`
/// is set.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port[/db]`; may hold a password, so it is a secret.
    pub redis_url: Secret,
    /// This node's name in the registry (`PARLEY_NODE_ID`; default: random at each start).
    pub node_id: String,
    /// This node's own http(s) base that clients can reach (`PARLEY_NODE_URL`): where
    /// participants of its meetings are redirected. Unlike `public_url` (the one address in
    /// front of every node, used in links), it names this node alone. Empty (a test hook; the
    /// configuration refuses it): `http://` and the address the listener bound.
    pub node_url: String,
    /// Prefix of every Redis key (`PARLEY_REDIS_PREFIX`, `parley`): several installations, or
    /// test runs, can share one Redis.
    pub key_prefix: String,
    /// How often the node writes its registry entry (1 s)...
    pub heartbeat: Duration,
    /// ...and how long the entry lives without one (3 s, three missed heartbeats): a node
    /// silent this long is dead, and its meetings go to other nodes at their next join.
    pub node_ttl: Duration,
    /// Lifetime of a meeting's claim unless its owner refreshes it (it does while the meeting
    /// has a hub there): an emptied meeting is free to go elsewhere this long after (15 s).
    pub claim_ttl: Duration,
}

impl ClusterConfig {
    pub fn new(redis_url: Secret, node_id: String, node_url: String) -> Self {
        ClusterConfig {
            redis_url,
            node_id,
            node_url: node_url.trim_end_matches('/').to_owned(),
            key_prefix: "parley".into(),
            heartbeat: Duration::from_secs(1),
            node_ttl: Duration::from_secs(3),
            claim_ttl: Duration::from_secs(15),
        }
    }
}

/// A random node id (`node-` and 12 hex digits) when none is configured.
pub fn random_node_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("node-{}", &id[..12])
}

/// The acquirer's API unless `PARLEY_YOOKASSA_API_URL` says otherwise.
pub const YOOKASSA_API_URL: &str = "https://api.yookassa.ru";

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP + WebSocket listener binds.
    pub http_addr: SocketAddr,
    /// Where the single media UDP socket binds; port 0 picks a free port (tests).
    pub udp_addr: SocketAddr,
    /// Host candidates the SFU announces; empty lets the SFU decide.
    pub announced_ips: Vec<IpAddr>,
    /// `sqlite://path` (created if missing), or `postgres://...` for nodes sharing one database.
    pub database_url: String,
    /// Test hook: a PostgreSQL schema (created if missing) for the server's tables (and the
    /// licensing tables when they share `database_url`), so parallel tests can share one
    /// database. Not settable from the environment.
    pub database_schema: Option<String>,
    /// Base of the links handed out (host and invite links).
    pub public_url: String,
    /// Signing key for join tokens; generated once and kept in the database when not configured.
    pub jwt_secret: Option<Secret>,
    /// Key of the stored CRM credentials and webhook secrets (`PARLEY_SECRETS_KEY`, 32 bytes in
    /// base64); none: a key file generated beside the SQLite database (see [`crate::secrets`]).
    pub secrets_key: Option<Secret>,
    /// Bearer token allowing operator-level calls (listing meetings); listing is off without it.
    pub admin_token: Option<Secret>,
    /// Directory served as the web app.
    pub web_root: PathBuf,
    /// Lifetime of join tokens.
    pub token_ttl: Duration,
    /// How long a participant whose socket dropped keeps its seat.
    pub resume_grace: Duration,
    /// How long a fresh socket may wait before sending `join`.
    pub join_timeout: Duration,
    /// Per-connection flood limit: sustained frames per second and burst size.
    pub ws_rate_per_sec: f64,
    pub ws_burst: f64,
    /// Meetings need an account API key and a host holding a seat (`PARLEY_REQUIRE_LICENSE`).
    /// Off by default so a single self-hosted install keeps its open landing page.
    pub require_license: bool,
    /// Ceiling of one card payment for individuals and sole proprietors (agreement 4.7);
    /// an account's own limit, when set, takes precedence.
    pub card_limit: Money,
    /// The card acquirer (`PARLEY_YOOKASSA_SHOP_ID`, `PARLEY_YOOKASSA_SECRET_KEY`,
    /// `PARLEY_YOOKASSA_API_URL`); none: card payments are unavailable.
    pub yookassa: Option<YooKassaConfig>,
    /// Test hook: a pending card payment is looked up at the acquirer again (notifications can
    /// be lost) once it has been this long without news (60 s). Not settable from outside.
    pub card_payment_recheck: Duration,
    /// Where the licensing tables live; defaults to `database_url`. May differ from it (e.g.
    /// licensing on PostgreSQL, meetings on SQLite).
    pub licensing_database_url: Option<String>,
    /// Test hook: a PostgreSQL schema (created if missing) for the licensing tables, so parallel
    /// tests can share one database. Not settable from the environment.
    pub licensing_schema: Option<String>,
    /// Test hook: see [`LicensingClock`]. `None` reads the real Moscow date.
    pub licensing_clock: Option<LicensingClock>,
    /// Test hook: how long a "minute" of a tariff's maximum meeting length lasts (60 s; tests
    /// shrink it so a time-limited meeting ends within the test). Not settable from outside.
    pub meeting_minute: Duration,
    /// A user session ends after this long without use (`PARLEY_SESSION_IDLE_SECS`, 12 h)...
    pub session_idle: Duration,
    /// ...and at the latest this long after sign-in (`PARLEY_SESSION_MAX_SECS`, 7 days).
    pub session_max: Duration,
    /// Sign-in lockout after repeated failures (agreement appendix 1, 1.6; numbers ours).
    pub lockout: crate::users::LockoutPolicy,
    /// `smtp://host:port` (lettre's URL form) for invitation and reset mail; none: mail fails.
    pub smtp_url: Option<Secret>,
    /// The `From` of that mail.
    pub smtp_from: String,
    /// Test hook: moves the users' "now" (sessions, lockout, tokens). Not settable from outside.
    pub users_clock: Option<crate::users::UsersClock>,
    /// Test hook: the mail sender (e.g. the in-memory one), taking precedence over SMTP.
    pub email_sender: Option<crate::users::EmailSenderHook>,
    /// The server sits behind a reverse proxy that sets `X-Forwarded-For` (`PARLEY_TRUSTED_PROXY`):
    /// only then is that header believed for the audit log's "from"; otherwise anyone could
    /// write any address into it.
    pub trusted_proxy: bool,
    /// Outbox attempts before a message is marked failed (`PARLEY_OUTBOX_MAX_ATTEMPTS`, 8).
    pub outbox_max_attempts: u32,
    /// Wait after the first failed attempt, doubling after each further one
    /// (`PARLEY_OUTBOX_BASE_DELAY_MS`, 5 s)...
    pub outbox_base_delay: Duration,
    /// ...up to this (`PARLEY_OUTBOX_MAX_DELAY_SECS`, 30 min).
    pub outbox_max_delay: Duration,
    /// Deadline of one CRM or webhook call (`PARLEY_CRM_TIMEOUT_SECS`, 10 s).
    pub crm_timeout: Duration,
    /// How often licensing reminders due are moved into customer webhooks, and the monthly
    /// inactive-seat review is checked (1 h).
    pub license_events_interval: Duration,
    /// Where recordings are written (`PARLEY_RECORDINGS_DIR`); `None`: a `recordings/`
    /// directory next to the SQLite file (see [`Config::recordings_dir`]).
    pub recordings_dir: Option<PathBuf>,
    /// The ffmpeg that makes a recording's composite video (`PARLEY_FFMPEG`). `None` looks for
    /// `ffmpeg` in `PATH`; an empty path turns the composite off. Without ffmpeg a recording
    /// has its per-track files and the mixed audio only.
    pub ffmpeg: Option<PathBuf>,
    /// Lifetime of a signed recording download link (`PARLEY_RECORDING_LINK_SECS`, 15 min).
    pub recording_link_ttl: Duration,
    /// Meetings without a license may be recorded (`PARLEY_RECORD_UNLICENSED`, off): for a
    /// self-hosted install without licensing. Such recordings have no quota and no retention,
    /// and only the operator sees them.
    pub record_unlicensed: bool,
    /// Test hook: moves the recordings' "now" (retention, link expiry). Not settable from outside.
    pub recordings_clock: Option<crate::users::UsersClock>,
    /// Test hook: how often a running recording's size is checked against the quota (5 s).
    pub recording_quota_check: Duration,
    /// Test hook: how often expired recordings are looked for (1 h).
    pub recording_retention_check: Duration,
    /// Test hook: bytes in one "MB" of a tariff's storage quota (1 MiB; tests shrink it so a
    /// quota fills within seconds). Not settable from outside.
    pub storage_megabyte: u64,
    /// Redis routing between nodes (`PARLEY_REDIS_URL` and friends); none: a single process.
    pub cluster: Option<ClusterConfig>,
    /// A TURN relay for clients whose network blocks the SFU's UDP port; none: no relay.
    pub turn: Option<TurnConfig>,
}

/// coturn with `use-auth-secret`: Parley gives every participant time-limited credentials.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// `turn:` / `turns:` URLs of the relay (`PARLEY_TURN_URLS`, comma-separated).
    pub urls: Vec<String>,
    /// coturn's `static-auth-secret` (`PARLEY_TURN_SECRET`).
    pub secret: Secret,
    /// How long a credential stays valid (`PARLEY_TURN_TTL_SECS`, 12 h): at least a long
    /// meeting, as a relayed client re-authenticates its allocation while it lasts.
    pub ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            udp_addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 7882),
            announced_ips: Vec::new(),
            database_url: "sqlite://parley.db".into(),
            public_url: "http://127.0.0.1:8080".into(),
            jwt_secret: None,
            secrets_key: None,
            admin_token: None,
            web_root: default_web_root(),
            token_ttl: Duration::from_secs(24 * 3600),
            resume_grace: Duration::from_secs(30),
            join_timeout: Duration::from_secs(10),
            ws_rate_per_sec: 50.0,
            ws_burst: 100.0,
            require_license: false,
            // 100 000.00 RUB.
            card_limit: Money::from_kopecks(10_000_000),
            yookassa: None,
            card_payment_recheck: Duration::from_secs(60),
            licensing_database_url: None,
            licensing_schema: None,
            database_schema: None,
            licensing_clock: None,
            meeting_minute: Duration::from_secs(60),
            session_idle: Duration::from_secs(12 * 3600),
            session_max: Duration::from_secs(7 * 24 * 3600),
            lockout: crate::users::LockoutPolicy::default(),
            smtp_url: None,
            smtp_from: "Parley <no-reply@localhost>".into(),
            users_clock: None,
            email_sender: None,
            trusted_proxy: false,
            outbox_max_attempts: 8,
            outbox_base_delay: Duration::from_secs(5),
            outbox_max_delay: Duration::from_secs(30 * 60),
            crm_timeout: Duration::from_secs(10),
            license_events_interval: Duration::from_secs(3600),
            recordings_dir: None,
            ffmpeg: None,
            recording_link_ttl: Duration::from_secs(15 * 60),
            record_unlicensed: false,
            recordings_clock: None,
            recording_quota_check: Duration::from_secs(5),
            recording_retention_check: Duration::from_secs(3600),
            storage_megabyte: 1024 * 1024,
            cluster: None,
            turn: None,
        }
    }
}

/// `<workspace>/web`, located at compile time so `cargo run` works from any directory.
pub fn default_web_root() -> PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).join("web")
}

/// Command-line flags; every flag also reads its `PARLEY_*` variable (clap's `env`).
#[derive(Debug, Parser, Default)]
#[command(name = "parley", about = "Parley video meetings server", version)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "PARLEY_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTP listen address, e.g. 127.0.0.1:8080.
    #[arg(long, env = "PARLEY_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// UDP media port (0 = random).
    #[arg(long, env = "PARLEY_UDP_PORT")]
    pub udp_port: Option<u16>,
    /// UDP media bind address (port taken from --udp-port when given).
    #[arg(long, env = "PARLEY_UDP_ADDR")]
    pub udp_addr: Option<SocketAddr>,
    /// Announced IP addresses for ICE host candidates, comma separated.
    #[arg(long, env = "PARLEY_ANNOUNCED_IPS", value_delimiter = ',')]
    pub announced_ips: Option<Vec<IpAddr>>,
    /// Database URL, e.g. sqlite://parley.db.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// PostgreSQL schema to keep every table in (created if missing), so that several
    /// installations can share one database.
    #[arg(long, env = "PARLEY_DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
    /// Public base URL used in links.
    #[arg(long, env = "PARLEY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// JWT signing secret (generated and stored in the database when absent).
    #[arg(long, env = "PARLEY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// Key for the stored CRM secrets, 32 bytes in base64 (default: a key file generated
    /// beside the SQLite database).
    #[arg(long, env = "PARLEY_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<Secret>,
    /// Operator bearer token for listing meetings.
    #[arg(long, env = "PARLEY_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
    /// Directory with the web app.
    #[arg(long, env = "PARLEY_WEB_ROOT")]
    pub web_root: Option<PathBuf>,
    /// Join token lifetime in seconds.
    #[arg(long, env = "PARLEY_TOKEN_TTL_SECS")]
    pub token_ttl_secs: Option<u64>,
    /// Seconds a dropped participant keeps its seat.
    #[arg(long, env = "PARLEY_RESUME_GRACE_SECS")]
    pub resume_grace_secs: Option<u64>,
    /// Refuse meetings whose host holds no seat on an active license.
    #[arg(long, env = "PARLEY_REQUIRE_LICENSE")]
    pub require_license: Option<bool>,
    /// Largest card payment in RUB, e.g. 100000.00.
    #[arg(long, env = "PARLEY_CARD_LIMIT")]
    pub card_limit: Option<String>,
    /// YooKassa shop id for card payments (with the secret key; both or neither).
    #[arg(long, env = "PARLEY_YOOKASSA_SHOP_ID")]
    pub yookassa_shop_id: Option<String>,
    /// YooKassa secret key.
    #[arg(long, env = "PARLEY_YOOKASSA_SECRET_KEY", hide_env_values = true)]
    pub yookassa_secret_key: Option<Secret>,
    /// YooKassa API base URL (default https://api.yookassa.ru).
    #[arg(long, env = "PARLEY_YOOKASSA_API_URL")]
    pub yookassa_api_url: Option<String>,
    /// Database of the licensing tables (default: DATABASE_URL); sqlite:// or postgres://.
    #[arg(long, env = "PARLEY_LICENSING_DATABASE_URL", hide_env_values = true)]
    pub licensing_database_url: Option<String>,
    /// Seconds a user session lasts without use (default 43200).
    #[arg(long, env = "PARLEY_SESSION_IDLE_SECS")]
    pub session_idle_secs: Option<u64>,
    /// Seconds a user session lasts at most (default 604800).
    #[arg(long, env = "PARLEY_SESSION_MAX_SECS")]
    pub session_max_secs: Option<u64>,
    /// SMTP server for invitation and password-reset mail, e.g. smtp://127.0.0.1:25.
    #[arg(long, env = "PARLEY_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<Secret>,
    /// Sender of that mail, e.g. "Parley <no-reply@example.com>".
    #[arg(long, env = "PARLEY_SMTP_FROM")]
    pub smtp_from: Option<String>,

    #[arg(long, env = "PARLEY_OUTBOX_MAX_ATTEMPTS")]
    pub outbox_max_attempts: Option<u32>,

    #[arg(long, env = "PARLEY_OUTBOX_BASE_DELAY_MS")]
    pub outbox_base_delay_ms: Option<u64>,

    #[arg(long, env = "PARLEY_OUTBOX_MAX_DELAY_SECS")]
    pub outbox_max_delay_secs: Option<u64>,

    #[arg(long, env = "PARLEY_CRM_TIMEOUT_SECS")]
    pub crm_timeout_secs: Option<u64>,

    /// Believe X-Forwarded-For (only behind a reverse proxy that sets it).
    #[arg(long, env = "PARLEY_TRUSTED_PROXY")]
    pub trusted_proxy: Option<bool>,
    /// Directory for recordings (default: `recordings/` next to the SQLite file).
    #[arg(long, env = "PARLEY_RECORDINGS_DIR")]
    pub recordings_dir: Option<PathBuf>,
    /// ffmpeg for the composite video of recordings (default: `ffmpeg` from PATH; empty: off).
    #[arg(long, env = "PARLEY_FFMPEG")]
    pub ffmpeg: Option<PathBuf>,
    /// Seconds a signed recording download link stays valid (default 900).
    #[arg(long, env = "PARLEY_RECORDING_LINK_SECS")]
    pub recording_link_secs: Option<u64>,
    /// Allow recording meetings that run without a license (default false).
    #[arg(long, env = "PARLEY_RECORD_UNLICENSED")]
    pub record_unlicensed: Option<bool>,
    /// Redis for routing between several nodes, e.g. redis://127.0.0.1:6379 (needs a shared
    /// PostgreSQL database; unset: a single process).
    #[arg(long, env = "PARLEY_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,
    /// This node's id in the cluster (default: random).
    #[arg(long, env = "PARLEY_NODE_ID")]
    pub node_id: Option<String>,
    /// This node's own http(s) base URL that clients can reach (required with Redis).
    #[arg(long, env = "PARLEY_NODE_URL")]
    pub node_url: Option<String>,
    /// Prefix of the Redis keys (default parley).
    #[arg(long, env = "PARLEY_REDIS_PREFIX")]
    pub redis_prefix: Option<String>,
    /// TURN relay URLs handed to clients, comma-separated (turn:host:3478?transport=udp,...).
    #[arg(long, env = "PARLEY_TURN_URLS", value_delimiter = ',')]
    pub turn_urls: Option<Vec<String>>,
    /// coturn's static-auth-secret, from which client credentials are derived.
    #[arg(long, env = "PARLEY_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<Secret>,
    /// Lifetime of a TURN credential in seconds (default 43200).
    #[arg(long, env = "PARLEY_TURN_TTL_SECS")]
    pub turn_ttl_secs: Option<u64>,
    /// Write the OpenAPI document to this path and exit.
    #[arg(long)]
    pub dump_openapi: Option<PathBuf>,
}

/// The TOML file: the same keys as the flags, all optional.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub http_addr: Option<SocketAddr>,
    pub udp_port: Option<u16>,
    pub udp_addr: Option<SocketAddr>,
    pub announced_ips: Option<Vec<IpAddr>>,
    pub database_url: Option<String>,
    pub database_schema: Option<String>,
    pub public_url: Option<String>,
    pub jwt_secret: Option<Secret>,
    pub secrets_key: Option<Secret>,
    pub admin_token: Option<Secret>,
    pub web_root: Option<PathBuf>,
    pub token_ttl_secs: Option<u64>,
    pub resume_grace_secs: Option<u64>,
    pub require_license: Option<bool>,
    pub card_limit: Option<String>,
    pub yookassa_shop_id: Option<String>,
    pub yookassa_secret_key: Option<Secret>,
    pub yookassa_api_url: Option<String>,
    pub licensing_database_url: Option<String>,
    pub session_idle_secs: Option<u64>,
    pub session_max_secs: Option<u64>,
    pub smtp_url: Option<Secret>,
    pub smtp_from: Option<String>,
    pub trusted_proxy: Option<bool>,
    pub outbox_max_attempts: Option<u32>,
    pub outbox_base_delay_ms: Option<u64>,
    pub outbox_max_delay_secs: Option<u64>,
    pub crm_timeout_secs: Option<u64>,
    pub recordings_dir: Option<PathBuf>,
    pub ffmpeg: Option<PathBuf>,
    pub recording_link_secs: Option<u64>,
    pub record_unlicensed: Option<bool>,
    pub redis_url: Option<Secret>,
    pub node_id: Option<String>,
    pub node_url: Option<String>,
    pub redis_prefix: Option<String>,
    pub turn_urls: Option<Vec<String>>,
    pub turn_secret: Option<Secret>,
    pub turn_ttl_secs: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Builds the configuration from parsed flags (which already include environment variables)
    /// and the TOML file they name.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str::<FileConfig>(&text).map_err(|source| ConfigError::Parse {
                    path: path.clone(),
                    source: Box::new(source),
                })?
            }
            None => FileConfig::default(),
        };
        Self::merge(cli, file)
    }

    fn merge(cli: &Cli, file: FileConfig) -> Result<Config, ConfigError> {
        let d = Config::default();
        let mut udp_addr = cli.udp_addr.or(file.udp_addr).unwrap_or(d.udp_addr);
        if let Some(port) = cli.udp_port.or(file.udp_port) {
            udp_addr.set_port(port);
        }
        let http_addr = cli.http_addr.or(file.http_addr).unwrap_or(d.http_addr);
        // Without a configured public URL, links point at the listener itself when that is a
        // concrete address (a wildcard bind says nothing about how clients reach us).
        let public_url = cli
            .public_url
            .clone()
            .or(file.public_url)
            .unwrap_or_else(|| {
                if http_addr != d.http_addr
                    && !http_addr.ip().is_unspecified()
                    && http_addr.port() != 0
                {
                    format!("http://{http_addr}")
                } else {
                    d.public_url
                }
            });
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(ConfigError::Invalid(format!(
                "public_url must start with http:// or https://, got {public_url:?}"
            )));
        }
        let database_url = cli
            .database_url
            .clone()
            .or(file.database_url)
            .unwrap_or(d.database_url);
        let cluster = cluster_config(
            cli.redis_url.clone().or(file.redis_url),
            cli.node_id.clone().or(file.node_id),
            cli.node_url.clone().or(file.node_url),
            cli.redis_prefix.clone().or(file.redis_prefix),
            &database_url,
        )?;
        let turn = turn_config(
            cli.turn_urls.clone().or(file.turn_urls),
            cli.turn_secret.clone().or(file.turn_secret),
            cli.turn_ttl_secs.or(file.turn_ttl_secs),
        )?;
        if crate::store::Backend::of_url(&database_url).is_none() {
            return Err(ConfigError::Invalid(format!(
                "database_url must be sqlite:// or postgres://, got {:?}",
                mask_url(&database_url)
            )));
        }
        let licensing_database_url = cli
            .licensing_database_url
            .clone()
            .or(file.licensing_database_url);
        if let Some(url) = &licensing_database_url
            && !(url.starts_with("sqlite:")
                || url.starts_with("postgres:")
                || url.starts_with("postgresql:"))
        {
            return Err(ConfigError::Invalid(format!(
                "licensing_database_url must be sqlite:// or postgres://, got {:?}",
                mask_url(url)
            )));
        }
        let card_limit = match cli.card_limit.clone().or(file.card_limit) {
            None => d.card_limit,
            Some(s) => match s.parse::<Money>() {
                Ok(m) if !m.is_negative() => m,
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "card_limit must be a non-negative amount with at most two decimals, got {s:?}"
                    )));
                }
            },
        };
        let yookassa = yookassa_config(
            cli.yookassa_shop_id.clone().or(file.yookassa_shop_id),
            cli.yookassa_secret_key.clone().or(file.yookassa_secret_key),
            cli.yookassa_api_url.clone().or(file.yookassa_api_url),
        )?;
        let secrets_key = cli.secrets_key.clone().or(file.secrets_key);
        if let Some(k) = &secrets_key
            && let Err(e) = crate::secrets::SecretsKey::from_base64(k.expose())
        {
            // The message says what is expected, never what was given.
            return Err(ConfigError::Invalid(format!(
                "secrets_key (PARLEY_SECRETS_KEY): {e}"
            )));
        }
        let secs = |v: Option<u64>, def: Duration| v.map(Duration::from_secs).unwrap_or(def);
        let session_idle = secs(
            cli.session_idle_secs.or(file.session_idle_secs),
            d.session_idle,
        );
        let session_max = secs(
            cli.session_max_secs.or(file.session_max_secs),
            d.session_max,
        );
        if session_idle.is_zero() || session_max.is_zero() {
            return Err(ConfigError::Invalid(
                "session_idle_secs and session_max_secs must be positive".into(),
            ));
        }
        let outbox_max_attempts = cli
            .outbox_max_attempts
            .or(file.outbox_max_attempts)
            .unwrap_or(d.outbox_max_attempts);
        let outbox_base_delay = cli
            .outbox_base_delay_ms
            .or(file.outbox_base_delay_ms)
            .map(Duration::from_millis)
            .unwrap_or(d.outbox_base_delay);
        let outbox_max_delay = secs(
            cli.outbox_max_delay_secs.or(file.outbox_max_delay_secs),
            d.outbox_max_delay,
        );
        let crm_timeout = secs(
            cli.crm_timeout_secs.or(file.crm_timeout_secs),
            d.crm_timeout,
        );
        let recording_link_ttl = secs(
            cli.recording_link_secs.or(file.recording_link_secs),
            d.recording_link_ttl,
        );
        if recording_link_ttl.is_zero() {
            return Err(ConfigError::Invalid(
                "recording_link_secs must be positive".into(),
            ));
        }
        if outbox_max_attempts == 0 || crm_timeout.is_zero() || outbox_max_delay < outbox_base_delay
        {
            return Err(ConfigError::Invalid(
                "outbox_max_attempts and crm_timeout_secs must be positive, and \
                 outbox_max_delay_secs at least the base delay"
                    .into(),
            ));
        }
        Ok(Config {
            http_addr,
            udp_addr,
            announced_ips: cli
                .announced_ips
                .clone()
                .or(file.announced_ips)
                .unwrap_or_default(),
            database_url,
            database_schema: cli.database_schema.clone().or(file.database_schema),
            public_url: public_url.trim_end_matches('/').to_owned(),
            jwt_secret: cli.jwt_secret.clone().or(file.jwt_secret),
            secrets_key,
            admin_token: cli.admin_token.clone().or(file.admin_token),
            web_root: cli.web_root.clone().or(file.web_root).unwrap_or(d.web_root),
            token_ttl: secs(cli.token_ttl_secs.or(file.token_ttl_secs), d.token_ttl),
            resume_grace: secs(
                cli.resume_grace_secs.or(file.resume_grace_secs),
                d.resume_grace,
            ),
            require_license: cli
                .require_license
                .or(file.require_license)
                .unwrap_or(d.require_license),
            card_limit,
            yookassa,
            licensing_database_url,
            session_idle,
            session_max,
            smtp_url: cli.smtp_url.clone().or(file.smtp_url),
            smtp_from: cli
                .smtp_from
                .clone()
                .or(file.smtp_from)
                .unwrap_or(d.smtp_from.clone()),
            trusted_proxy: cli
                .trusted_proxy
                .or(file.trusted_proxy)
                .unwrap_or(d.trusted_proxy),
            outbox_max_attempts,
            outbox_base_delay,
            outbox_max_delay,
            crm_timeout,
            recordings_dir: cli.recordings_dir.clone().or(file.recordings_dir),
            ffmpeg: cli.ffmpeg.clone().or(file.ffmpeg),
            recording_link_ttl,
            record_unlicensed: cli
                .record_unlicensed
                .or(file.record_unlicensed)
                .unwrap_or(d.record_unlicensed),
            cluster,
            turn,
            ..d
        })
    }

    /// A printable view: secrets masked, passwords in URLs hidden.
    pub fn describe(&self) -> String {
        format!(
            "http_addr={} udp_addr={} announced_ips={:?} database_url={} public_url={} \
             jwt_secret={} secrets_key={} admin_token={} web_root={} token_ttl={}s resume_grace={}s \
             require_license={} card_limit={} licensing_database_url={} session_idle={}s \
             session_max={}s smtp_url={} smtp_from={} recordings_dir={} ffmpeg={} yookassa={} \
             cluster={}{}",
            self.http_addr,
            self.udp_addr,
            self.announced_ips,
            mask_url(&self.database_url),
            self.public_url,
            if self.jwt_secret.is_some() {
                "********"
            } else {
                "<stored in database>"
            },
            if self.secrets_key.is_some() {
                "********"
            } else {
                "<key file beside the database>"
            },
            if self.admin_token.is_some() {
                "********"
            } else {
                "<none: listing disabled>"
            },
            self.web_root.display(),
            self.token_ttl.as_secs(),
            self.resume_grace.as_secs(),
            self.require_license,
            self.card_limit,
            mask_url(self.licensing_database_url()),
            self.session_idle.as_secs(),
            self.session_max.as_secs(),
            // The whole URL is masked: it may carry credentials in forms mask_url misses.
            if self.smtp_url.is_some() {
                "********"
            } else {
                "<none: invitation and reset mail disabled>"
            },
            self.smtp_from,
            self.recordings_dir().display(),
            match self.ffmpeg_path() {
                Some(p) => p.display().to_string(),
                None => "<none: no composite video>".into(),
            },
            match &self.yookassa {
                // The shop id is not a secret (it is on every receipt); the key is.
                Some(y) => format!("shop {} at {} (key ********)", y.shop_id, y.api_url),
                None => "<none: card payments unavailable>".into(),
            },
            match &self.cluster {
                // The Redis URL may carry a password: only the node's own names are shown.
                Some(c) => format!(
                    "node {} at {} (redis ********, prefix {})",
                    c.node_id, c.node_url, c.key_prefix
                ),
                None => "<none: single node>".into(),
            },
            match &self.licensing_clock {
                Some(c) => format!(" licensing_today={} (test clock)", c.today()),
                None => String::new(),
            },
        )
    }
}

impl Config {
    /// This node's name on what it writes to a shared database (sessions, recordings, job
    /// runs): its cluster id, or `local` for a process on its own.
    pub fn node_id(&self) -> &str {
        self.cluster
            .as_ref()
            .map_or("local", |c| c.node_id.as_str())
    }

    /// Where recordings go: the configured directory, else `recordings/` beside the SQLite file
    /// of `database_url` (the working directory for an in-memory database).
    pub fn recordings_dir(&self) -> PathBuf {
        if let Some(dir) = &self.recordings_dir {
            return dir.clone();
        }
        let path = self
            .database_url
            .strip_prefix("sqlite://")
            .or_else(|| self.database_url.strip_prefix("sqlite:"))
            .unwrap_or_default();
        let path = path.split('?').next().unwrap_or_default();
        let parent = if path.is_empty() || path.starts_with(':') {
            None
        } else {
            std::path::Path::new(path).parent()
        };
        parent
            .unwrap_or(std::path::Path::new(""))
            .join("recordings")
    }

    /// The ffmpeg to run for composites: the configured one (empty: none), else `ffmpeg` found
    /// in `PATH`. A configured path that does not exist counts as none.
    pub fn ffmpeg_path(&self) -> Option<PathBuf> {
        match &self.ffmpeg {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) if p.components().count() > 1 => p.is_file().then(|| p.clone()),
            Some(p) => find_in_path(p),
            None => find_in_path(std::path::Path::new("ffmpeg")),
        }
    }

    /// The licensing tables' database: its own URL when configured, else the server's.
    pub fn licensing_database_url(&self) -> &str {
        self.licensing_database_url
            .as_deref()
            .unwrap_or(&self.database_url)
    }
}

/// The acquirer's settings: the shop id and secret key together or not at all (one without the
/// other is a typo, not a choice), and an http(s) API URL.
fn yookassa_config(
    shop_id: Option<String>,
    secret_key: Option<Secret>,
    api_url: Option<String>,
) -> Result<Option<YooKassaConfig>, ConfigError> {
    let shop_id = shop_id
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    let secret_key = secret_key.filter(|k| !k.expose().trim().is_empty());
    let (shop_id, secret_key) = match (shop_id, secret_key) {
        (None, None) => return Ok(None),
        (Some(id), Some(key)) => (id, key),
        _ => {
            return Err(ConfigError::Invalid(
                "yookassa_shop_id and yookassa_secret_key (PARLEY_YOOKASSA_SHOP_ID, \
                 PARLEY_YOOKASSA_SECRET_KEY) are set together or not at all"
                    .into(),
            ));
        }
    };
    if shop_id.len() > 64 || !shop_id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ConfigError::Invalid(
            "yookassa_shop_id must be the shop's id from the YooKassa account (digits)".into(),
        ));
    }
    let api_url = api_url
        .map(|u| u.trim().trim_end_matches('/').to_owned())
        .unwrap_or_else(|| YOOKASSA_API_URL.to_owned());
    if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
        return Err(ConfigError::Invalid(format!(
            "yookassa_api_url must start with https:// (or http://), got {:?}",
            mask_url(&api_url)
        )));
    }
    Ok(Some(YooKassaConfig {
        shop_id,
        secret_key,
        api_url,
    }))
}

/// The cluster settings when Redis is configured. Every node must read the same durable state,
/// so a node-local SQLite file is refused; each node needs its own reachable URL.
fn turn_config(
    urls: Option<Vec<String>>,
    secret: Option<Secret>,
    ttl_secs: Option<u64>,
) -> Result<Option<TurnConfig>, ConfigError> {
    let urls: Vec<String> = urls
        .unwrap_or_default()
        .into_iter()
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    let secret = secret.filter(|s| !s.expose().is_empty());
    let (urls, secret) = match (urls.is_empty(), secret) {
        (true, None) => return Ok(None),
        (false, Some(secret)) => (urls, secret),
        _ => {
            return Err(ConfigError::Invalid(
                "set both PARLEY_TURN_URLS and PARLEY_TURN_SECRET (coturn's static-auth-secret), \
                 or neither"
                    .into(),
            ));
        }
    };
    if let Some(bad) = urls.iter().find(|u| {
        !(u.starts_with("turn:") || u.starts_with("turns:") || u.starts_with("stun:"))
            || u.len() > 256
    }) {
        return Err(ConfigError::Invalid(format!(
            "turn_urls (PARLEY_TURN_URLS) must be turn:, turns: or stun: URLs, got {bad:?}"
        )));
    }
    if secret.expose().len() < 16 {
        return Err(ConfigError::Invalid(
            "turn_secret (PARLEY_TURN_SECRET) must be at least 16 characters: anyone who \
             guesses it can use the relay"
                .into(),
        ));
    }
    let ttl = Duration::from_secs(match ttl_secs {
        None => 12 * 3600,
        Some(s) if (60..=7 * 24 * 3600).contains(&s) => s,
        Some(s) => {
            return Err(ConfigError::Invalid(format!(
                "turn_ttl_secs (PARLEY_TURN_TTL_SECS) must be 60 to 604800, got {s}"
            )));
        }
    });
    Ok(Some(TurnConfig { urls, secret, ttl }))
}

fn cluster_config(
    redis_url: Option<Secret>,
    node_id: Option<String>,
    node_url: Option<String>,
    prefix: Option<String>,
    database_url: &str,
) -> Result<Option<ClusterConfig>, ConfigError> {
    let Some(redis_url) = redis_url.filter(|u| !u.expose().trim().is_empty()) else {
        return Ok(None);
    };
    let url = redis_url.expose();
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(ConfigError::Invalid(format!(
            "redis_url (PARLEY_REDIS_URL) must start with redis:// or rediss://, got {:?}",
            mask_url(url)
        )));
    }
    if database_url.starts_with("sqlite:") {
        return Err(ConfigError::Invalid(
            "PARLEY_REDIS_URL runs several nodes, which must share one PostgreSQL database: \
             set DATABASE_URL to postgres://... (a sqlite:// file is this node's alone, and \
             nodes would disagree about meetings, seats and limits)"
                .into(),
        ));
    }
    let Some(node_url) = node_url
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty())
    else {
        return Err(ConfigError::Invalid(
            "with PARLEY_REDIS_URL, set PARLEY_NODE_URL to this node's own http(s) address \
             that clients can reach (participants are redirected there)"
                .into(),
        ));
    };
    if !(node_url.starts_with("http://") || node_url.starts_with("https://")) {
        return Err(ConfigError::Invalid(format!(
            "node_url (PARLEY_NODE_URL) must start with http:// or https://, got {node_url:?}"
        )));
    }
    let node_id = match node_id.map(|s| s.trim().to_owned()) {
        None => random_node_id(),
        Some(id) if valid_name(&id) => id,
        Some(id) => {
            return Err(ConfigError::Invalid(format!(
                "node_id (PARLEY_NODE_ID) must be 1 to 64 letters, digits, '-' or '_', got {id:?}"
            )));
        }
    };
    let mut cluster = ClusterConfig::new(redis_url, node_id, node_url);
    if let Some(prefix) = prefix {
        if !valid_name(&prefix) {
            return Err(ConfigError::Invalid(format!(
                "redis_prefix (PARLEY_REDIS_PREFIX) must be 1 to 64 letters, digits, '-' or '_', got {prefix:?}"
            )));
        }
        cluster.key_prefix = prefix;
    }
    Ok(Some(cluster))
}

fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `name` in one of the `PATH` directories.
fn find_in_path(name: &std::path::Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Hides a password in `scheme://user:password@host` URLs.
pub(crate) fn mask_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && let Some((user, _)) = userinfo.split_once(':')
    {
        return format!("{scheme}://{user}:********@{host}");
    }
    url.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_needs_urls_and_a_real_secret_together() {
        let with = |urls: Option<&str>, secret: Option<&str>| {
            let cli = Cli {
                turn_urls: urls.map(|u| u.split(',').map(str::to_owned).collect()),
                turn_secret: secret.map(Secret::new),
                ..Cli::default()
            };
            Config::merge(&cli, FileConfig::default())
        };
        let none = with(None, None).expect("no relay is fine");
        assert!(none.turn.is_none());
        let c = with(
            Some("turn:turn.example.com:3478?transport=udp,turns:turn.example.com:5349"),
            Some("a-long-enough-shared-secret"),
        )
        .expect("valid");
        let turn = c.turn.expect("relay configured");
        assert_eq!(turn.urls.len(), 2);
        assert_eq!(turn.ttl, Duration::from_secs(12 * 3600));
        for (urls, secret, says) in [
            (Some("turn:t.example.com"), None, "PARLEY_TURN_SECRET"),
            (
                None,
                Some("a-long-enough-shared-secret"),
                "PARLEY_TURN_URLS",
            ),
            (
                Some("http://t.example.com"),
                Some("a-long-enough-shared-secret"),
                "turn:",
            ),
            (Some("turn:t.example.com"), Some("short"), "16 characters"),
        ] {
            match with(urls, secret) {
                Err(ConfigError::Invalid(m)) => assert!(m.contains(says), "{m}"),
                other => panic!("{urls:?} {secret:?}: expected a refusal, got {other:?}"),
            }
        }
    }

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let cli = Cli {
            udp_port: Some(0),
            ..Cli::default()
        };
        let file = FileConfig {
            udp_port: Some(9999),
            public_url: Some("https://meet.example.com/".into()),
            ..FileConfig::default()
        };
        let c = Config::merge(&cli, file).expect("valid");
        assert_eq!(c.udp_addr.port(), 0);
        assert_eq!(c.public_url, "https://meet.example.com");
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn toml_file_is_read_and_unknown_keys_refused() {
        let dir = std::env::temp_dir().join(format!("parley-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("parley.toml");
        std::fs::write(
            &path,
            "http_addr = \"0.0.0.0:9000\"\nannounced_ips = [\"10.0.0.5\"]\nresume_grace_secs = 5\n",
        )
        .expect("write");
        let cli = Cli {
            config: Some(path.clone()),
            ..Cli::default()
        };
        let c = Config::load(&cli).expect("valid");
        assert_eq!(c.http_addr.to_string(), "0.0.0.0:9000");
        assert_eq!(
            c.announced_ips,
            vec!["10.0.0.5".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(c.resume_grace, Duration::from_secs(5));
        std::fs::write(&path, "htp_addr = \"x\"\n").expect("write");
        assert!(matches!(Config::load(&cli), Err(ConfigError::Parse { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn licensing_settings_are_validated() {
        let c = Config::merge(&Cli::default(), FileConfig::default()).expect("valid");
        assert!(
            !c.require_license,
            "off by default: the landing page keeps working"
        );
        assert_eq!(c.card_limit.to_string(), "100000.00");
        assert_eq!(c.licensing_database_url(), c.database_url);
        let cli = Cli {
            require_license: Some(true),
            card_limit: Some("50000.5".into()),
            licensing_database_url: Some("postgres://u:pw@h/db".into()),
            ..Cli::default()
        };
        let c = Config::merge(&cli, FileConfig::default()).expect("valid");
        assert!(c.require_license);
        assert_eq!(c.card_limit.to_string(), "50000.50");
        assert!(!c.describe().contains("pw@"), "{}", c.describe());
        for bad in ["1.005", "-1", "lots"] {
            let cli = Cli {
                card_limit: Some(bad.into()),
                ..Cli::default()
            };
            assert!(matches!(
                Config::merge(&cli, FileConfig::default()),
                Err(ConfigError::Invalid(_))
            ));
        }
        let cli = Cli {
            licensing_database_url: Some("mysql://x".into()),
            ..Cli::default()
        };
        assert!(Config::merge(&cli, FileConfig::default()).is_err());
    }

    #[test]
    fn recordings_go_beside_the_database_unless_configured() {
        let c = Config {
            database_url: "sqlite:///var/lib/parley/parley.db?mode=rwc".into(),
            ..Config::default()
        };
        assert_eq!(
            c.recordings_dir(),
            PathBuf::from("/var/lib/parley/recordings")
        );
        let c = Config {
            database_url: "sqlite://parley.db".into(),
            ..Config::default()
        };
        assert_eq!(c.recordings_dir(), PathBuf::from("recordings"));
        let c = Config {
            recordings_dir: Some("/srv/rec".into()),
            ..Config::default()
        };
        assert_eq!(c.recordings_dir(), PathBuf::from("/srv/rec"));
        let off = Config {
            ffmpeg: Some(PathBuf::new()),
            ..Config::default()
        };
        assert_eq!(off.ffmpeg_path(), None);
        let missing = Config {
            ffmpeg: Some("/nonexistent/bin/ffmpeg".into()),
            ..Config::default()
        };
        assert_eq!(missing.ffmpeg_path(), None);
    }

    #[test]
    fn secrets_are_masked() {
        let c = Config {
            jwt_secret: Some(Secret::new("topsecret")),
            secrets_key: Some(Secret::new("dG9wc2VjcmV0LXRvcHNlY3JldC10b3BzZWNyZXQtMzI=")),
            database_url: "postgres://u:pw@h/db".into(),
            smtp_url: Some(Secret::new("smtps://mailer:topsecret@smtp.example.com:465")),
            ..Config::default()
        };
        let s = c.describe();
        assert!(!s.contains("topsecret") && !s.contains("pw@"), "{s}");
        assert!(s.contains("secrets_key=********"), "{s}");
        assert!(!s.contains("dG9wc2Vj"), "{s}");
        assert!(!format!("{c:?}").contains("topsecret"));
        assert!(!format!("{c:?}").contains("dG9wc2Vj"));
    }

    #[test]
    fn yookassa_is_configured_whole_and_its_key_never_shown() {
        let none = Config::merge(&Cli::default(), FileConfig::default()).expect("valid");
        assert!(none.yookassa.is_none());
        assert!(none.describe().contains("card payments unavailable"));
        let cli = Cli {
            yookassa_shop_id: Some("506751".into()),
            yookassa_secret_key: Some(Secret::new("live_c2VjcmV0LWtleS1vZi10aGUtc2hvcA")),
            ..Cli::default()
        };
        let c = Config::merge(&cli, FileConfig::default()).expect("valid");
        let y = c.yookassa.as_ref().expect("configured");
        assert_eq!(
            (y.shop_id.as_str(), y.api_url.as_str()),
            ("506751", YOOKASSA_API_URL)
        );
        for shown in [c.describe(), format!("{c:?}")] {
            assert!(!shown.contains("live_c2Vj"), "{shown}");
            assert!(shown.contains("506751"), "{shown}");
        }
        let half = Cli {
            yookassa_shop_id: Some("506751".into()),
            ..Cli::default()
        };
        assert!(matches!(
            Config::merge(&half, FileConfig::default()),
            Err(ConfigError::Invalid(_))
        ));
        let bad_url = Cli {
            yookassa_api_url: Some("ftp://api.example".into()),
            ..cli
        };
        assert!(matches!(
            Config::merge(&bad_url, FileConfig::default()),
            Err(ConfigError::Invalid(_))
        ));
    }

    #[test]
    fn redis_needs_a_shared_database_and_a_node_url() {
        let with = |db: Option<&str>, node_url: Option<&str>, node_id: Option<&str>| Cli {
            redis_url: Some(Secret::new("redis://:hunter2@127.0.0.1:6379")),
            database_url: db.map(str::to_owned),
            node_url: node_url.map(str::to_owned),
            node_id: node_id.map(str::to_owned),
            ..Cli::default()
        };
        // The default database is SQLite: refused with a message naming the fix.
        match Config::merge(
            &with(None, Some("http://10.0.0.5:8080"), None),
            FileConfig::default(),
        ) {
            Err(ConfigError::Invalid(m)) => {
                assert!(m.contains("PostgreSQL") && m.contains("sqlite"), "{m}");
                assert!(!m.contains("hunter2"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        let pg = Some("postgres://u@db/parley");
        match cluster_config(
            with(pg, None, None).redis_url,
            None,
            None,
            None,
            "postgres://u@db/parley",
        ) {
            Err(ConfigError::Invalid(m)) => assert!(m.contains("PARLEY_NODE_URL"), "{m}"),
            other => panic!("{other:?}"),
        }
        let c = cluster_config(
            Some(Secret::new("redis://:hunter2@127.0.0.1:6379")),
            Some("node-a".into()),
            Some("http://10.0.0.5:8080/".into()),
            None,
            "postgres://u@db/parley",
        )
        .expect("valid")
        .expect("configured");
        assert_eq!(
            (
                c.node_id.as_str(),
                c.node_url.as_str(),
                c.key_prefix.as_str()
            ),
            ("node-a", "http://10.0.0.5:8080", "parley")
        );
        assert!(!format!("{c:?}").contains("hunter2"));
        let random = cluster_config(
            Some(Secret::new("redis://127.0.0.1")),
            None,
            Some("http://a".into()),
            None,
            "postgres://db",
        )
        .expect("valid")
        .expect("configured");
        assert!(random.node_id.starts_with("node-") && random.node_id.len() == 17);
        for (id, url) in [(Some("a b"), "http://a"), (None, "ftp://a")] {
            assert!(
                cluster_config(
                    Some(Secret::new("redis://127.0.0.1")),
                    id.map(str::to_owned),
                    Some(url.into()),
                    None,
                    "postgres://db",
                )
                .is_err()
            );
        }
        // Without Redis nothing of the cluster is configured.
        let single = Config::merge(&Cli::default(), FileConfig::default()).expect("valid");
        assert!(single.cluster.is_none());
        assert!(single.describe().contains("single node"));
    }

    #[test]
    fn a_secrets_key_must_be_32_bytes_of_base64_and_is_never_echoed() {
        let good = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
        let cli = Cli {
            secrets_key: Some(Secret::new(good)),
            ..Cli::default()
        };
        let c = Config::merge(&cli, FileConfig::default()).expect("valid");
        assert_eq!(c.secrets_key.as_ref().map(Secret::expose), Some(good));
        for bad in ["short-hunter2", "aHVudGVyMg=="] {
            let cli = Cli {
                secrets_key: Some(Secret::new(bad)),
                ..Cli::default()
            };
            match Config::merge(&cli, FileConfig::default()) {
                Err(ConfigError::Invalid(m)) => {
                    assert!(m.contains("32 bytes") && !m.contains(bad), "{m}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
