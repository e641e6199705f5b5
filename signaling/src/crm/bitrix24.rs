//! Bitrix24 REST through an incoming webhook: `https://{portal}/rest/{user_id}/{code}/{method}`.
//!
//! The webhook URL carries its own credential (the code), so it is kept as a [`SecretString`]
//! and never logged; the `user_id` in it is the user the calls act as.
//!
//! Methods used: `crm.deal.get` (`id`), `crm.deal.contact.items.get` (`id`) then
//! `crm.contact.get` (`id`) per contact (`EMAIL` is a list of `{VALUE, VALUE_TYPE}`),
//! `crm.timeline.comment.add` (`fields: {ENTITY_ID, ENTITY_TYPE: "deal", COMMENT}`) and
//! `tasks.task.add` (`fields: {TITLE, DESCRIPTION, RESPONSIBLE_ID, UF_CRM_TASK: ["D_{id}"],
//! DEADLINE}`). Answers are `{"result": …}` or `{"error": "CODE", "error_description": "…"}`.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use super::http::{self, Answer};
use super::{Contact, CreatedId, CrmConnector, CrmError, Deal, FollowUpTask, SecretString};

/// Contacts read per deal (see the amoCRM connector).
const MAX_CONTACTS: usize = 50;

#[derive(Debug, Clone)]
pub struct Bitrix24Config {
    /// `https://{portal}/rest/{user_id}/{code}/` as the portal admin copied it.
    pub webhook_url: SecretString,
    /// Per-request deadline, including reading the body.
    pub timeout: Duration,
    /// Who gets follow-up tasks when the caller names nobody; the webhook's user otherwise.
    pub default_responsible_id: Option<String>,
}

pub struct Bitrix24 {
    cfg: Bitrix24Config,
    http: reqwest::Client,
    /// The webhook URL, ending in '/'.
    base: SecretString,
    webhook_user_id: String,
}

impl std::fmt::Debug for Bitrix24 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bitrix24")
            .field("webhook_user_id", &self.webhook_user_id)
            .finish_non_exhaustive()
    }
}

impl Bitrix24 {
    /// Checks the webhook URL's shape up front so a typo fails when the CRM is connected, not at
    /// the end of the first meeting.
    pub fn new(cfg: Bitrix24Config, http: reqwest::Client) -> Result<Self, CrmError> {
        let url = cfg.webhook_url.expose().trim();
        let bad = || {
            CrmError::Config(
                "the Bitrix24 webhook URL must look like https://{portal}/rest/{user_id}/{code}/"
                    .into(),
            )
        };
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(bad)?;
        let mut parts = rest.trim_end_matches('/').split('/');
        let (host, rest_kw, user, code) = (parts.next(), parts.next(), parts.next(), parts.next());
        let (Some(host), Some("rest"), Some(user), Some(code), None) =
            (host, rest_kw, user, code, parts.next())
        else {
            return Err(bad());
        };
        if host.is_empty()
            || user.is_empty()
            || !user.bytes().all(|b| b.is_ascii_digit())
            || code.is_empty()
        {
            return Err(bad());
        }
        let base = SecretString::new(format!("{}/", url.trim_end_matches('/')));
        Ok(Bitrix24 {
            webhook_user_id: user.to_owned(),
            base,
            http,
            cfg,
        })
    }

    /// Calls one REST method and returns its `result`. `deal_id` turns a "not found" into
    /// [`CrmError::UnknownDeal`].
    async fn call(
        &self,
        method: &str,
        params: Value,
        deal_id: Option<&str>,
    ) -> Result<Value, CrmError> {
        let url = format!("{}{method}.json", self.base.expose());
        let req = self.http.post(url).json(&params).timeout(self.cfg.timeout);
        let answer = http::send(req, self.cfg.timeout).await?;
        interpret(method, &answer, deal_id)
    }

