//! A leaked GitHub App private key (issue 17 item 5).
//!
//! No API deletes an App's private key: only the App's owner can, in the App's
//! settings ("Deleting private keys",
//! https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/managing-private-keys-for-github-apps#deleting-private-keys).
//! What cordon can do with the key itself:
//! * identify the App: a JWT signed with the key (RS256, `iss` = the App's id)
//!   and `GET /app` ("Get the authenticated app",
//!   https://docs.github.com/en/rest/apps/apps#get-the-authenticated-app);
//! * suspend the App's installations, which blocks the App's access to every
//!   account it is installed on, so no installation token can be minted with
//!   the key (`PUT /app/installations/{installation_id}/suspended`, JWT auth,
//!   https://docs.github.com/en/rest/apps/apps#suspend-an-app-installation);
//! * check later that the key no longer works: `GET /app` with a JWT signed by
//!   it answers 401 once the owner has deleted it.
//!
//! So the result is partial until the owner deletes the key, and says so with
//! the exact instruction.

use cordon_connector::{ConnectorError, Outcome, StepContext, TargetState, Verification};
use http::{Method, StatusCode};
use octocrab::Octocrab;
use serde_json::{json, Value};

use crate::connector::GithubConnector;
use crate::http::{send_on, status_error, Api, Auth};

/// Upper bound on pages of installations read (100 a page).
const MAX_PAGES: u32 = 100;

/// What `GET /app` said about the key.
enum KeyState {
    /// 401: GitHub refuses a JWT signed with the key.
    Refused,
    /// The App the key authenticates as, and its installations.
    Works {
        app: Value,
        installations: Vec<Value>,
    },
}

fn app_id(ctx: &StepContext<'_>) -> Result<u64, ConnectorError> {
    ctx.step
        .params
        .get("app_id")
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        })
        .ok_or_else(|| {
            ConnectorError::permanent(format!(
                "step `{}`: `app_id` must be the GitHub App's numeric id (the JWT names it)",
                ctx.step.id
            ))
        })
}

/// Where the App's owner deletes a private key, and what to do there.
pub(crate) fn owner_instruction(app: &Value, key_fingerprint: &str) -> String {
    let slug = app["slug"].as_str().unwrap_or("APP");
    let owner = app["owner"]["login"].as_str().unwrap_or("OWNER");
    let url = if app["owner"]["type"].as_str() == Some("Organization") {
        format!("https://github.com/organizations/{owner}/settings/apps/{slug}")
    } else {
        format!("https://github.com/settings/apps/{slug}")
    };
    format!(
        "the App's owner (`{owner}`) must delete the leaked private key ({key_fingerprint}) at \
         {url} under \"Private keys\" (GitHub has no API for it), generating a new key first if \
         the App must keep working; then `cordon verify PLAN` proves the key refused"
    )
}

impl GithubConnector {
    fn leaked_app_client(&self, ctx: &StepContext<'_>) -> Result<(u64, Octocrab), ConnectorError> {
        let id = app_id(ctx)?;
        let Some(pem) = ctx.secret else {
            return Err(ConnectorError::permanent(format!(
                "step `{}` needs the leaked app private key (it signs the JWT): supply it when \
                 applying (`--secrets-stdin`, or the scanner report)",
                ctx.step.id
            )));
        };
        Ok((id, Api::app_client(self.config(), id, pem)?))
    }

    async fn app_key_state(&self, ctx: &StepContext<'_>) -> Result<KeyState, ConnectorError> {
        let (id, client) = self.leaked_app_client(ctx)?;
        let reply = send_on(&client, Method::GET, "/app", Auth::Client, None::<&()>).await?;
        if reply.status == StatusCode::UNAUTHORIZED {
            return Ok(KeyState::Refused);
        }
        if reply.status != StatusCode::OK {
            return Err(status_error(
                &format!("identifying github app {id} with a jwt signed by the leaked key"),
                &reply,
            ));
        }
        let app = reply.json().unwrap_or(Value::Null);
        if app["id"].as_u64() != Some(id) {
            return Err(ConnectorError::permanent(format!(
                "github answered GET /app for another app than {id}"
            )));
        }
        let mut installations = Vec::new();
        for page in 1..=MAX_PAGES {
            let reply = send_on(
                &client,
                Method::GET,
                &format!("/app/installations?per_page=100&page={page}"),
                Auth::Client,
                None::<&()>,
            )
            .await?;
            if reply.status != StatusCode::OK {
                return Err(status_error(
                    &format!("listing the installations of github app {id}"),
                    &reply,
                ));
            }
            let list = reply
                .json()
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default();
            let n = list.len();
            installations.extend(list);
            if n < 100 {
                break;
            }
        }
        Ok(KeyState::Works { app, installations })
    }

