//! What each contained AWS key did (issue 16): after the kill, its CloudTrail events
//! since the key was created, and the ones that look like a door the attacker opened
//! (a new user or key, a role, a login profile, a trust policy, an attached policy, a
//! role assumed) as incident tasks, each naming what was made, by which event and when,
//! and the command that closes it.
//!
//! Not a plan step: it changes nothing, needs no authority beyond cordon's own
//! `cloudtrail:LookupEvents`, and must never block or fail containment (DESIGN.md: kill
//! first, then quarantine and investigate). So it is a read after the run, and any
//! failure (a missing permission, throttling past the retries) is said on the finding as
//! "activity not checked: why", never as an error of the run.

use std::collections::BTreeMap;
use std::time::Duration;

use cordon_connector::Action;
use serde::Serialize;

use crate::engine::ApplyReport;
use crate::gate::Principal;
use crate::plan::Plan;
use crate::state::ObjectKind;
use crate::workspace::Workspace;

/// LookupEvents is limited to 2 requests a second per account and region: past this
/// many keys in one run, the rest are named with the command that looks them up.
const MAX_KEYS: usize = 25;
/// Tries of one lookup when AWS throttles or fails transiently.
const TRIES: u32 = 3;

/// One key's activity, on its finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Activity {
    /// Events CloudTrail recorded for the key (`None`: not checked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<usize>,
    /// Since when (the key's creation, from the evidence snapshot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// What looks like persistence, each as the instruction that closes it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub persistence: Vec<String>,
    /// Why the activity was not checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_checked: Option<String>,
    /// More events than cordon read, or tasks that could not be recorded.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Activity {
    fn not_checked(why: String) -> Activity {
        Activity {
            events: None,
            since: None,
            persistence: vec![],
            not_checked: Some(why),
            notes: vec![],
        }
    }

    /// One line for the summary.
    pub fn describe(&self, key_id: &str) -> String {
        let mut s = match (&self.not_checked, self.events) {
            (Some(why), _) => format!("activity of `{key_id}` not checked: {why}"),
            (None, n) => format!(
                "activity of `{key_id}`: {} events since {}, {} look like persistence",
                n.unwrap_or(0),
                self.since.as_deref().unwrap_or("?"),
                self.persistence.len()
            ),
        };
        for p in &self.persistence {
            s.push_str(&format!("\n  - {p}"));
        }
        for n in &self.notes {
            s.push_str(&format!("\n  note: {n}"));
        }
        s
    }
}

/// Look up the activity of every AWS key the run disabled (or found disabled), by key
/// id; with an incident, each door becomes a task of it (deduplicated by title, so a
/// re-run adds none).
pub async fn after_containment(
    ws: &Workspace,
    plan: &Plan,
    report: &ApplyReport,
    principal: &Principal,
) -> BTreeMap<String, Activity> {
    let mut out = BTreeMap::new();
    let contained: Vec<&cordon_connector::PlanStep> = plan
        .steps
        .iter()
        .filter(|s| s.action == Action::AwsDisableAccessKey)
        .filter(|s| {
            report
                .steps
                .iter()
                .any(|r| r.step == s.id && r.outcome.as_ref().is_some_and(|o| o.is_success()))
        })
        .collect();
    if contained.is_empty() {
        return out;
    }
    let aws = match ws.aws().await {
        Ok(a) => a,
        Err(e) => {
            for s in contained {
                out.insert(
                    s.target.id.clone(),
                    Activity::not_checked(format!("cannot reach AWS: {}", e.message)),
                );
            }
            return out;
        }
    };
    for (i, s) in contained.into_iter().enumerate() {
        let key_id = s.target.id.as_str();
        if i >= MAX_KEYS {
            out.insert(
                key_id.to_owned(),
                Activity::not_checked(format!(
                    "cordon looks up at most {MAX_KEYS} keys a run (CloudTrail answers 2 \
                     lookups a second): run `aws cloudtrail lookup-events --region us-east-1 \
                     --lookup-attributes AttributeKey=AccessKeyId,AttributeValue={key_id}`"
                )),
            );
            continue;
        }
        let since = report
            .steps
            .iter()
            .find(|r| r.step == s.id)
            .and_then(|r| r.evidence.as_deref())
            .and_then(|h| created_at(ws, h, key_id));
        let mut tries = 0;
        let found = loop {
            tries += 1;
            match aws
                .key_activity(s.target.account.as_deref(), key_id, since.as_deref())
                .await
            {
                Err(e) if e.is_retryable() && tries < TRIES => {
                    let wait = e
                        .retry_after
                        .unwrap_or(Duration::from_millis(500 << tries))
                        .min(Duration::from_secs(5));
                    tokio::time::sleep(wait).await;
                }
                other => break other,
            }
        };
        let activity = match found {
            Err(e) => Activity::not_checked(e.message),
            Ok(a) => {
                let mut act = Activity {
                    events: Some(a.events.len()),
                    since: Some(a.since.clone()),
                    persistence: a.doors.iter().map(|d| d.instruction(key_id)).collect(),
                    not_checked: None,
                    notes: a.truncated.into_iter().collect(),
                };
                if let Some(incident) = &plan.incident {
                    for title in &act.persistence {
                        if let Err(e) = super::tasks::add_task(ws, incident, principal, title, None)
                        {
                            act.notes.push(format!(
                                "the task could not be added to incident `{incident}`: {}",
                                e.message
                            ));
                        }
                    }
                }
                act
            }
        };
        out.insert(key_id.to_owned(), activity);
    }
    out
}

/// The key's creation time from the evidence snapshot taken before it was disabled.
fn created_at(ws: &Workspace, hash: &str, key_id: &str) -> Option<String> {
    let bytes = ws
        .store()
        .get(ObjectKind::Evidence, &format!("{hash}.json"))
        .ok()??;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let key = v.get("access_key")?;
    (key.get("access_key_id")?.as_str()? == key_id)
        .then(|| key.get("create_date")?.as_str().map(str::to_owned))?
}
