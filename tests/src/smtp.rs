//! A real SMTP server on loopback for the mail tests: Python's aiosmtpd with its debugging
//! handler, which prints every message it receives; the output is collected for assertions.
//! [`SmtpSink::start_scripted`] adds refusals on demand: the same server answers `RCPT TO` with
//! the replies the test queues (`451 …` for "try later", `550 …` for "never"), over real SMTP.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::wait_for;

/// aiosmtpd with a handler that answers `RCPT TO` from a reply file: each line is one reply,
/// used up when given; a line starting with `always ` is given every time until the file
/// changes; an empty file accepts. Every refusal is printed as `REFUSED <reply>`.
const SCRIPTED_SERVER: &str = r#"
import sys, threading
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Debugging

class Scripted(Debugging):
    def __init__(self, replies):
        super().__init__(sys.stdout)
        self.replies = replies

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        with open(self.replies) as f:
            lines = [l.rstrip("\n") for l in f if l.strip()]
        if lines:
            reply = lines[0]
            if reply.startswith("always "):
                reply = reply[len("always "):]
            else:
                with open(self.replies, "w") as f:
                    f.write("".join(l + "\n" for l in lines[1:]))
            print("REFUSED " + reply, flush=True)
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

host, port, replies = sys.argv[1], int(sys.argv[2]), sys.argv[3]
Controller(Scripted(replies), hostname=host, port=port).start()
threading.Event().wait()
"#;

pub struct SmtpSink {
    pub port: u16,
    out: Arc<Mutex<String>>,
    child: tokio::process::Child,
    /// The reply file of a scripted server (in `_dir`).
    replies: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

impl SmtpSink {
    /// Starts aiosmtpd on a free loopback port and waits until it accepts connections. `None`
    /// when aiosmtpd is not installed outside CI (the caller skips); in CI that is a failure,
    /// because scripts/test.sh installs it.
    pub async fn start() -> Option<SmtpSink> {
        Self::launch(false).await
    }

    /// Like [`start`](Self::start), but `RCPT TO` is answered as [`set_replies`](Self::set_replies)
    /// says (accepted until then).
    pub async fn start_scripted() -> Option<SmtpSink> {
        Self::launch(true).await
    }

    /// Queues the replies to the next `RCPT TO`s, replacing any still queued: e.g.
    /// `["451 4.3.0 Try again later"]` refuses once, `["always 550 5.1.1 No such user"]` every
    /// time, `[]` accepts.
    pub fn set_replies(&self, replies: &[&str]) {
        let path = self.replies.as_ref().expect("a scripted SMTP server");
        let text: String = replies.iter().map(|r| format!("{r}\n")).collect();
        std::fs::write(path, text).expect("write the reply file");
    }

    /// The messages received for `to` (by their `To:` header), oldest first, with
    /// quoted-printable soft breaks and `=3D` undone so links read whole. Only whole messages:
    /// the server prints a message line by line, and one still being printed (its end marker
    /// not yet out) would be missing its body.
    pub fn messages_to(&self, to: &str) -> Vec<String> {
        const END: &str = "------------ END MESSAGE ------------";
        let header = format!("To: {to}");
        self.received()
            .replace("=\r\n", "")
            .replace("=\n", "")
            .replace("=3D", "=")
            .split("---------- MESSAGE FOLLOWS ----------")
            .filter(|m| m.contains(END) && m.lines().any(|l| l.eq_ignore_ascii_case(&header)))
            .map(str::to_owned)
            .collect()
    }

    /// How many recipients the server has refused so far.
    pub fn refusals(&self) -> usize {
        self.received()
            .lines()
            .filter(|l| l.starts_with("REFUSED "))
            .count()
    }

    async fn launch(scripted: bool) -> Option<SmtpSink> {
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
        let (dir, replies) = if scripted {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("replies");
            std::fs::write(&path, "").expect("reply file");
            (Some(dir), Some(path))
        } else {
            (None, None)
        };
        let mut command = tokio::process::Command::new("python3");
        match &replies {
            Some(path) => command.args([
                "-u",
                "-c",
                SCRIPTED_SERVER,
                "127.0.0.1",
                &port.to_string(),
                &path.display().to_string(),
            ]),
            None => command.args([
                "-u",
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Debugging",
            ]),
        };
        let mut child = command
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
        Some(SmtpSink {
            port,
            out,
            child,
            replies,
            _dir: dir,
        })
    }

    /// Everything the server has printed so far (the received messages).
    pub fn received(&self) -> String {
        self.out.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
