//! The meeting summary written to the deal's timeline and emailed to the invited contacts:
//! when, how long, who was there and for how long, who talked how much, the chat, the recording.
//!
//! Pure data and rendering; the caller fills it from the meeting store and the SFU's speaker
//! statistics.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The seller's side: the host and colleagues with Parley accounts.
    Rep,
    /// The client's side: guests and invited contacts.
    Client,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParticipantSummary {
    pub name: String,
    pub side: Side,
    pub joined_at: DateTime<Utc>,
    /// `None` while still present when the summary was made.
    pub left_at: Option<DateTime<Utc>>,
    /// Time this participant was the one speaking (from the SFU's audio levels).
    #[serde(with = "secs")]
    pub talk_time: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatLine {
    pub at: DateTime<Utc>,
    pub from: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeetingSummary {
    pub title: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub participants: Vec<ParticipantSummary>,
    pub chat: Vec<ChatLine>,
    pub recording_url: Option<String>,
}

/// Talk time split between the sides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TalkRatio {
    pub rep: Duration,
    pub client: Duration,
}

impl TalkRatio {
    /// The rep's share of all talk, 0.0..=1.0; `None` when nobody spoke.
    pub fn rep_share(&self) -> Option<f64> {
        let total = self.rep.as_secs_f64() + self.client.as_secs_f64();
        (total > 0.0).then(|| self.rep.as_secs_f64() / total)
    }
}

/// A title without a leading "Meeting:" or "Meeting summary:" label (any case), which the note
/// ("Meeting: …") and the email's subject ("Meeting summary: …") put in front themselves: a
/// meeting titled "Meeting: deal 7" gets the note "Meeting: deal 7", not "Meeting: Meeting:
/// deal 7". A title that is nothing but the label stays as it is.
pub fn bare_title(title: &str) -> &str {
    let t = title.trim();
    for label in ["meeting summary:", "meeting:"] {
        // `get` is `None` when the cut would split a character: then it is no label.
        if let Some(head) = t.get(..label.len())
            && head.eq_ignore_ascii_case(label)
        {
            let rest = t[label.len()..].trim_start();
            if !rest.is_empty() {
                return rest;
            }
        }
    }
    t
}

impl MeetingSummary {
    /// The title for after a label such as "Meeting: " (see [`bare_title`]).
    pub fn bare_title(&self) -> &str {
        bare_title(&self.title)
    }

    pub fn duration(&self) -> Duration {
        (self.ended_at - self.started_at)
            .to_std()
            .unwrap_or(Duration::ZERO)
    }

    pub fn talk_ratio(&self) -> TalkRatio {
        let sum = |side| {
            self.participants
                .iter()
                .filter(|p| p.side == side)
                .map(|p| p.talk_time)
                .sum()
        };
        TalkRatio {
            rep: sum(Side::Rep),
            client: sum(Side::Client),
        }
    }

    fn ratio_text(&self) -> String {
        match self.talk_ratio().rep_share() {
            Some(share) => {
                let rep = (share * 100.0).round() as u32;
                format!("rep {rep}% / client {}%", 100 - rep)
            }
            None => "nobody spoke".into(),
        }
    }

    /// Plain text: a CRM note (amoCRM notes and Bitrix24 comments show text) and the text part
    /// of the email.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Meeting: {}", self.bare_title());
        let _ = writeln!(
            s,
            "When: {} – {} UTC ({})",
            self.started_at.format("%Y-%m-%d %H:%M"),
            self.ended_at.format("%H:%M"),
            hms(self.duration())
        );
        let _ = writeln!(s, "Talk ratio: {}", self.ratio_text());
        let _ = writeln!(s, "\nParticipants:");
        for p in &self.participants {
            let _ = writeln!(
                s,
                "- {} ({}): {} – {}, talked {}",
                p.name,
                side_label(p.side),
                p.joined_at.format("%H:%M"),
                p.left_at
                    .map_or_else(|| "end".to_owned(), |t| t.format("%H:%M").to_string()),
                hms(p.talk_time)
            );
        }
        if !self.chat.is_empty() {
            let _ = writeln!(s, "\nChat:");
            for c in &self.chat {
                let _ = writeln!(s, "[{}] {}: {}", c.at.format("%H:%M"), c.from, c.text);
            }
        }
        if let Some(url) = &self.recording_url {
            let _ = writeln!(s, "\nRecording: {url}");
        }
        s
    }

    /// Simple HTML for the email body; every value from people (names, chat, title) is escaped.
    pub fn to_html(&self) -> String {
        let mut s = String::new();
        let _ = write!(s, "<h2>{}</h2>", esc(&self.title));
        let _ = write!(
            s,
            "<p>{} – {} UTC ({})<br>Talk ratio: {}</p>",
            self.started_at.format("%Y-%m-%d %H:%M"),
            self.ended_at.format("%H:%M"),
            hms(self.duration()),
            esc(&self.ratio_text())
        );
        s.push_str(
            "<table><tr><th>Participant</th><th>Side</th><th>Joined</th><th>Left</th>\
             <th>Talked</th></tr>",
        );
        for p in &self.participants {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&p.name),
                side_label(p.side),
                p.joined_at.format("%H:%M"),
                p.left_at
                    .map_or_else(|| "end".to_owned(), |t| t.format("%H:%M").to_string()),
                hms(p.talk_time)
            );
        }
        s.push_str("</table>");
        if !self.chat.is_empty() {
            s.push_str("<h3>Chat</h3><ul>");
            for c in &self.chat {
                let _ = write!(
                    s,
                    "<li>[{}] <b>{}</b>: {}</li>",
                    c.at.format("%H:%M"),
                    esc(&c.from),
                    esc(&c.text)
                );
            }
            s.push_str("</ul>");
        }
        if let Some(url) = &self.recording_url {
            let _ = write!(s, "<p><a href=\"{0}\">Recording</a></p>", esc(url));
        }
        s
    }
}

