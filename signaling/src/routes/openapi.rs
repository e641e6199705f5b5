//! The OpenAPI document, derived from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{health, meetings, participants};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Parley API",
        description = "Meetings, join tokens and host controls. Errors are always \
            `{\"error\": {\"code\": \"snake_case\", \"message\": \"...\"}}`. \
            Real-time signaling is a WebSocket at `/api/v1/ws`, described in docs/protocol.md.",
        version = "1"
    ),
    paths(
        meetings::create, meetings::list, meetings::get, meetings::join, meetings::end,
        meetings::chat, participants::list, participants::mute, participants::remove,
        health::healthz, health::readyz, health::metrics
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "meetings", description = "Create, read, join and end meetings"),
        (name = "participants", description = "Host controls"),
        (name = "operations", description = "Health and metrics")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A join token (JWT), the meeting's host key, its invitation secret, or \
                         the operator's admin token, depending on the call.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as pretty JSON with a trailing newline (the form committed to docs/openapi.json).
pub fn openapi_json() -> String {
    let mut s = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

/// `GET /api/v1/openapi.json`
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
