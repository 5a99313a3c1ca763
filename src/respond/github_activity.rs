//! What a leaked GitHub token did, once it is revoked: each organisation's
//! audit log searched by the token's `hashed_token` (cordon's fingerprint is
//! exactly that value), and what looks like persistence — an SSH or deploy
//! key, a webhook, a branch protection or ruleset change, a new token or app
//! grant, a new member — turned into an incident task with the exact way to
//! undo it. Revoking a token does not remove the keys or hooks it created.
//!
//! This runs after the kill and never fails the run: whatever stops it (no
//! organisation known, not GitHub Enterprise Cloud, no owner's token, a rate
//! limit) is reported as "activity not checked: why". It reads a log about the
//! token with cordon's own credential and sends nothing of the token but its
//! hash, so it needs no decision of the policy (as reading a secret scanning
//! alert does not); the leaked token itself is never used here.

use std::collections::BTreeMap;

use cordon_github::{AuditEvent, TokenActivity};
use serde::Serialize;

use crate::gate::Principal;
use crate::workspace::Workspace;

/// Audit-log searches (token × organisation) at most per run: GitHub allows
/// 1,750 an hour, and a report of thousands of tokens must not spend them all.
pub const MAX_SEARCHES: usize = 20;

/// `CORDON_GITHUB_ORGS` (comma-separated), for front ends without flags; a
/// malformed name is refused by the search itself and reported there.
pub fn orgs_from_env() -> Vec<String> {
    std::env::var("CORDON_GITHUB_ORGS")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The result of one search, or why there was none.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ActivityCheck {
    /// The organisation searched (none when no organisation is known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Events performed with the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<usize>,
    /// How many of them look like persistence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistence: Option<usize>,
    /// Each persistence-looking event: what, where, when, and how to undo it
    /// (the title of its incident task).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub doors: Vec<String>,
    /// More events than cordon reads: the rest were not looked at.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Whether the doors are tasks of the incident (`false`: the plan has no
    /// incident, or recording failed, which `not_checked` then says).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tasks_recorded: bool,
    /// Why the log was not (fully) read, or the tasks not recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_checked: Option<String>,
}

impl ActivityCheck {
    fn not_checked(org: Option<&str>, why: String) -> Self {
        ActivityCheck {
            org: org.map(str::to_owned),
            not_checked: Some(why),
            ..ActivityCheck::default()
        }
    }

    /// One line for the summary.
    pub fn describe(&self) -> String {
        let place = self
            .org
            .as_deref()
            .map(|o| format!(" in `{o}`"))
            .unwrap_or_default();
        match (self.events, &self.not_checked) {
            (None, Some(why)) => format!("activity{place} not checked: {why}"),
            (Some(n), extra) => {
                let mut s = format!(
                    "activity{place}: {n} event(s) with the token{}, {} look like persistence",
                    if self.truncated {
                        " (only the newest read)"
                    } else {
                        ""
                    },
                    self.persistence.unwrap_or(0)
                );
                if !self.doors.is_empty() {
                    s.push_str(if self.tasks_recorded {
                        " (incident tasks)"
                    } else {
                        " (no open incident: pass --incident to make them tasks)"
                    });
                }
                if let Some(why) = extra {
                    s.push_str(&format!("; {why}"));
                }
                s
            }
            (None, None) => format!("activity{place} not checked"),
        }
    }
}

/// A leaked GitHub token to look for: its finding, fingerprint and label.
pub struct Searched {
    pub finding: usize,
    pub fingerprint: String,
    /// As the summary names it: `github ghp sha256:…`.
    pub label: String,
}

/// Search `orgs`' audit logs for each token; record the doors as tasks of
/// `incident` when there is one. Never fails: every obstacle is a result.
pub async fn check(
    ws: &Workspace,
    orgs: &[String],
    tokens: &[Searched],
    incident: Option<&str>,
    requester: &Principal,
) -> BTreeMap<usize, Vec<ActivityCheck>> {
    let mut out: BTreeMap<usize, Vec<ActivityCheck>> = BTreeMap::new();
    if tokens.is_empty() {
        return out;
    }
    if orgs.is_empty() {
        for t in tokens {
            out.entry(t.finding)
                .or_default()
                .push(ActivityCheck::not_checked(
                None,
                "no organisation known: pass `--github-org ORG` (or set CORDON_GITHUB_ORGS) to \
                 search its audit log for what the token did"
                    .into(),
            ));
        }
        return out;
    }
    let gh = match ws.github(false) {
        Ok(g) => g,
        Err(e) => {
            for t in tokens {
                for org in orgs {
                    out.entry(t.finding)
                        .or_default()
                        .push(ActivityCheck::not_checked(Some(org), e.message.clone()));
                }
            }
            return out;
        }
    };
    let mut searches = 0usize;
    for t in tokens {
        for org in orgs {
            let check = if searches >= MAX_SEARCHES {
                ActivityCheck::not_checked(
                    Some(org),
                    format!(
                        "more than {MAX_SEARCHES} audit-log searches in one run; search `{org}`'s \
                         audit log for hashed_token:\"{}\"",
                        t.fingerprint
                    ),
                )
            } else {
                searches += 1;
                match gh.token_activity(org, &t.fingerprint).await {
                    Ok(found) => judge(ws, org, t, &found, incident, requester),
                    Err(e) => ActivityCheck::not_checked(Some(org), e.message),
                }
            };
            out.entry(t.finding).or_default().push(check);
        }
    }
    out
}

fn judge(
    ws: &Workspace,
    org: &str,
    t: &Searched,
    found: &TokenActivity,
    incident: Option<&str>,
    requester: &Principal,
) -> ActivityCheck {
    let doors: Vec<String> = found
        .events
        .iter()
        .filter_map(|e| door(e, org, &t.label))
        .collect();
    let mut check = ActivityCheck {
        org: Some(org.to_owned()),
        events: Some(found.events.len()),
        persistence: Some(doors.len()),
        truncated: found.truncated,
        ..ActivityCheck::default()
    };
    if let Some(incident) = incident {
        let mut recorded = true;
        for title in &doors {
            if let Err(e) = super::tasks::add_task(ws, incident, requester, title, None) {
                recorded = false;
                check.not_checked = Some(format!(
                    "the tasks could not be recorded on incident `{incident}`: {}",
                    e.message
                ));
                break;
            }
        }
        check.tasks_recorded = recorded && !doors.is_empty();
    }
    check.doors = doors;
    check
}

/// When an event happened, as people read it.
fn when(e: &AuditEvent) -> String {
    e.timestamp
        .or(e.created_at)
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "at an unknown time".into())
}

