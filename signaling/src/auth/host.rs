//! Credentials of the REST API. Managing a meeting needs a host credential; reading its public
//! information needs at least an invitation.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;

use super::Tokens;
use crate::domain::{MeetingId, Role, constant_time_eq};
use crate::error::ApiError;
use crate::store::MeetingRow;

/// The `Bearer` value of the `Authorization` header, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// What a bearer proved about itself for one meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostCredential {
    /// The meeting's host key or a join token with the admin grant.
    Host,
    /// A guest join token or the invite secret.
    Guest,
}

impl HostCredential {
    /// Checks `bearer` (or an `invite` query value) against the meeting. Host keys and invite
    /// secrets are compared in constant time; JWTs must be for this meeting.
    pub fn check(
        tokens: &Tokens,
        meeting: &MeetingRow,
        bearer: Option<&str>,
        invite: Option<&str>,
    ) -> Result<HostCredential, ApiError> {
        if let Some(invite) = invite
            && constant_time_eq(invite, &meeting.invite_secret)
        {
            return Ok(HostCredential::Guest);
        }
        let Some(bearer) = bearer else {
            return Err(ApiError::Unauthorized(
                "This call needs an `Authorization: Bearer` credential for the meeting.".into(),
            ));
        };
        if constant_time_eq(bearer, &meeting.host_key) {
            return Ok(HostCredential::Host);
        }
        if constant_time_eq(bearer, &meeting.invite_secret) {
            return Ok(HostCredential::Guest);
        }
        let id = MeetingId::parse(&meeting.id).map_err(|e| ApiError::Internal(e.into()))?;
        match tokens.verify(bearer, Some(&id)) {
            Ok(c) if c.role == Role::Host && c.grants.admin => Ok(HostCredential::Host),
            Ok(_) => Ok(HostCredential::Guest),
            Err(e) => Err(ApiError::Unauthorized(format!("Invalid token: {e}."))),
        }
    }

    pub fn require_host(self) -> Result<(), ApiError> {
        match self {
            HostCredential::Host => Ok(()),
            HostCredential::Guest => Err(ApiError::Forbidden(
                "Only the meeting's host may do this.".into(),
            )),
        }
    }
}
