//! What every connector does with HTTP: send with a deadline, read a bounded body, and turn
//! statuses and transport failures into [`CrmError`]s.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::de::DeserializeOwned;

use super::{CrmError, MAX_CRM_BODY};

/// A CRM's answer, fully read (within [`MAX_CRM_BODY`]).
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, CrmError> {
        parse_json(&self.body, what)
    }

    pub fn retry_after(&self) -> Option<Duration> {
        retry_after(&self.headers)
    }
}

/// Sends and reads the whole answer. `timeout` is the client's configured one, only used to word
/// the error (the client enforces it, including while the body is read).
pub(crate) async fn send(
    req: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<Answer, CrmError> {
    let mut resp = req.send().await.map_err(|e| transport(e, timeout))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    // Refuse early when the server announces too much, and count as we go when it does not
    // (chunked answers have no length).
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_CRM_BODY as u64)
    {
        return Err(CrmError::TooLarge {
            limit: MAX_CRM_BODY,
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport(e, timeout))? {
        if body.len() + chunk.len() > MAX_CRM_BODY {
            return Err(CrmError::TooLarge {
                limit: MAX_CRM_BODY,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// A transport failure. `without_url` because a Bitrix24 webhook URL is itself a credential and
/// reqwest puts the URL into its error text.
pub(crate) fn transport(e: reqwest::Error, timeout: Duration) -> CrmError {
    if e.is_timeout() {
        CrmError::Timeout(timeout)
    } else {
        let e = e.without_url();
        CrmError::Connection(error_chain(&e))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

pub(crate) fn parse_json<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<T, CrmError> {
    serde_json::from_slice(body).map_err(|e| {
        CrmError::Malformed(format!(
            "{what}: expected JSON ({e}), got {}",
            snippet(body)
        ))
    })
}

/// The start of a body for an error message: enough to recognise an HTML error page or a proxy's
/// text, short enough for a log line.
pub(crate) fn snippet(body: &[u8]) -> String {
    const MAX: usize = 120;
    if body.is_empty() {
        return "an empty body".into();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let more = if body.len() > MAX { "…" } else { "" };
    format!("{:?}{more}", clean.trim())
}

/// `Retry-After` as delta-seconds or an HTTP date (RFC 9110 allows both).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let delta = at.signed_duration_since(chrono::Utc::now());
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

/// The common meaning of an unsuccessful status; connectors handle their API's special cases
/// (a missing deal, a rate-limit error code in the body) before falling back to this.
pub(crate) fn status_error(answer: &Answer, detail: String) -> CrmError {
    let status = answer.status.as_u16();
    match answer.status {
        StatusCode::TOO_MANY_REQUESTS => CrmError::RateLimited {
            retry_after: answer.retry_after(),
        },
        StatusCode::UNAUTHORIZED => CrmError::Unauthorized(detail),
        // 408 is the server giving up waiting for us: a passing condition like a 5xx.
        StatusCode::REQUEST_TIMEOUT => CrmError::Server { status, detail },
        s if s.is_server_error() => CrmError::Server { status, detail },
        _ => CrmError::Rejected { status, detail },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        // A date in the past means "now".
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn malformed_json_names_what_and_shows_the_start() {
        let e = parse_json::<serde_json::Value>(b"<html>502 Bad Gateway</html>", "lead 7")
            .expect_err("not JSON");
        let msg = e.to_string();
        assert!(msg.contains("lead 7") && msg.contains("<html>502"), "{msg}");
        assert!(!e.is_retryable());
    }
}
