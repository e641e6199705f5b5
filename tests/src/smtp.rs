//! A real SMTP server on loopback for the mail tests: Python's aiosmtpd with its debugging
//! handler, which prints every message it receives; the output is collected for assertions.

use std::sync::{Arc, Mutex};

use crate::wait_for;

pub struct SmtpSink {
    pub port: u16,
    out: Arc<Mutex<String>>,
    child: tokio::process::Child,
}

impl SmtpSink {
    /// Starts aiosmtpd on a free loopback port and waits until it accepts connections. `None`
    /// when aiosmtpd is not installed outside CI (the caller skips); in CI that is a failure,
    /// because scripts/test.sh installs it.
    pub async fn start() -> Option<SmtpSink> {
        let available = std::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !available {
            assert!(
                std::env::var("CI").is_err(),
                "aiosmtpd is missing in CI: scripts/test.sh installs it"
            );
            eprintln!("SKIPPED: python3 -m aiosmtpd is not available (pip install aiosmtpd)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut child = tokio::process::Command::new("python3")
            .args([
                "-u",
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Debugging",
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start aiosmtpd");
        let out = Arc::new(Mutex::new(String::new()));
        let mut stdout = child.stdout.take().expect("stdout");
        let sink = out.clone();
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        wait_for("aiosmtpd to listen", || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
        })
        .await;
        Some(SmtpSink { port, out, child })
    }

    /// Everything the server has printed so far (the received messages).
    pub fn received(&self) -> String {
        self.out.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
