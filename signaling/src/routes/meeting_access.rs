//! Who may act on one meeting through the REST API (its information, chat, participants, host
//! controls, its end):
//!
//! - its own credentials: the host key and a host join token act as its host; the invitation
//!   secret (`?invite=` or as the bearer) and a guest join token as a guest, who may read the
//!   meeting's information and nothing else;
//! - the user who hosts it (their session: the `parley_session` cookie or `Bearer s_…`) acts as
//!   its host, as with the host key;
//! - for a meeting of an account: the account's admins (session) and its API key oversee it —
//!   read its information, chat and participants, and end it — and so does the operator for
//!   any meeting. Host controls (mute, remove) stay with the host;
//! - a member of the account who does not host the meeting: 403, even to read it;
//! - a user or key of another account (and any user or key for an unlicensed meeting): 404,
//!   in the very words of a meeting that does not exist ([`no_such_meeting`]);
//! - no credential at all: 401, decided before the meeting is looked up, so that a stranger
//!   cannot tell a real meeting id from a made-up one.

use axum::http::HeaderMap;

use super::meetings::{load, no_such_meeting};
use crate::auth::{HostCredential, bearer_token};
use crate::domain::MeetingId;
use crate::error::ApiError;
use crate::privacy::Actor;
use crate::startup::AppState;
use crate::store::MeetingRow;
use crate::users::Principal;
use crate::users::session::{SESSION_PREFIX, session_cookie};

/// What the caller is to one meeting.
#[derive(Debug)]
pub(crate) enum MeetingCaller {
    /// Its host credential, or the session of the user who hosts it.
    Host(Actor),
    /// Its invitation or a guest join token.
    Guest,
    /// The account's admins and API key, the operator.
    Overseer(Actor),
    /// A member of the meeting's account who does not host it.
    Member,
}

fn host_only() -> ApiError {
    ApiError::Forbidden("Only the meeting's host may do this.".into())
}

fn host_or_admins() -> ApiError {
    ApiError::Forbidden("Only the meeting's host and its account's admins may do this.".into())
}

impl MeetingCaller {
    /// Reading the meeting's information: anyone of the meeting but a member who does not
    /// host it.
    pub fn require_reader(&self) -> Result<(), ApiError> {
        match self {
            MeetingCaller::Member => Err(ApiError::Forbidden(
                "A member may see only the meetings they host.".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Chat, participants, ending: the host or an overseer. Returns who, for the audit log.
    pub fn require_overseer(self) -> Result<Actor, ApiError> {
        match self {
            MeetingCaller::Host(a) | MeetingCaller::Overseer(a) => Ok(a),
            MeetingCaller::Guest | MeetingCaller::Member => Err(host_or_admins()),
        }
    }

    /// Host controls (mute, remove): the host alone.
    pub fn require_host(self) -> Result<Actor, ApiError> {
        match self {
            MeetingCaller::Host(a) => Ok(a),
            _ => Err(host_only()),
        }
    }
}

/// 401 for a request without any credential: no bearer, no session cookie, no invitation.
pub(crate) fn require_credential(
    headers: &HeaderMap,
    invite: Option<&str>,
) -> Result<(), ApiError> {
    if bearer_token(headers).is_some() || session_cookie(headers).is_some() || invite.is_some() {
        return Ok(());
    }
    Err(ApiError::Unauthorized(
        "This call needs a credential for the meeting: its host key, a join token, the \
         invitation, or the session of its host or of an admin of its account."
            .into(),
    ))
}

/// Checks that a credential is present, loads the meeting (404 if none) and says what the
/// caller is to it (see the module docs).
pub(crate) async fn identify(
    app: &AppState,
    headers: &HeaderMap,
    id: &str,
    invite: Option<&str>,
) -> Result<(MeetingId, MeetingRow, MeetingCaller), ApiError> {
    require_credential(headers, invite)?;
    let (meeting_id, row) = load(app, id).await?;
    let caller = classify(app, headers, id, &row, invite).await?;
    Ok((meeting_id, row, caller))
}

async fn classify(
    app: &AppState,
    headers: &HeaderMap,
    id: &str,
    row: &MeetingRow,
    invite: Option<&str>,
) -> Result<MeetingCaller, ApiError> {
    // The meeting's own credentials first: no database read.
    let own = match HostCredential::check(&app.tokens, row, bearer_token(headers), invite) {
        Ok(HostCredential::Host) => return Ok(MeetingCaller::Host(Actor::meeting_host(&row.id))),
        Ok(HostCredential::Guest) => return Ok(MeetingCaller::Guest),
        Err(e) => e,
    };
    // What `Principal` checks: a bearer session, else the cookie when there is no bearer.
    let session_checked = match bearer_token(headers) {
        Some(b) => b.starts_with(SESSION_PREFIX),
        None => session_cookie(headers).is_some(),
    };
    let principal = match Principal::from_headers(app, headers).await {
        Ok(p) => p,
        // A session's own words (expired, revoked) tell a browser to sign in again.
        Err(e) if session_checked => return Err(e),
        // Anything else was meant for the meeting (an expired join token…): its words.
        Err(_) => return Err(own),
    };
    let ours = |a: &uuid::Uuid| row.account_id.as_deref() == Some(a.to_string().as_str());
    match principal {
        Principal::Anonymous => Err(own),
        Principal::Operator => Ok(MeetingCaller::Overseer(Actor::operator())),
        Principal::AccountKey(a) if ours(&a) => Ok(MeetingCaller::Overseer(Actor::account_key(a))),
        Principal::User(u) if ours(&u.account_id) => {
            let actor = Actor::user(&u.user.id);
            Ok(if row.host_user_id.as_deref() == Some(u.user.id.as_str()) {
                MeetingCaller::Host(actor)
            } else if u.is_admin() {
                MeetingCaller::Overseer(actor)
            } else {
                MeetingCaller::Member
            })
        }
        Principal::AccountKey(_) | Principal::User(_) => Err(no_such_meeting(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(r: Result<impl Sized, ApiError>) -> u16 {
        use axum::response::IntoResponse;
        r.map_or_else(|e| e.into_response().status().as_u16(), |_| 200)
    }

    #[test]
    fn who_may_do_what() {
        let all = || {
            [
                MeetingCaller::Host(Actor::meeting_host("m")),
                MeetingCaller::Guest,
                MeetingCaller::Overseer(Actor::operator()),
                MeetingCaller::Member,
            ]
        };
        let read: Vec<u16> = all().iter().map(|c| status(c.require_reader())).collect();
        let oversee: Vec<u16> = all()
            .into_iter()
            .map(|c| status(c.require_overseer()))
            .collect();
        let host: Vec<u16> = all()
            .into_iter()
            .map(|c| status(c.require_host()))
            .collect();
        // Host, guest, overseer, member.
        assert_eq!(read, [200, 200, 200, 403]);
        assert_eq!(oversee, [200, 403, 200, 403]);
        assert_eq!(host, [200, 403, 403, 403]);
    }

    #[test]
    fn no_credential_at_all_is_401() {
        let mut headers = HeaderMap::new();
        assert_eq!(status(require_credential(&headers, None)), 401);
        assert_eq!(status(require_credential(&headers, Some("x"))), 200);
        headers.insert("cookie", "parley_session=s_x".parse().expect("header"));
        assert_eq!(status(require_credential(&headers, None)), 200);
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer abc".parse().expect("header"));
        assert_eq!(status(require_credential(&headers, None)), 200);
    }
}
