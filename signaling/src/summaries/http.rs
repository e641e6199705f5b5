//! `GET /meetings/{id}/summary` and `POST /meetings/{id}/contacts`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::db::{self, MAX_CONTACTS};
use crate::auth::{HostCredential, bearer_token};
use crate::crm::summary::{MeetingSummary, Side};
use crate::domain::Email;
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::privacy::{Actor, Target, record};
use crate::startup::AppState;
use crate::store::MeetingRow;
use crate::users::Principal;

/// Longest contact name, in characters.
const MAX_CONTACT_NAME: usize = 100;

/// A person invited to the meeting who gets the results by email (when allowed).
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    /// 1 to 100 characters.
    pub name: String,
    pub email: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddContacts {
    /// 1 to 50 contacts; a meeting holds at most 50 in all.
    pub contacts: Vec<Contact>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactList {
    /// How many of the request's contacts were new.
    pub added: usize,
    pub contacts: Vec<Contact>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantSummaryView {
    pub name: String,
    /// `rep` (hosts) or `client` (guests).
    pub side: String,
    pub joined_at: DateTime<Utc>,
    pub left_at: Option<DateTime<Utc>>,
    pub talk_time_secs: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatLineView {
    pub at: DateTime<Utc>,
    pub from: String,
    pub text: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TalkRatioView {
    pub rep_secs: u64,
    pub client_secs: u64,
    /// The rep side's share of all talk, 0 to 1; absent when nobody spoke.
    pub rep_share: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryView {
    pub meeting_id: String,
    pub title: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub duration_secs: u64,
    pub participants: Vec<ParticipantSummaryView>,
    pub talk_ratio: TalkRatioView,
    pub chat: Vec<ChatLineView>,
    /// Absent until the meeting's recording is available.
    pub recording_url: Option<String>,
    /// How many invited contacts the summary was emailed to (0 when the results rule did not
    /// allow it or nobody was invited).
    pub emailed_to: i64,
}

impl SummaryView {
    fn new(meeting_id: String, s: MeetingSummary, emailed_to: i64) -> SummaryView {
        let ratio = s.talk_ratio();
        SummaryView {
            meeting_id,
            duration_secs: s.duration().as_secs(),
            talk_ratio: TalkRatioView {
                rep_secs: ratio.rep.as_secs(),
                client_secs: ratio.client.as_secs(),
                rep_share: ratio.rep_share(),
            },
            title: s.title,
            started_at: s.started_at,
            ended_at: s.ended_at,
            participants: s
                .participants
                .into_iter()
                .map(|p| ParticipantSummaryView {
                    name: p.name,
                    side: match p.side {
                        Side::Rep => "rep".into(),
                        Side::Client => "client".into(),
                    },
                    joined_at: p.joined_at,
                    left_at: p.left_at,
                    talk_time_secs: p.talk_time.as_secs(),
                })
                .collect(),
            chat: s
                .chat
                .into_iter()
                .map(|c| ChatLineView {
                    at: c.at,
                    from: c.from,
                    text: c.text,
                })
                .collect(),
            recording_url: s.recording_url,
            emailed_to,
        }
    }
}

/// Validates contacts at the edge: (name, address as typed, lower-cased key).
pub fn parse_contacts(contacts: &[Contact]) -> Result<Vec<(String, String, String)>, ApiError> {
    if contacts.len() > MAX_CONTACTS {
        return Err(too_many());
    }
    contacts
        .iter()
        .map(|c| {
            let name = c.name.trim();
            let len = name.chars().count();
            if len == 0 || len > MAX_CONTACT_NAME || name.chars().any(char::is_control) {
                return Err(ApiError::invalid(
                    "invalid_contact_name",
                    format!("A contact's name must be 1 to {MAX_CONTACT_NAME} characters."),
                ));
            }
            let email = Email::parse(&c.email).map_err(|_| {
                ApiError::invalid("invalid_contact_email", "A contact's email is not valid.")
            })?;
            Ok((
                name.to_owned(),
                email.as_str().to_owned(),
                email.key().to_owned(),
            ))
        })
        .collect()
}

fn too_many() -> ApiError {
    ApiError::invalid(
        "too_many_contacts",
        format!("A meeting carries at most {MAX_CONTACTS} invited contacts."),
    )
}

/// Who may read a meeting's summary: its host credential; for a meeting of an account, that
/// account's admins and API key, and the user who hosted it; the operator. A guest credential
/// is 403; someone of another account 404, as if the meeting did not exist.
async fn summary_reader(
    app: &AppState,
    headers: &HeaderMap,
    row: &MeetingRow,
) -> Result<Actor, ApiError> {
    let host = HostCredential::check(&app.tokens, row, bearer_token(headers), None);
    match host {
        Ok(HostCredential::Host) => return Ok(Actor::meeting_host(&row.id)),
        Ok(HostCredential::Guest) => {
            return Err(ApiError::Forbidden(
                "Only the meeting's host and its account's admins may read the summary.".into(),
            ));
        }
        Err(_) => {}
    }
    let principal = Principal::from_headers(app, headers).await?;
    let account = row.account_id.as_deref();
    let same = |a: &uuid::Uuid| account == Some(a.to_string().as_str());
    match &principal {
        Principal::Anonymous => Err(ApiError::Unauthorized(
            "This call needs the meeting's host credential or an account admin's session.".into(),
        )),
        Principal::Operator => Ok(Actor::operator()),
        Principal::AccountKey(a) if same(a) => Ok(Actor::from_principal(&principal)),
        Principal::User(u)
            if same(&u.account_id)
                && (u.is_admin() || row.host_user_id.as_deref() == Some(u.user.id.as_str())) =>
        {
            Ok(Actor::from_principal(&principal))
        }
        Principal::User(u) if same(&u.account_id) => Err(ApiError::Forbidden(
            "Only the meeting's host and its account's admins may read the summary.".into(),
        )),
        _ => Err(crate::routes::meetings::no_such_meeting(&row.id)),
    }
}

/// The meeting's summary, made when it ended (host credential, the account's admins or key).
#[utoipa::path(get, path = "/api/v1/meetings/{id}/summary", tag = "meetings",
    params(("id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = SummaryView), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, description = "No such meeting, or not ended yet (`no_summary`)", body = ErrorBody)))]
pub async fn get_summary(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<SummaryView>, ApiError> {
    let (id, row) = crate::routes::meetings::load(&app, &id).await?;
    let actor = summary_reader(&app, &headers, &row).await?;
    let view = stored_view(&app, id.as_str()).await?;
    record(
        &app,
        &headers,
        actor,
        row.account_id.as_deref(),
        "summary.read",
        Target::new("meeting", id.as_str()),
    )
    .await;
    Ok(Json(view))
}

/// The stored summary of `meeting` as the API shows it; `no_summary` (404) before it ends. The
/// caller has checked who may read it.
pub(crate) async fn stored_view(app: &AppState, meeting: &str) -> Result<SummaryView, ApiError> {
    let Some((json, emailed_to)) = db::summary_with_recipients(app.store.pool(), meeting).await?
    else {
        return Err(ApiError::Status {
            status: StatusCode::NOT_FOUND,
            code: "no_summary",
            message: "The meeting has no summary yet: it is made when the meeting ends.".into(),
        });
    };
    let summary: MeetingSummary =
        serde_json::from_str(&json).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(SummaryView::new(meeting.to_owned(), summary, emailed_to))
}

/// Add invited contacts (host only, before the meeting ends). They get the summary by email
/// when the meeting's results rule allows it.
#[utoipa::path(post, path = "/api/v1/meetings/{id}/contacts", tag = "meetings",
    params(("id" = String, Path)), request_body = AddContacts, security(("bearer" = [])),
    responses((status = 200, body = ContactList), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 410, description = "Meeting ended", body = ErrorBody),
        (status = 422, description = "Invalid contact, too_many_contacts", body = ErrorBody)))]
pub async fn add_contacts(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AddContacts>,
) -> Result<Json<ContactList>, ApiError> {
    let (id, row) = crate::routes::meetings::load(&app, &id).await?;
    HostCredential::check(&app.tokens, &row, bearer_token(&headers), None)?.require_host()?;
    if row.ended_at.is_some() {
        return Err(ApiError::Status {
            status: StatusCode::GONE,
            code: "meeting_ended",
            message: "The meeting has ended; its results have been handled.".into(),
        });
    }
    if req.contacts.is_empty() {
        return Err(ApiError::invalid(
            "invalid_contacts",
            "contacts must hold 1 to 50 contacts.",
        ));
    }
    let parsed = parse_contacts(&req.contacts)?;
    let added = db::add_contacts(app.store.pool(), id.as_str(), &parsed)
        .await?
        .ok_or_else(too_many)?;
    record(
        &app,
        &headers,
        Actor::meeting_host(id.as_str()),
        row.account_id.as_deref(),
        "contact.add",
        Target::new("meeting", id.as_str()),
    )
    .await;
    let contacts = db::contacts(app.store.pool(), id.as_str())
        .await?
        .into_iter()
        .map(|c| Contact {
            name: c.name,
            email: c.email,
        })
        .collect();
    Ok(Json(ContactList { added, contacts }))
}

/// Meeting creation's part: the host's `send_results` and the first invited contacts.
pub async fn after_create(
    app: &AppState,
    headers: &HeaderMap,
    meeting: &str,
    send_results: Option<bool>,
    contacts: Option<Vec<(String, String, String)>>,
) -> Result<(), ApiError> {
    let pool = app.store.pool();
    if let Some(send) = send_results {
        db::set_send_results(pool, meeting, send).await?;
    }
    let Some(contacts) = contacts.filter(|c| !c.is_empty()) else {
        return Ok(());
    };
    db::add_contacts(pool, meeting, &contacts)
        .await?
        .ok_or_else(too_many)?;
    let account = app
        .store
        .meeting(
            &crate::domain::MeetingId::parse(meeting).map_err(|e| ApiError::Internal(e.into()))?,
        )
        .await?
        .and_then(|m| m.account_id);
    record(
        app,
        headers,
        Actor::meeting_host(meeting),
        account.as_deref(),
        "contact.add",
        Target::new("meeting", meeting),
    )
    .await;
    Ok(())
}
