//! REST calls that act on a live meeting (end it, list, mute or remove its participants, start
//! or stop its recording) must reach the node whose hub and media plane hold it. Arriving at
//! another node, they are forwarded there and the owner's answer is returned as is.
//!
//! Forwarded rather than answered with a 307: a redirect to another origin makes browsers and
//! most HTTP clients drop the `Authorization` header, so the caller would land on the owner
//! without its credentials. A forwarded call carries [`FORWARDED`] and is never forwarded again,
//! so nodes that disagree about an owner cannot bounce a call between them.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::NodeInfo;
use crate::error::ApiError;
use crate::startup::AppState;

/// Marks a call one node forwarded to another (its value: the forwarding node's id).
pub const FORWARDED: &str = "x-parley-forwarded-by";

/// The meeting a live-meeting call is about, from `/api/v1/meetings/{id}/...`.
pub fn live_meeting_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/api/v1/meetings/")?;
    let (id, action) = rest.split_once('/')?;
    let live = action == "end"
        || action == "recording"
        || action == "participants"
        || action.starts_with("participants/");
    (live && crate::domain::MeetingId::parse(id).is_ok()).then_some(id)
}

/// Middleware: forwards a live-meeting call to the meeting's node when that is another one.
pub async fn to_owner(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let Some(cluster) = app.cluster.clone() else {
        return next.run(req).await;
    };
    if req.headers().contains_key(FORWARDED) {
        return next.run(req).await;
    }
    let Some(meeting) = live_meeting_of(req.uri().path()).map(str::to_owned) else {
        return next.run(req).await;
    };
    let owner = match cluster.owner(&meeting).await {
        Ok(Some(owner)) if owner.id != cluster.id() => owner,
        // Not live anywhere (or here): this node answers from the database.
        Ok(_) => return next.run(req).await,
        Err(e) => {
            tracing::error!(error = %e, "cannot look up a meeting's node in Redis");
            return unavailable();
        }
    };
    match forward(&cluster, req, &owner).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(node = %owner.id, error = %format!("{e:#}"), "cannot forward to the meeting's node");
            unavailable()
        }
    }
}

fn unavailable() -> Response {
    ApiError::Status {
        status: StatusCode::SERVICE_UNAVAILABLE,
        code: "node_unavailable",
        message: "The meeting's node cannot be reached just now; try again.".into(),
    }
    .into_response()
}

/// Headers that belong to one hop and are not passed on.
fn hop_by_hop(name: &HeaderName) -> bool {
    name == header::HOST
        || name == header::CONNECTION
        || name == header::CONTENT_LENGTH
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

async fn forward(
    cluster: &super::Cluster,
    req: Request,
    owner: &NodeInfo,
) -> anyhow::Result<Response> {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, crate::routes::MAX_BODY_BYTES).await?;
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("{}{}", owner.url.trim_end_matches('/'), path);
    let mut out = cluster.0.http.request(parts.method.clone(), url).body(body);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            out = out.header(name, value);
        }
    }
    let answer = out.header(FORWARDED, cluster.id()).send().await?;
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await?;
    Ok(response.body(Body::from(bytes))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_live_meeting_calls_are_forwarded() {
        let id = crate::domain::MeetingId::generate();
        let id = id.as_str();
        for live in [
            format!("/api/v1/meetings/{id}/end"),
            format!("/api/v1/meetings/{id}/participants"),
            format!("/api/v1/meetings/{id}/participants/p_1/mute"),
            format!("/api/v1/meetings/{id}/recording"),
        ] {
            assert_eq!(live_meeting_of(&live), Some(id), "{live}");
        }
        for other in [
            format!("/api/v1/meetings/{id}"),
            format!("/api/v1/meetings/{id}/join"),
            format!("/api/v1/meetings/{id}/summary"),
            "/api/v1/meetings/../end".to_owned(),
            "/api/v1/meetings".to_owned(),
        ] {
            assert_eq!(live_meeting_of(&other), None, "{other}");
        }
    }
}
