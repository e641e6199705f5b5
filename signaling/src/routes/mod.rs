//! The HTTP surface: `/api/v1` (JSON: meetings and licensing), health and metrics, and the web
//! app's files.

pub(crate) mod crm_card;
mod health;
pub(crate) mod integrations;
pub(crate) mod licensing;
pub(crate) mod meeting_access;
pub(crate) mod meetings;
pub(crate) mod operator;
mod participants;
pub(crate) mod sdk;
pub(crate) mod usage;
pub(crate) mod users;
pub(crate) mod web;

pub mod openapi;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};

use crate::error::ApiError;
use crate::startup::AppState;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub fn router(app: AppState) -> Router {
    let api = Router::new()
        .route("/meetings", post(meetings::create).get(meetings::list))
        .route("/meetings/{id}", get(meetings::get))
        .route("/meetings/{id}/join", post(meetings::join))
        .route("/meetings/{id}/end", post(meetings::end))
        .route("/meetings/{id}/chat", get(meetings::chat))
        .route("/meetings/{id}/participants", get(participants::list))
        .route(
            "/meetings/{id}/participants/{pid}/mute",
            post(participants::mute),
        )
        .route(
            "/meetings/{id}/participants/{pid}",
            delete(participants::remove),
        )
        .route("/ws", get(crate::ws::upgrade))
        .route("/openapi.json", get(openapi::serve))
        .merge(licensing::routes())
        .merge(operator::routes())
        .merge(users::routes())
        .merge(integrations::routes())
        .route(
            "/meetings/{id}/summary",
            get(crate::summaries::http::get_summary),
        )
        .route(
            "/meetings/{id}/contacts",
            post(crate::summaries::http::add_contacts),
        )
        .route(
            "/meetings/{id}/recording",
            post(crate::recordings::http::start).delete(crate::recordings::http::stop),
        )
        .route(
            "/meetings/{id}/recordings",
            get(crate::recordings::http::of_meeting),
        )
        .route(
            "/recordings/{rid}",
            get(crate::recordings::http::get).delete(crate::recordings::http::delete),
        )
        .route(
            "/recordings/{rid}/links",
            post(crate::recordings::http::links),
        )
        .route(
            "/accounts/{account}/recordings",
            get(crate::recordings::http::of_account),
        )
        .route("/accounts/{account}/audit", get(crate::privacy::list))
        .route("/accounts/{account}/usage", get(usage::usage))
        .route(
            "/accounts/{account}/erasure",
            post(crate::privacy::erasure::erase),
        )
        .merge(crm_card::api_routes())
        .merge(sdk::api_routes())
        .fallback(api_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        // Signed download links of recording files (the page is `/recordings/{rid}`).
        .route(
            "/recordings/{rid}/{file}",
            get(crate::recordings::http::download),
        )
        .merge(crm_card::page_routes())
        .merge(sdk::page_routes(&app.config.web_root))
        .merge(web::router(
            &app.config.web_root,
            &web::csp(app.config.cluster.as_ref()),
        ))
        // On a cluster, calls acting on a meeting live on another node go there.
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::cluster::forward::to_owner,
        ))
        // The caller's address for the audit log (see `privacy::client_ip`).
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            crate::privacy::client_ip,
        ))
        .with_state(app)
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

async fn api_not_found() -> ApiError {
    ApiError::NotFound("No such API endpoint.".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::Status {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: "This endpoint does not accept that method.".into(),
    }
}
