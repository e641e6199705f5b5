//! WebSocket signaling (docs/protocol.md): connection handling, room hubs, message types.

mod connection;
mod hub;
mod hubs;
mod messages;
mod rate_limit;

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::{IntoResponse, Response};

pub use hub::{HostCommand, HubContext, RecordingNotice};
// For the summaries' unit test of the talk-time bookkeeping.
#[cfg(test)]
pub(crate) use hub::record_talk_time;
pub use hubs::{HostError, Hubs};
pub use messages::{ParticipantView, RecordingState};

use crate::error::ApiError;
use crate::startup::AppState;

/// Largest accepted frame; larger ones close the socket with 1009.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// The WebSocket read buffer each connection starts with.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// Longest chat message in characters.
pub const MAX_CHAT_CHARS: usize = 2000;

/// `GET /api/v1/ws`
pub async fn upgrade(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if app.shutdown.is_cancelled() {
        return ApiError::Status {
            status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
            code: "shutting_down",
            message: "The server is shutting down.".into(),
        }
        .into_response();
    }
    let tracker = app.ws_tasks.clone();
    // Kept for tokens minted for an SDK key: they are admitted only from its origins.
    let origin = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // tungstenite's own limit is set well above ours so that frames between the two are read in
    // full and answered with a clean 1009 close (a frame refused mid-read leaves unread bytes
    // behind, and the client may then see a reset instead of the close frame).
    //
    // tungstenite zero-fills its whole read buffer on the first read, so its 128 KiB default
    // was 128 KiB resident per connected participant (a tenth of a meeting participant's
    // memory); signaling messages are small, and a longer one grows the buffer as it arrives.
    ws.max_message_size(16 * MAX_FRAME_BYTES)
        .max_frame_size(16 * MAX_FRAME_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| tracker.track_future(connection::run(socket, app, origin)))
}