    async fn read_contact(&self, id: &str) -> Result<Option<Contact>, CrmError> {
        let c = match self
            .call("crm.contact.get", json!({ "id": id }), None)
            .await
        {
            Ok(c) => c,
            // A contact deleted since it was linked: the deal is still readable.
            Err(CrmError::Rejected { detail, .. }) if is_not_found_text(&detail) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let name = ["NAME", "SECOND_NAME", "LAST_NAME"]
            .iter()
            .filter_map(|k| c.get(*k).and_then(Value::as_str))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let mut emails: Vec<(bool, String)> = c
            .get("EMAIL")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|e| {
                        let v = e.get("VALUE")?.as_str()?.trim();
                        let work = e.get("VALUE_TYPE").and_then(Value::as_str) == Some("WORK");
                        (!v.is_empty()).then(|| (work, v.to_owned()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        emails.sort_by_key(|(work, _)| !*work);
        Ok(Some(Contact {
            id: id_text(c.get("ID")).unwrap_or_else(|| id.to_owned()),
            name,
            emails: emails.into_iter().map(|(_, e)| e).collect(),
        }))
    }
}

/// Bitrix24 ids are positive integers; anything else cannot name a deal.
fn deal_number(deal_id: &str) -> Result<u64, CrmError> {
    deal_id
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| CrmError::UnknownDeal(deal_id.to_owned()))
}

/// Ids arrive as numeric strings ("ID": "17") in most methods and as numbers in some.
fn id_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn is_not_found_text(s: &str) -> bool {
    let s = s.to_ascii_lowercase();
    s.contains("not found") || s.contains("error_not_found")
}

fn interpret(method: &str, answer: &Answer, deal_id: Option<&str>) -> Result<Value, CrmError> {
    let status = answer.status.as_u16();
    let parsed: Option<Value> = serde_json::from_slice(&answer.body).ok();
    let Some(v) = parsed.filter(Value::is_object) else {
        // Not a Bitrix24 answer at all (a proxy's error page, a truncated body): the status
        // decides whether it is worth retrying.
        let detail = format!("{method}: {}", http::snippet(&answer.body));
        return Err(if answer.status.is_success() {
            CrmError::Malformed(format!(
                "{method}: expected a JSON object, got {}",
                http::snippet(&answer.body)
            ))
        } else {
            http::status_error(answer, detail)
        });
    };
    if let Some(code) = v.get("error") {
        let code = code.as_str().unwrap_or_default();
        let description = v
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let detail = format!("{method}: {code} {description}").trim().to_owned();
        return Err(match code {
            // Bitrix24 throttles per portal (leaky bucket) and blocks methods that ran too long;
            // both pass with time.
            "QUERY_LIMIT_EXCEEDED" | "OPERATION_TIME_LIMIT" => CrmError::RateLimited {
                retry_after: answer.retry_after(),
            },
            "INTERNAL_SERVER_ERROR" | "ERROR_UNEXPECTED_ANSWER" | "PORTAL_DELETED_TEMPORARY" => {
                CrmError::Server { status, detail }
            }
            "NO_AUTH_FOUND"
            | "INVALID_CREDENTIALS"
            | "expired_token"
            | "invalid_token"
            | "ACCESS_DENIED"
            | "insufficient_scope"
            | "WRONG_AUTH_TYPE" => CrmError::Unauthorized(detail),
            _ if deal_id.is_some()
                && (code == "ERROR_NOT_FOUND" || is_not_found_text(description)) =>
            {
                CrmError::UnknownDeal(deal_id.unwrap_or_default().to_owned())
            }
            _ if answer.status.is_server_error() => CrmError::Server { status, detail },
            _ if answer.status.as_u16() == 429 => CrmError::RateLimited {
                retry_after: answer.retry_after(),
            },
            _ => CrmError::Rejected {
                // Bitrix24 sometimes reports errors with 200; a refusal is a refusal.
                status: if answer.status.is_success() {
                    400
                } else {
                    status
                },
                detail,
            },
        });
    }
    if !answer.status.is_success() {
        return Err(http::status_error(
            answer,
            format!("{method}: {}", http::snippet(&answer.body)),
        ));
    }
    v.get("result")
        .cloned()
        .ok_or_else(|| CrmError::Malformed(format!("{method}: no \"result\" in the answer")))
}

#[async_trait]
impl CrmConnector for Bitrix24 {
    fn system(&self) -> &'static str {
        "bitrix24"
    }

    async fn read_deal(&self, deal_id: &str) -> Result<Deal, CrmError> {
        let id = deal_number(deal_id)?;
        let deal = self
            .call("crm.deal.get", json!({ "id": id }), Some(deal_id))
            .await?;
        if !deal.is_object() {
            return Err(CrmError::Malformed(
                "crm.deal.get: \"result\" is not a deal".into(),
            ));
        }
        let links = self
            .call(
                "crm.deal.contact.items.get",
                json!({ "id": id }),
                Some(deal_id),
            )
            .await?;
        let mut links: Vec<(bool, String)> = links
            .as_array()
            .ok_or_else(|| {
                CrmError::Malformed("crm.deal.contact.items.get: \"result\" is not a list".into())
            })?
            .iter()
            .filter_map(|l| {
                let primary = l.get("IS_PRIMARY").and_then(Value::as_str) == Some("Y");
                Some((primary, id_text(l.get("CONTACT_ID"))?))
            })
            .collect();
        links.sort_by_key(|(primary, _)| !*primary);
        let mut contacts = Vec::new();
        for (_, cid) in links.into_iter().take(MAX_CONTACTS) {
            if let Some(c) = self.read_contact(&cid).await? {
                contacts.push(c);
            }
        }
        Ok(Deal {
            id: id_text(deal.get("ID")).unwrap_or_else(|| deal_id.to_owned()),
            title: deal
                .get("TITLE")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            responsible_user_id: id_text(deal.get("ASSIGNED_BY_ID")),
            contacts,
        })
    }

    async fn add_note(&self, deal_id: &str, text: &str) -> Result<CreatedId, CrmError> {
        let id = deal_number(deal_id)?;
        let params = json!({
            "fields": { "ENTITY_ID": id, "ENTITY_TYPE": "deal", "COMMENT": text }
        });
        let result = self
            .call("crm.timeline.comment.add", params, Some(deal_id))
            .await?;
        id_text(Some(&result)).map(CreatedId).ok_or_else(|| {
            CrmError::Malformed("crm.timeline.comment.add: \"result\" is not an id".into())
        })
    }

    async fn create_task(&self, deal_id: &str, task: &FollowUpTask) -> Result<CreatedId, CrmError> {
        let id = deal_number(deal_id)?;
        let responsible = task
            .responsible_user_id
            .clone()
            .or_else(|| self.cfg.default_responsible_id.clone())
            .unwrap_or_else(|| self.webhook_user_id.clone());
        let params = json!({
            "fields": {
                "TITLE": task.title,
                "DESCRIPTION": task.description,
                "RESPONSIBLE_ID": responsible,
                "UF_CRM_TASK": [format!("D_{id}")],
                "DEADLINE": task.due.to_rfc3339(),
            }
        });
        let result = self.call("tasks.task.add", params, Some(deal_id)).await?;
        // `{"task": {"id": "123", …}}`
        id_text(result.get("task").and_then(|t| t.get("id")))
            .map(CreatedId)
            .ok_or_else(|| CrmError::Malformed("tasks.task.add: no task id in \"result\"".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> Bitrix24Config {
        Bitrix24Config {
            webhook_url: SecretString::new(url),
            timeout: Duration::from_secs(5),
            default_responsible_id: None,
        }
    }

    #[test]
    fn webhook_url_shape_is_checked() {
        let http = reqwest::Client::new();
        let ok = Bitrix24::new(
            cfg("https://acme.bitrix24.ru/rest/1/abc123xyz/"),
            http.clone(),
        )
        .expect("valid");
        assert_eq!(ok.webhook_user_id, "1");
        assert_eq!(
            ok.base.expose(),
            "https://acme.bitrix24.ru/rest/1/abc123xyz/"
        );
        for bad in [
            "acme.bitrix24.ru/rest/1/abc/",
            "https://acme.bitrix24.ru/rest/abc/",
            "https://acme.bitrix24.ru/api/1/abc/",
            "https://acme.bitrix24.ru/rest/x/abc/",
            "https://acme.bitrix24.ru/rest/1/abc/crm.deal.get",
        ] {
            assert!(
                matches!(
                    Bitrix24::new(cfg(bad), http.clone()),
                    Err(CrmError::Config(_))
                ),
                "{bad}"
            );
        }
        // The Debug output must not carry the code.
        assert!(!format!("{ok:?}").contains("abc123xyz"));
    }
}
