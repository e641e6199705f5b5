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
//!
//! - `media`: simulated WebRTC participants (see `parley_loadtest::media`), against Parley and,
//!   with `--janus`, against Janus's VideoRoom in the same run.
//!
//! ```text
//! cargo run --release -p parley-loadtest -- media --scenario webinar|meeting|audio
//!     (--n 100 | --ramp 25,50,100,200,300) [--secs 10] [--settle 8] [--janus | --janus-only]
//!     [--server-cpus 0 --generator-cpus 1] [--render 640x360] [--concurrency 8] [--srtp cm|gcm]
//!     [--parley-bin PATH | --target URL [--server-pid PID]] [--out target/loadtest]
//! ```

mod quote;

use std::path::PathBuf;
use std::time::Duration;

use parley_loadtest::media::{self, Options, ParleyTarget, Scenario, System};

fn usage() -> ! {
    eprintln!(
        "usage: parley-loadtest quote [--rate N] [--secs N] [--target URL --admin-token TOKEN]\n\
         \x20      parley-loadtest media --scenario webinar|meeting|audio (--n N | --ramp N,N,...)\n\
         \x20          [--secs N] [--settle N] [--janus | --janus-only] [--server-cpus LIST]\n\
         \x20          [--generator-cpus LIST] [--render WxH] [--concurrency N] [--srtp cm|gcm]\n\
         \x20          [--parley-bin PATH | --target URL [--server-pid PID]] [--out DIR]"
    );
    std::process::exit(2)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("quote") => {
            let opts = quote_options(args);
            tokio::runtime::Runtime::new()?.block_on(quote::run(opts))
        }
        Some("media") => {
            let opts = media_options(args);
            // Pin before the runtime starts: its threads inherit the main thread's CPU set.
            if let Some(cpus) = &opts.generator_cpus {
                pin_to(cpus)?;
            }
            let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .enable_all()
                .build()?;
            let report = rt.block_on(media::run(&opts))?;
            println!("{}", report.markdown());
            if !report.failures.is_empty() {
                anyhow::bail!("{} system(s) failed", report.failures.len());
            }
            Ok(())
        }
        _ => usage(),
    }
}

fn quote_options(mut args: impl Iterator<Item = String>) -> quote::Options {
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
    opts
}

fn media_options(mut args: impl Iterator<Item = String>) -> Options {
    let mut scenario = None;
    let mut sizes = None;
    let mut ramp = false;
    let mut rest: Vec<(String, Option<String>)> = Vec::new();
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "--janus" | "--janus-only" => rest.push((flag, None)),
            _ => {
                let value = args.next().unwrap_or_else(|| usage());
                match flag.as_str() {
                    "--scenario" => {
                        scenario = Some(Scenario::parse(&value).unwrap_or_else(|| usage()))
                    }
                    "--n" => sizes = Some(vec![value.parse().unwrap_or_else(|_| usage())]),
                    "--ramp" => {
                        ramp = true;
                        sizes = Some(
                            value
                                .split(',')
                                .map(|v| v.trim().parse().unwrap_or_else(|_| usage()))
                                .collect(),
                        );
                    }
                    _ => rest.push((flag, Some(value))),
                }
            }
        }
    }
    let (Some(scenario), Some(sizes)) = (scenario, sizes) else {
        usage()
    };
    let mut o = Options::new(scenario, sizes);
    o.ramp = ramp;
    o.out_dir = Some(PathBuf::from("target/loadtest"));
    let mut target = None;
    let mut pid = None;
    for (flag, value) in rest {
        let v = value.unwrap_or_default();
        let secs = |v: &str| Duration::from_secs(v.parse().unwrap_or_else(|_| usage()));
        match flag.as_str() {
            "--janus" => o.systems = vec![System::Parley, System::Janus],
            "--janus-only" => o.systems = vec![System::Janus],
            "--secs" => o.window = secs(&v),
            "--settle" => o.settle = secs(&v),
            "--server-cpus" => o.server_cpus = Some(v),
            "--generator-cpus" => o.generator_cpus = Some(v),
            "--concurrency" => o.join_concurrency = v.parse().unwrap_or_else(|_| usage()),
            "--srtp" => {
                o.srtp = match v.as_str() {
                    "cm" => media::Srtp::AesCm,
                    "gcm" => media::Srtp::AesGcm,
                    _ => usage(),
                }
            }
            "--render" => {
                let (w, h) = v.split_once('x').unwrap_or_else(|| usage());
                o.render = Some((
                    w.parse().unwrap_or_else(|_| usage()),
                    h.parse().unwrap_or_else(|_| usage()),
                ));
            }
            "--parley-bin" => o.parley = ParleyTarget::Binary(PathBuf::from(v)),
            "--target" => target = Some(v),
            "--server-pid" => pid = Some(v.parse().unwrap_or_else(|_| usage())),
            "--out" => o.out_dir = Some(PathBuf::from(v)),
            _ => usage(),
        }
    }
    if let Some(url) = target {
        if !is_loopback(&url) {
            eprintln!(
                "--target must be a loopback address: a load generator stays on this machine"
            );
            std::process::exit(2);
        }
        o.parley = ParleyTarget::External { url, pid };
    }
    o
}

fn is_loopback(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| {
        let host = u.host_str().unwrap_or_default();
        host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

/// Restricts this process (its main thread, and so every thread started later) to `cpus`
/// ("1", "0-1", "0,2").
fn pin_to(cpus: &str) -> anyhow::Result<()> {
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for part in cpus.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<usize>()?, b.trim().parse::<usize>()?),
            None => {
                let c = part.trim().parse::<usize>()?;
                (c, c)
            }
        };
        for c in a..=b {
            unsafe { libc::CPU_SET(c, &mut set) };
        }
    }
    // SAFETY: `set` is a valid, initialised cpu_set_t of the size passed.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if r != 0 {
        anyhow::bail!(
            "sched_setaffinity({cpus}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}
