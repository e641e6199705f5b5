//! The server under test: Parley's binary or Janus started as a child process on free loopback
//! ports (so the /proc figures are the server's alone), Parley in this process (the smoke test),
//! or a server already running (`--target`). Plus the /proc readings.

use std::net::{IpAddr, Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running server and what the load test needs to know about it.
pub struct Server {
    pub name: &'static str,
    /// Parley: the HTTP base URL; Janus: the WebSocket API URL.
    pub url: String,
    /// The process whose CPU and memory are measured (`None`: not measured).
    pub pid: Option<u32>,
    /// The figures include the load generator itself (in-process server).
    pub shares_process: bool,
    /// The address the server offers its ICE candidate on, where the generator's peers bind:
    /// loopback for Parley; this host's own address for Janus (libnice gathers no loopback
    /// candidate; packets to it still never leave the machine).
    pub media_ip: IpAddr,
    child: Option<Child>,
    in_process: Option<parley_signaling::RunningServer>,
    dir: Option<tempfile::TempDir>,
}

impl Server {
    pub async fn stop(&mut self) {
        if let Some(s) = self.in_process.take() {
            s.shutdown().await;
        }
        if let Some(mut c) = self.child.take() {
            // SIGTERM first: both servers shut down cleanly on it.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Where the child's output went, for error messages.
    pub fn log_path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().join("server.log"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_tcp_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn free_udp_port() -> anyhow::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `cmd` under `taskset -c cpus` when pinning was asked for.
fn pinned(program: &Path, cpus: Option<&str>) -> Command {
    match cpus {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(c).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// The Parley binary: `PARLEY_BIN`, else `target/release/parley` of this workspace.
pub fn default_parley_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PARLEY_BIN") {
        return PathBuf::from(p);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .unwrap_or(manifest)
        .join("target/release/parley")
}

async fn wait_http(http: &reqwest::Client, url: &str, child: &mut Child) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!("the server exited during start-up: {status}");
        }
        if Instant::now() > until {
            bail!("the server did not answer {url} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts `bin` on free loopback ports with a temporary SQLite database.
pub async fn start_parley(
    bin: &Path,
    cpus: Option<&str>,
    http: &reqwest::Client,
) -> anyhow::Result<Server> {
    if !bin.exists() {
        bail!(
            "no Parley binary at {} (build it with `cargo build --release -p parley-signaling \
             --features parley-sfu/mixdown`, or set PARLEY_BIN)",
            bin.display()
        );
    }
    let dir = tempfile::tempdir()?;
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let (http_port, udp_port) = (free_tcp_port()?, free_udp_port()?);
    let mut child = pinned(bin, cpus)
        .env("PARLEY_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("PARLEY_UDP_ADDR", format!("127.0.0.1:{udp_port}"))
        .env("PARLEY_ANNOUNCED_IPS", "127.0.0.1")
        .env(
            "PARLEY_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("parley.db").display()),
        )
        .env("PARLEY_RECORDINGS_DIR", dir.path().join("recordings"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let url = format!("http://127.0.0.1:{http_port}");
    if let Err(e) = wait_http(http, &format!("{url}/metrics"), &mut child).await {
        let _ = child.kill();
        let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
        bail!("{e}\n{log}");
    }
    Ok(Server {
        name: "Parley",
        url,
        pid: Some(child.id()),
        shares_process: false,
        media_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        child: Some(child),
        in_process: None,
        dir: Some(dir),
    })
}

/// Parley inside this process (the smoke test: no release binary needed, figures shared with
/// the generator).
pub async fn start_parley_in_process() -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let config = parley_signaling::Config {
        http_addr: "127.0.0.1:0".parse()?,
        udp_addr: "127.0.0.1:0".parse()?,
        announced_ips: vec!["127.0.0.1".parse()?],
        database_url: format!("sqlite://{}", dir.path().join("parley.db").display()),
        recordings_dir: Some(dir.path().join("recordings")),
        ..parley_signaling::Config::default()
    };
    let s = parley_signaling::spawn(config).await?;
    Ok(Server {
        name: "Parley",
        url: s.base_url(),
        pid: Some(std::process::id()),
        shares_process: true,
        media_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        child: None,
        in_process: Some(s),
        dir: Some(dir),
    })
}

/// A server somebody else runs; `pid` for the /proc figures when given.
pub fn external(name: &'static str, url: String, pid: Option<u32>) -> Server {
    Server {
        name,
        url,
        pid,
        shares_process: false,
        media_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        child: None,
        in_process: None,
        dir: None,
    }
}

/// `loadtest/janus/run.sh` of this workspace.
pub fn default_janus_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("janus/run.sh")
}

/// Is Janus installed? (The smoke test and `--janus` skip it with a reason when not.)
pub fn janus_available() -> Option<PathBuf> {
    let path = std::env::var_os("JANUS_BIN")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("janus"))
                    .find(|f| f.is_file())
            })
        })?;
    path.is_file().then_some(path)
}

/// Starts Janus through `script` on free loopback ports.
pub async fn start_janus(script: &Path, cpus: Option<&str>) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let log = std::fs::File::create(dir.path().join("server.log"))?;
    let ws_port = free_tcp_port()?;
    // Below Linux's ephemeral range (32768 up), where the generator's own sockets live.
    let rtp = "10000-14999";
    let ip = host_ipv4().context("no IPv4 address on this host for Janus's ICE candidate")?;
    let mut cmd = Command::new(script);
    cmd.env("JANUS_WS_PORT", ws_port.to_string())
        .env("JANUS_ICE_IP", ip.to_string())
        .env("JANUS_RTP_RANGE", rtp)
        .env("JANUS_CONF_DIR", dir.path().join("conf"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if let Some(c) = cpus {
        cmd.env("JANUS_CPUS", c);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", script.display()))?;
    let url = format!("ws://127.0.0.1:{ws_port}");
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", ws_port))
            .await
            .is_ok()
        {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            bail!("janus exited during start-up: {status}\n{log}");
        }
        if Instant::now() > until {
            let _ = child.kill();
            bail!("janus did not listen on {ws_port} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Server {
        name: "Janus",
        url,
        pid: Some(child.id()),
        shares_process: false,
        media_ip: ip.into(),
        child: Some(child),
        in_process: None,
        dir: Some(dir),
    })
}

/// This host's first IPv4 address that is not loopback (`hostname -I`).
fn host_ipv4() -> Option<std::net::Ipv4Addr> {
    let out = Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<std::net::Ipv4Addr>().ok())
        .find(|a| !a.is_loopback())
}

fn clock_ticks() -> f64 {
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// User + system CPU time of `pid` (all its threads), in seconds.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Resident {
    /// All of it (`VmRSS`).
    pub total: u64,
    /// The anonymous part (`RssAnon`): heap and stacks, what grows with the participants. The
    /// rest is mostly the executable's own pages, read in once as code paths first run (a few MB
    /// for Parley's 190 MB binary the first time media flows), so it counts against the idle
    /// baseline but not per participant.
    pub anon: u64,
}

/// Resident memory of `pid` (`/proc/<pid>/status`).
pub fn resident_kib(pid: u32) -> Option<Resident> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Some(Resident {
        total: field("VmRSS:")?,
        anon: field("RssAnon:")?,
    })
}

/// The 1-minute load average.
pub fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `parley_sfu_packets_out_total` from Parley's /metrics.
pub async fn parley_packets_out(http: &reqwest::Client, base: &str) -> Option<f64> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("parley_sfu_packets_out_total "))
        .and_then(|v| v.trim().parse().ok())
}
