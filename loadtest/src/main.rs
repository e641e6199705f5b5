//! Parley's load generator. Scenarios:
//!
//! - `quote`: POST /api/v1/accounts/{id}/quotes at a fixed rate (open loop) against a server on
//!   this machine, then prints latency percentiles and the error count.
//!
//! ```text
//! cargo run --release -p parley-loadtest -- quote [--rate 500] [--secs 20]
//!     [--target http://127.0.0.1:8080 --admin-token TOKEN]
//! ```
//!
//! Without `--target` a server is started in this process on a temporary SQLite file (the
//! default deployment), sharing the machine's cores with the generator.

mod quote;

use std::time::Duration;

fn usage() -> ! {
    eprintln!(
        "usage: parley-loadtest quote [--rate N] [--secs N] [--target URL --admin-token TOKEN]"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("quote") => {}
        _ => usage(),
    }
    let mut opts = quote::Options::default();
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--rate" => opts.rate = value.parse().unwrap_or_else(|_| usage()),
            "--secs" => {
                opts.duration = Duration::from_secs(value.parse().unwrap_or_else(|_| usage()))
            }
            "--target" => opts.target = Some(value),
            "--admin-token" => opts.admin_token = Some(value),
            _ => usage(),
        }
    }
    quote::run(opts).await
}
