//! The HTTP error shape: every failure is `{"error": {"code": "snake_case", "message": "..."}}`
//! with a fitting 4xx/5xx status. Handlers return `ApiError`; extractor rejections are mapped here
//! too so that even a malformed body gets the same shape.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{message}")]
    Status {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// A refusal of the licensing rules: its own status and body (with the fields that
    /// explain it, e.g. `opens_on` for `window_not_open`).
    #[error(transparent)]
    Licensing(#[from] parley_licensing::LicensingError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable, snake_case.
    pub code: String,
    /// A sentence for a person.
    pub message: String,
}

impl ApiError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Unprocessable {
            code,
            message: message.into(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ApiError::Status { status, code, .. } => (*status, code),
            ApiError::Licensing(e) => (
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                e.code(),
            ),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        if let ApiError::Licensing(e) = &self {
            if let parley_licensing::LicensingError::Storage(detail) = e {
                tracing::error!(error = %detail, "licensing storage error");
            } else {
                return (status, axum::Json(e.to_body())).into_response();
            }
        }
        let message = match &self {
            // Internal details go to the log, not to the client.
            ApiError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "internal error");
                "Something went wrong on the server.".to_owned()
            }
            ApiError::Licensing(_) => "Something went wrong on the server.".to_owned(),
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
            },
        };
        (status, axum::Json(body)).into_response()
    }
}

/// `axum::Json` with our error shape for rejections (malformed JSON, wrong content type, too big).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let detail = rejection.body_text();
    let (code, message) = match &rejection {
        JsonRejection::JsonDataError(_) => ("invalid_body", detail),
        JsonRejection::JsonSyntaxError(_) => ("malformed_json", detail),
        JsonRejection::MissingJsonContentType(_) => (
            "unsupported_media_type",
            "Expected a request with `Content-Type: application/json`.".to_owned(),
        ),
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => (
            "payload_too_large",
            "The request body is larger than 64 KiB.".to_owned(),
        ),
        _ => ("bad_request", detail),
    };
    ApiError::Status {
        status,
        code,
        message,
    }
}

/// `axum::extract::Query` with our error shape.
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e @ QueryRejection::FailedToDeserializeQueryString(_)) => {
                Err(ApiError::BadRequest {
                    code: "invalid_query",
                    message: e.body_text(),
                })
            }
            Err(e) => Err(ApiError::BadRequest {
                code: "invalid_query",
                message: e.body_text(),
            }),
        }
    }
}
