//! Logging: JSON lines when `PARLEY_LOG_FORMAT=json` (production), readable text otherwise.
//! `RUST_LOG` filters as usual; the default is `info`.

use tracing_subscriber::EnvFilter;

pub fn init() {
    // rtc's packet pipeline warns once per packet it drops (a retransmission arriving after its
    // original, say): under load that is thousands of lines a second written from the media
    // thread, which then stalls. Its errors still show.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,tower_http=info,sqlx=warn,rtc::peer_connection::handler=error")
    });
    let json = std::env::var("PARLEY_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // `try_init`: tests may start several servers in one process.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
