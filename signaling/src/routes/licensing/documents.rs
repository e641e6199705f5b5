//! Transfer documents (UPD or act, 3.2.5): accepted automatically after 5 business days
//! unless the client objects with reasons, which opens a dispute (3.2.6).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use parley_licensing::LicensingError;
use parley_licensing::store::TransferDocument;
use serde::Deserialize;
use utoipa::ToSchema;

use super::schemas::TransferDocumentDoc;
use super::{account_scope, bounded_text, html, path_id, split_html};
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::startup::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Objection {
    /// The reasoned objection, 1 to 2000 characters.
    pub reason: String,
}

/// The account's transfer documents, with acceptance as of today.
#[utoipa::path(get, path = "/api/v1/accounts/{account}/documents", tag = "licensing",
    params(("account" = String, Path), super::ListPage), security(("bearer" = [])),
    responses((status = 200, body = Vec<TransferDocumentDoc>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    Path(account): Path<String>,
    headers: HeaderMap,
    ApiQuery(page): ApiQuery<super::ListPage>,
) -> Result<Json<Vec<TransferDocument>>, ApiError> {
    let (_, id) = account_scope(&app, &headers, &account).await?;
    Ok(Json(
        page.apply(app.licensing.transfer_documents(id).await?)?,
    ))
}

#[utoipa::path(get, path = "/api/v1/accounts/{account}/documents/{document}", tag = "licensing",
    params(("account" = String, Path), ("document" = String, Path, description = "id, or id.html")),
    security(("bearer" = [])),
    responses((status = 200, description = "JSON, or printable HTML for `{id}.html`", content((TransferDocumentDoc = "application/json"), (String = "text/html"))),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(app): State<AppState>,
    Path((account, document)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (_, id) = account_scope(&app, &headers, &account).await?;
    let (document, printable) = split_html(&document);
    let doc_id = path_id(document, "transfer document")?;
    if printable {
        return Ok(html(
            app.licensing.transfer_document_html(id, doc_id).await?,
        ));
    }
    app.licensing
        .transfer_documents(id)
        .await?
        .into_iter()
        .find(|d| d.id == doc_id)
        .map(|d| Json(d).into_response())
        .ok_or_else(|| {
            LicensingError::NotFound {
                what: "transfer document",
            }
            .into()
        })
}

/// The client objects to a document before it is accepted: it becomes disputed.
#[utoipa::path(post, path = "/api/v1/accounts/{account}/documents/{document}/objection", tag = "licensing",
    params(("account" = String, Path), ("document" = String, Path)), request_body = Objection,
    security(("bearer" = [])),
    responses((status = 200, body = TransferDocumentDoc), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, description = "document_not_open (already accepted)", body = ErrorBody)))]
pub async fn object(
    State(app): State<AppState>,
    Path((account, document)): Path<(String, String)>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Objection>,
) -> Result<Json<TransferDocument>, ApiError> {
    let (caller, id) = account_scope(&app, &headers, &account).await?;
    let doc_id = path_id(&document, "transfer document")?;
    let reason = bounded_text("reason", &body.reason, 2000)?;
    let disputed = app.licensing.object_to_document(id, doc_id, reason).await?;
    crate::privacy::record(
        &app,
        &headers,
        crate::privacy::Actor::from_caller(&caller),
        Some(&id.to_string()),
        "document.object",
        crate::privacy::Target::new("transfer_document", &doc_id.to_string()),
    )
    .await;
    Ok(Json(disputed))
}
