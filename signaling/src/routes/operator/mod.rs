//! The platform operator's own endpoints under `/api/v1/operator`: the console's operator
//! sessions, the node's load and the meetings live on it. Everything here is the operator's
//! alone (the token or a session opened with it); any other identified caller gets 403.

pub(crate) mod drain;
pub(crate) mod live;
pub(crate) mod node;
pub(crate) mod sessions;

use axum::Router;
use axum::routing::{delete, get, post};

use crate::startup::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/operator/sessions", post(sessions::open))
        .route("/operator/sessions/current", delete(sessions::close))
        .route("/operator/node", get(node::status))
        .route("/operator/meetings", get(live::list))
        .route("/operator/drain", post(drain::drain))
}

/// Largest page of the operator's lists, and the farthest offset (a console pages, it does not
/// dump the database).
pub(crate) const MAX_PAGE: u32 = 100;
pub(crate) const MAX_OFFSET: u64 = 1_000_000;

/// `limit` (1 to [`MAX_PAGE`], default 20) and `offset` (0 to [`MAX_OFFSET`], default 0) of a
/// paged list; out of range is 400.
pub(crate) fn page_bounds(
    limit: Option<u32>,
    offset: Option<u64>,
) -> Result<(u32, u64), crate::error::ApiError> {
    let limit = limit.unwrap_or(20);
    let offset = offset.unwrap_or(0);
    if !(1..=MAX_PAGE).contains(&limit) || offset > MAX_OFFSET {
        return Err(crate::error::ApiError::BadRequest {
            code: "invalid_query",
            message: format!(
                "limit must be between 1 and {MAX_PAGE}, offset between 0 and {MAX_OFFSET}."
            ),
        });
    }
    Ok((limit, offset))
}
