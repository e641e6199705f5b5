use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;

use crate::startup::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "Alive")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// The database answers and the media plane runs.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "Ready"),
    (status = 503, description = "Database or media plane unavailable")))]
pub async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let db = app.store.ping().await;
    let media = app.media_running.load(Ordering::Relaxed);
    let draining = app.shutdown.is_cancelled();
    let body = format!(
        "database={} media={} draining={draining}\n",
        ok(db),
        ok(media)
    );
    let status = if db && media && !draining {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, body)
}

fn ok(b: bool) -> &'static str {
    if b { "ok" } else { "down" }
}

/// Prometheus text exposition.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(app.sfu.metrics()),
    )
}
