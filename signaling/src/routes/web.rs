//! The web app: static files from the web root. HTML is never cached (the app changes with the
//! server) and every response carries a strict Content-Security-Policy.

use std::path::Path;

use axum::Router;
use axum::http::{HeaderValue, header};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::startup::AppState;

/// Scripts, styles and connections only from this origin; media from the camera and WebRTC;
/// no framing (the embed page and the deal card set their own frame-ancestors), no plugins,
/// no inline code.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob:; media-src 'self' blob: mediastream:; connect-src 'self'; \
    font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'";

pub fn router(web_root: &Path) -> Router<AppState> {
    let html = |file: &str| ServeFile::new(web_root.join(file));
    let no_store = SetResponseHeaderLayer::overriding(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    Router::new()
        .route_service("/", html("index.html"))
        .route_service("/index.html", html("index.html"))
        .route_service("/m/{id}", html("meeting.html"))
        // A recording's page: its files and download buttons, for who may see it.
        .route_service("/recordings/{rid}", html("recording.html"))
        // Account pages. `/invitation` and `/reset-password` are the links the server mails
        // (token in the fragment); keep these paths in step with `routes::users`.
        .route_service("/sign-in", html("sign-in.html"))
        .route_service("/forgot-password", html("forgot-password.html"))
        .route_service("/reset-password", html("reset-password.html"))
        .route_service("/invitation", html("invitation.html"))
        // The admin console: one page, hash routing (`/admin/#/lots`); its scripts and styles
        // come from the web root like the rest.
        .route_service("/admin", html("admin/index.html"))
        .route_service("/admin/", html("admin/index.html"))
        .route_service("/admin/index.html", html("admin/index.html"))
        .layer(no_store)
        .nest_service("/static", ServeDir::new(web_root))
        .fallback_service(ServeDir::new(web_root))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // Join tokens travel in page URLs; never leak them to other sites as a Referer.
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
}