fn side_label(s: Side) -> &'static str {
    match s {
        Side::Rep => "rep",
        Side::Client => "client",
    }
}

fn hms(d: Duration) -> String {
    let t = d.as_secs();
    let (h, m, s) = (t / 3600, t / 60 % 60, t % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else {
        format!("{m}m {s:02}s")
    }
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Durations as whole seconds in JSON (the outbox stores summaries as payloads).
mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, h, m, 0)
            .single()
            .expect("time")
    }

    fn sample() -> MeetingSummary {
        MeetingSummary {
            title: "Demo <for> ACME & Co".into(),
            started_at: at(10, 0),
            ended_at: at(10, 45),
            participants: vec![
                ParticipantSummary {
                    name: "Ivan (rep)".into(),
                    side: Side::Rep,
                    joined_at: at(10, 0),
                    left_at: Some(at(10, 45)),
                    talk_time: Duration::from_secs(900),
                },
                ParticipantSummary {
                    name: "Anna".into(),
                    side: Side::Client,
                    joined_at: at(10, 2),
                    left_at: None,
                    talk_time: Duration::from_secs(2100),
                },
            ],
            chat: vec![ChatLine {
                at: at(10, 5),
                from: "Anna".into(),
                text: "<script>alert(1)</script>".into(),
            }],
            recording_url: Some("https://parley.example/r/abc".into()),
        }
    }

    #[test]
    fn ratio_and_duration() {
        let s = sample();
        assert_eq!(s.duration(), Duration::from_secs(45 * 60));
        assert_eq!(s.talk_ratio().rep_share(), Some(0.3));
        let text = s.to_text();
        assert!(text.contains("rep 30% / client 70%"), "{text}");
        assert!(text.contains("45m 00s"), "{text}");
        assert!(text.contains("Recording: https://parley.example/r/abc"));
    }

    #[test]
    fn html_escapes_what_people_typed() {
        let html = sample().to_html();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("Demo &lt;for&gt; ACME &amp; Co"));
    }

    #[test]
    fn labels_are_not_doubled() {
        let cases = [
            ("Поставка CRM-лицензий ACME", "Поставка CRM-лицензий ACME"),
            ("Meeting: deal 7", "deal 7"),
            ("meeting:deal 7", "deal 7"),
            ("MEETING SUMMARY: Q3 review", "Q3 review"),
            ("  Meeting:   pricing  ", "pricing"),
            // Nothing after the label, or no label: kept.
            ("Meeting:", "Meeting:"),
            ("Meetings: weekly", "Meetings: weekly"),
            ("Meeting about the deal", "Meeting about the deal"),
            ("Встреча: сделка", "Встреча: сделка"),
            ("Meetin", "Meetin"),
        ];
        for (title, bare) in cases {
            assert_eq!(bare_title(title), bare, "{title:?}");
        }
        let mut s = sample();
        s.title = "Meeting: deal 7".into();
        assert!(
            s.to_text().starts_with("Meeting: deal 7\n"),
            "{}",
            s.to_text()
        );
    }

    #[test]
    fn nobody_spoke() {
        let mut s = sample();
        for p in &mut s.participants {
            p.talk_time = Duration::ZERO;
        }
        assert_eq!(s.talk_ratio().rep_share(), None);
        assert!(s.to_text().contains("nobody spoke"));
    }
}