    fn app_evidence(app: &Value, installations: &[Value]) -> Value {
        json!({
            "app": {
                "id": app["id"], "slug": app["slug"], "name": app["name"],
                "owner": { "login": app["owner"]["login"], "type": app["owner"]["type"] },
                "html_url": app["html_url"],
            },
            "installations": installations.iter().map(|i| json!({
                "id": i["id"],
                "account": i["account"]["login"],
                "suspended_at": i["suspended_at"],
            })).collect::<Vec<_>>(),
        })
    }

    pub(crate) async fn describe_app_key(
        &self,
        ctx: &StepContext<'_>,
    ) -> Result<TargetState, ConnectorError> {
        Ok(match self.app_key_state(ctx).await? {
            KeyState::Refused => TargetState {
                contained: true,
                evidence: json!({
                    "app_id": app_id(ctx)?,
                    "github": "a jwt signed with the key is refused (401 on GET /app): the key no longer works",
                }),
            },
            KeyState::Works { app, installations } => TargetState {
                contained: installations.iter().all(|i| !i["suspended_at"].is_null()),
                evidence: Self::app_evidence(&app, &installations),
            },
        })
    }

    pub(crate) async fn suspend_app_installations(
        &self,
        ctx: &StepContext<'_>,
    ) -> Result<Outcome, ConnectorError> {
        let key = &ctx.step.target.id;
        let (app, installations) =
            match self.app_key_state(ctx).await? {
                KeyState::Refused => return Ok(Outcome::AlreadyContained {
                    detail:
                        "a jwt signed with the leaked key is already refused (401 on GET /app): \
                             its owner deleted it"
                            .into(),
                }),
                KeyState::Works { app, installations } => (app, installations),
            };
        let (_, client) = self.leaked_app_client(ctx)?;
        let mut suspended = Vec::new();
        for i in installations.iter().filter(|i| i["suspended_at"].is_null()) {
            let Some(id) = i["id"].as_u64() else { continue };
            let reply = send_on(
                &client,
                Method::PUT,
                &format!("/app/installations/{id}/suspended"),
                Auth::Client,
                None::<&()>,
            )
            .await?;
            if reply.status != StatusCode::NO_CONTENT {
                return Err(status_error(
                    &format!(
                        "suspending installation {id}{}",
                        if suspended.is_empty() {
                            String::new()
                        } else {
                            format!(" (already suspended: {})", suspended.join(", "))
                        }
                    ),
                    &reply,
                ));
            }
            suspended.push(format!(
                "{id} on `{}`",
                i["account"]["login"].as_str().unwrap_or("?")
            ));
        }
        let name = format!(
            "github app `{}` ({})",
            app["slug"].as_str().unwrap_or("?"),
            app["id"]
        );
        let rest = owner_instruction(&app, key);
        Ok(if suspended.is_empty() {
            Outcome::AlreadyContained {
                detail: format!(
                    "every installation of {name} was already suspended; the key still \
                     authenticates as the app: {rest}"
                ),
            }
        } else {
            Outcome::Done {
                detail: format!(
                    "suspended {} installation(s) of {name}: {} (the app can no longer reach \
                     those accounts, so no installation token can be minted with the key); the \
                     key still authenticates as the app: {rest}",
                    suspended.len(),
                    suspended.join(", ")
                ),
            }
        })
    }

    pub(crate) async fn verify_app_key(
        &self,
        ctx: &StepContext<'_>,
    ) -> Result<Verification, ConnectorError> {
        Ok(match self.app_key_state(ctx).await? {
            KeyState::Refused => Verification::Dead {
                detail: "a jwt signed with the leaked key is refused (401 on GET /app): the key \
                         was deleted"
                    .into(),
            },
            KeyState::Works { app, installations } => {
                let live: Vec<String> = installations
                    .iter()
                    .filter(|i| i["suspended_at"].is_null())
                    .map(|i| i["id"].to_string())
                    .collect();
                if live.is_empty() {
                    Verification::Partial {
                        detail: format!(
                            "every installation is suspended (read back), but the key still \
                             authenticates as the app (200 on GET /app): {}",
                            owner_instruction(&app, &ctx.step.target.id)
                        ),
                    }
                } else {
                    Verification::Alive {
                        detail: format!(
                            "installation(s) {} of the app are not suspended",
                            live.join(", ")
                        ),
                    }
                }
            }
        })
    }
}
