//! The quote endpoint under a fixed request rate.
//!
//! Open loop: request `i` is due at `start + i / rate` whatever happened to the earlier ones,
//! and its latency is counted from that due time, not from when it was actually sent, so a
//! stalled server shows up as latency instead of silently lowering the rate (coordinated
//! omission). Bounded in count (rate × duration), in time (a per-request timeout and an overall
//! deadline) and in place (loopback targets only).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use parley_signaling::Config;
use parley_signaling::configuration::Secret;
use serde_json::{Value, json};
use tokio::task::JoinSet;

pub struct Options {
    pub rate: u32,
    pub duration: Duration,
    pub target: Option<String>,
    pub admin_token: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            rate: 500,
            duration: Duration::from_secs(20),
            target: None,
            admin_token: None,
        }
    }
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_RATE: u32 = 5_000;
const MAX_DURATION: Duration = Duration::from_secs(120);

/// Refuses anything but this machine: a load generator must not be pointed at someone else.
fn check_loopback(base: &str) -> anyhow::Result<()> {
    let url = reqwest::Url::parse(base).context("--target is not a URL")?;
    let host = url.host_str().unwrap_or_default();
    let ok = host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !ok {
        bail!("--target must be a loopback address, got {host:?}");
    }
    Ok(())
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    bearer: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let r = http
        .request(method, &url)
        .bearer_auth(bearer)
        .json(&body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{url}: {status} {v}");
    }
    Ok(v)
}

/// A tariff and an account to quote for; returns (account id, account bearer).
async fn prepare(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
) -> anyhow::Result<(String, String)> {
    call(
        http,
        reqwest::Method::PUT,
        format!("{base}/api/v1/tariffs/business-12"),
        admin,
        json!({"name": "Business 12", "term_months": 12, "price_per_seat": "12000.00",
            "features": {"max_participants": 100, "max_meeting_minutes": 600,
                "screen_share": true}}),
    )
    .await?;
    let crm_id = format!("load-{}", std::process::id());
    let v = call(
        http,
        reqwest::Method::POST,
        format!("{base}/api/v1/accounts"),
        admin,
        json!({"name": "Load Test LLC", "kind": "legal_entity", "inn": "7707083893",
            "resident": true, "crm_system": "loadtest", "crm_external_id": crm_id}),
    )
    .await?;
    let id = v["account"]["id"]
        .as_str()
        .context("account id")?
        .to_owned();
    let bearer = v["api_key"]["bearer"]
        .as_str()
        .context("api key")?
        .to_owned();
    Ok((id, bearer))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    if opts.rate == 0 || opts.rate > MAX_RATE || opts.duration > MAX_DURATION {
        bail!("rate must be 1..={MAX_RATE} and duration at most {MAX_DURATION:?}");
    }
    // A server of our own unless one is named; kept alive until the end of the run.
    let mut _dir = None;
    let mut server = None;
    let (base, admin) = match (&opts.target, &opts.admin_token) {
        (Some(t), Some(a)) => {
            check_loopback(t)?;
            (t.trim_end_matches('/').to_owned(), a.clone())
        }
        (Some(_), None) => bail!("--target needs --admin-token"),
        _ => {
            let dir = tempfile::tempdir()?;
            let admin = "loadtest-admin-token".to_owned();
            let config = Config {
                http_addr: "127.0.0.1:0".parse()?,
                udp_addr: "127.0.0.1:0".parse()?,
                database_url: format!("sqlite://{}", dir.path().join("parley.db").display()),
                admin_token: Some(Secret::new(admin.clone())),
                ..Config::default()
            };
            let s = parley_signaling::spawn(config).await?;
            let base = s.base_url();
            server = Some(s);
            _dir = Some(dir);
            (base, admin)
        }
    };
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(1024)
        .build()?;
    let (account, bearer) = prepare(&http, &base, &admin).await?;
    let url = format!("{base}/api/v1/accounts/{account}/quotes");
    let body = json!({"type": "initial", "tariff": "business-12", "seats": 10});
    // One untimed request warms the connection pool and the server's prepared statements.
    call(
        &http,
        reqwest::Method::POST,
        url.clone(),
        &bearer,
        body.clone(),
    )
    .await?;

    let total = u64::from(opts.rate) * opts.duration.as_secs();
    let interval = Duration::from_secs(1) / opts.rate;
    println!(
        "quote: {} req/s for {}s ({total} requests, open loop) against {base}",
        opts.rate,
        opts.duration.as_secs()
    );
    let start = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..total {
        let due = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due).await;
        let (http, url, bearer, body) = (http.clone(), url.clone(), bearer.clone(), body.clone());
        tasks.spawn(async move {
            let r = http
                .post(&url)
                .bearer_auth(&bearer)
                .json(&body)
                .send()
                .await;
            let ok = match r {
                Ok(resp) => resp.status().is_success() && resp.bytes().await.is_ok(),
                Err(_) => false,
            };
            (due.elapsed(), ok)
        });
    }
    let sent_in = start.elapsed();
    let mut latencies = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut errors = 0u64;
    let deadline = Instant::now() + REQUEST_TIMEOUT * 2;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok((lat, true)) => latencies.push(lat),
            _ => errors += 1,
        }
        if Instant::now() > deadline {
            errors += tasks.len() as u64;
            tasks.abort_all();
            break;
        }
    }
    latencies.sort_unstable();
    println!(
        "sent in {:.1}s; ok {}, errors {errors}",
        sent_in.as_secs_f64(),
        latencies.len()
    );
    println!(
        "latency p50 {}  p95 {}  p99 {}  max {}",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 95.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    if let Some(s) = server {
        s.shutdown().await;
    }
    Ok(())
}