/// The task for an event that leaves a way back in (or widens access), or
/// `None` for one that does not. The categories and actions are GitHub's
/// (https://docs.github.com/en/enterprise-cloud@latest/organizations/keeping-your-organization-secure/managing-security-settings-for-your-organization/audit-log-events-for-your-organization).
pub fn door(e: &AuditEvent, org: &str, token: &str) -> Option<String> {
    let (category, op) = e.action.split_once('.').unwrap_or((e.action.as_str(), ""));
    let by = format!("on {} with the leaked token {token}", when(e));
    let repo = e.repo.as_deref();
    let fingerprint = e
        .deploy_key_fingerprint
        .as_deref()
        .or(e.fingerprint.as_deref());
    let title = e
        .title
        .as_deref()
        .map(|t| format!(" (\"{t}\")"))
        .unwrap_or_default();
    let text = match (category, op) {
        ("public_key", "create" | "update") | ("deploy_key", "create") => {
            match (repo, fingerprint) {
                (Some(r), Some(fp)) => format!(
                "delete deploy key {fp}{title} added to `{r}` {by} (revoking the token does not \
                 remove it): `cordon revoke github-deploy-key --repo {r} --fingerprint {fp}`"
            ),
                (Some(r), None) => format!(
                "delete the deploy key{title} added to `{r}` {by} (revoking the token does not \
                 remove it): the repository's Settings → Deploy keys"
            ),
                (None, _) => format!(
                "delete SSH key {}{title} added to the account of `{}` {by} (revoking the token \
                 does not remove it): its owner deletes it at https://github.com/settings/keys",
                fingerprint.unwrap_or("(fingerprint not in the log)"),
                e.user.as_deref().or(e.actor.as_deref()).unwrap_or("the token's owner")
            ),
            }
        }
        ("hook", "create" | "config_changed" | "events_changed" | "active_changed") => {
            let id = e.hook_id.map(|i| i.to_string());
            let url = e
                .hook_url()
                .map(|u| format!(" sending to {u}"))
                .unwrap_or_default();
            let verb = if op == "create" { "created" } else { "changed" };
            match (repo, id) {
                (Some(r), Some(id)) => format!(
                    "remove webhook {id}{url} {verb} on `{r}` {by} unless it is yours: `DELETE \
                     /repos/{r}/hooks/{id}` or the repository's Settings → Webhooks"
                ),
                (None, Some(id)) => format!(
                    "remove organisation webhook {id}{url} {verb} on `{org}` {by} unless it is \
                     yours: `DELETE /orgs/{org}/hooks/{id}` or the organisation's Settings → \
                     Webhooks"
                ),
                (r, None) => format!(
                    "review the webhook{url} {verb} on `{}` {by}: Settings → Webhooks",
                    r.unwrap_or(org)
                ),
            }
        }
        ("protected_branch", _) | ("repository_ruleset", _) => format!(
            "restore the branch protection of `{}`{} ({}) changed {by}: the repository's Settings \
             → Branches and Rules",
            repo.unwrap_or(org),
            e.name
                .as_deref()
                .map(|n| format!(" on `{n}`"))
                .unwrap_or_default(),
            e.action
        ),
        ("workflows", _) | ("environment", _) => format!(
            "review the Actions change {} on `{}` {by}: a workflow or environment change can run \
             code with the repository's secrets",
            e.action,
            repo.unwrap_or(org)
        ),
        ("personal_access_token", _)
        | ("oauth_authorization", "create")
        | ("oauth_access", "create")
        | ("integration_installation", "create" | "repositories_added")
        | ("org_credential_authorization", "grant") => format!(
            "review the new credential or app access ({}) {by}: revoke it unless expected \
             (organisation Settings → Personal access tokens, OAuth app policy, GitHub Apps)",
            e.action
        ),
        ("repo", "add_member" | "update_member")
        | ("org", "add_member" | "invite_member" | "update_member")
        | ("team", "add_member" | "add_repository") => format!(
            "remove the access given to `{}` ({}) on `{}` {by} unless expected",
            e.user.as_deref().or(e.team.as_deref()).unwrap_or("someone"),
            e.action,
            repo.unwrap_or(org)
        ),
        _ => return None,
    };
    Some(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn ev(action: &str) -> AuditEvent {
        AuditEvent {
            action: action.into(),
            timestamp: Some(1_764_582_600_000),
            repo: Some("o/r".into()),
            ..AuditEvent::default()
        }
    }

    #[test]
    fn keys_and_hooks_are_doors_with_their_undo() {
        let mut k = ev("public_key.create");
        k.fingerprint = Some("SHA256:abc".into());
        let t = door(&k, "o", "github ghp sha256:x").unwrap();
        assert!(
            t.contains("`cordon revoke github-deploy-key --repo o/r --fingerprint SHA256:abc`")
                && t.contains("2025-12-01 09:50 UTC")
                && t.contains("github ghp sha256:x"),
            "{t}"
        );
        let mut h = ev("hook.create");
        h.hook_id = Some(9);
        let t = door(&h, "o", "t").unwrap();
        assert!(t.contains("DELETE /repos/o/r/hooks/9"), "{t}");
        h.repo = None;
        assert!(door(&h, "o", "t")
            .unwrap()
            .contains("DELETE /orgs/o/hooks/9"));
        assert!(door(&ev("protected_branch.destroy"), "o", "t").is_some());
        assert!(door(&ev("org.add_member"), "o", "t").is_some());
        assert!(door(&ev("repo.download_zip"), "o", "t").is_none());
        assert!(door(&ev("git.clone"), "o", "t").is_none());
    }

    #[test]
    fn a_check_says_what_it_found_or_why_not() {
        let c = ActivityCheck::not_checked(Some("o"), "github answered 404".into());
        assert_eq!(
            c.describe(),
            "activity in `o` not checked: github answered 404"
        );
        let c = ActivityCheck {
            org: Some("o".into()),
            events: Some(3),
            persistence: Some(1),
            doors: vec!["x".into()],
            tasks_recorded: true,
            ..ActivityCheck::default()
        };
        assert_eq!(
            c.describe(),
            "activity in `o`: 3 event(s) with the token, 1 look like persistence (incident tasks)"
        );
    }
}
