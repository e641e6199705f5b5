//! Draining a cluster node before maintenance: `POST /api/v1/operator/drain` (SIGTERM does the
//! same on its way out). The node stops taking meetings, gives up its meetings' claims and
//! tells its participants to rejoin through the public address, which lands them on the
//! meetings' new nodes. It keeps answering until it is stopped.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody};
use crate::routes::licensing::operator;
use crate::startup::AppState;

#[derive(Debug, Serialize, ToSchema)]
pub struct Drained {
    pub node_id: String,
    pub draining: bool,
    /// Meetings of this node whose claim was given up (their next join places them elsewhere).
    pub meetings_released: u64,
}

/// Drain this node (operator). 409 `not_clustered` when the server runs without Redis: a single
/// node has nowhere to send anyone.
#[utoipa::path(post, path = "/api/v1/operator/drain", tag = "operator", security(("bearer" = [])),
    responses((status = 200, body = Drained), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn drain(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Drained>, ApiError> {
    operator(&app, &headers).await?;
    let Some(cluster) = &app.cluster else {
        return Err(ApiError::Conflict {
            code: "not_clustered",
            message: "This server runs as a single node (no PARLEY_REDIS_URL): there is no other \
                      node to move its meetings to."
                .into(),
        });
    };
    match cluster.drain().await {
        Ok(released) => {
            tracing::info!(node = cluster.id(), released, "drained by the operator");
            Ok(Json(Drained {
                node_id: cluster.id().to_owned(),
                draining: true,
                meetings_released: released,
            }))
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot drain through Redis");
            Err(ApiError::Status {
                status: axum::http::StatusCode::SERVICE_UNAVAILABLE,
                code: "redis_unavailable",
                message: "Redis could not be reached; the node is not drained yet. Try again."
                    .into(),
            })
        }
    }
}
