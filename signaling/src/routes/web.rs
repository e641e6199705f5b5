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

/// [`CSP`], widened on a cluster: the meeting app follows a `redirect` to the meeting's node, so
/// `connect-src` also allows the WebSockets of the nodes' domain, the parent domain of this
/// node's URL (`https://n3b.meet.example.com` → `wss://*.meet.example.com`). Nodes addressed by
/// IP or by a one- or two-label name have no such domain: then any ws(s) origin is allowed
/// (scripts still come only from this origin, so no page script can choose one).
pub fn csp(cluster: Option<&crate::configuration::ClusterConfig>) -> String {
    let Some(cluster) = cluster else {
        return CSP.to_owned();
    };
    let (ws, rest) = match cluster.node_url.split_once("://") {
        Some(("https", rest)) => ("wss", rest),
        Some((_, rest)) => ("ws", rest),
        None => ("wss", cluster.node_url.as_str()),
    };
    let host = rest.split(['/', ':']).next().unwrap_or_default();
    let labels: Vec<&str> = host.split('.').collect();
    let named = labels.len() >= 3
        && host.parse::<std::net::IpAddr>().is_err()
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    let extra = if named {
        format!("{ws}://*.{}:*", labels[1..].join("."))
    } else {
        "ws: wss:".to_owned()
    };
    CSP.replace(
        "connect-src 'self';",
        &format!("connect-src 'self' {extra};"),
    )
}

pub fn router(web_root: &Path, csp: &str) -> Router<AppState> {
    let csp = HeaderValue::from_str(csp).unwrap_or(HeaderValue::from_static(CSP));
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
            csp,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configuration::{ClusterConfig, Secret};

    fn node(url: &str) -> ClusterConfig {
        ClusterConfig::new(Secret::new("redis://r"), "n".into(), url.into())
    }

    #[test]
    fn a_cluster_node_lets_the_app_reach_its_sibling_nodes() {
        assert_eq!(csp(None), CSP);
        let named = csp(Some(&node("https://n3b.meet.example.com")));
        assert!(
            named.contains("connect-src 'self' wss://*.meet.example.com:*;"),
            "{named}"
        );
        let by_ip = csp(Some(&node("http://10.0.0.5:8080")));
        assert!(by_ip.contains("connect-src 'self' ws: wss:;"), "{by_ip}");
        // Everything else stays as strict as on one node.
        assert!(named.contains("script-src 'self';") && named.contains("frame-ancestors 'none'"));
    }
}
