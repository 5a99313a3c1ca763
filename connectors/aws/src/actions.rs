//! What each action reads, changes and proves. Every change is preceded by a read of the
//! same control, so a second run finds it in place and reports `AlreadyContained`.

use aws_sdk_iam::types::StatusType;
use cordon_connector::{
    Action, ConnectorError, Outcome, StepContext, Target, TargetState, Verification,
};
use serde_json::{json, Value};

use crate::client::AccountClients;
use crate::clock;
use crate::config::QuarantineMode;
use crate::error::{classify, coded, error_code};
use crate::policy::{
    decode_document, deny_all_document, is_deny_all, is_managed_revoke, is_revoke_group,
    managed_revoke_name, managed_revoke_plan_part, revoke_cutoff, revoke_group_name,
    revoke_sessions_document, revoke_sid, AWS_DENY_ALL_POLICY_ARN, CORDON_POLICY_PATH,
    MANAGED_QUARANTINE_POLICY_ARN, QUARANTINE_GROUP_NAME, QUARANTINE_POLICY_NAME,
    REVOKE_SESSIONS_MANAGED_PREFIX, REVOKE_SESSIONS_POLICY_NAME,
};
use crate::snapshot::{self, key_owner, now_rfc3339, role_snapshot, user_snapshot};
use crate::AwsConnector;

/// Controls a restore step may put back (step param `controls`; default: all).
pub const CONTROL_QUARANTINE: &str = "quarantine";
pub const CONTROL_MANAGED_V3: &str = "managed-v3";
pub const CONTROL_REVOKE_SESSIONS: &str = "revoke-sessions";
pub const CONTROL_LOGIN_PROFILE: &str = "login-profile";

/// An IAM principal cordon puts controls on.
#[derive(Clone, Copy)]
enum Principal<'a> {
    User(&'a str),
    Role(&'a str),
}

impl Principal<'_> {
    fn label(&self) -> String {
        match self {
            Principal::User(n) => format!("user `{n}`"),
            Principal::Role(n) => format!("role `{n}`"),
        }
    }
}

/// The state of cordon's controls on one principal.
#[derive(Debug, Clone, PartialEq)]
struct Controls {
    quarantine_doc: Option<Value>,
    revoke_doc: Option<Value>,
    managed_v3: bool,
    /// Users only: whether a console password exists.
    login_profile: bool,
    /// `AWSDenyAll` attached (the quarantine's fallback at the inline-size quota).
    deny_all_attached: bool,
    /// Users only: a member of `cordon-quarantine` (the fallback at both quotas).
    in_quarantine_group: bool,
    /// The ARN of cordon's customer-managed session cut-off attached (the cut-off's
    /// fallback at the inline-size quota), if any.
    revoke_managed: Option<String>,
    /// Its document, when read live (`None` from a snapshot).
    revoke_managed_doc: Option<Value>,
    /// Users only: the name of cordon's session cut-off group the user is in (the
    /// cut-off's fallback at both the inline-size and the attached-policies quota).
    revoke_group: Option<String>,
    /// That group's cut-off document, when read live (`None` from a snapshot).
    revoke_group_doc: Option<Value>,
}

impl Controls {
    fn from_snapshot(s: &Value) -> Controls {
        Controls {
            quarantine_doc: snapshot::inline_policy(s, QUARANTINE_POLICY_NAME).cloned(),
            revoke_doc: snapshot::inline_policy(s, REVOKE_SESSIONS_POLICY_NAME).cloned(),
            managed_v3: snapshot::has_attached(s, MANAGED_QUARANTINE_POLICY_ARN),
            login_profile: snapshot::has_login_profile(s),
            deny_all_attached: snapshot::has_attached(s, AWS_DENY_ALL_POLICY_ARN),
            in_quarantine_group: s.get("groups").and_then(Value::as_array).is_some_and(|g| {
                g.iter()
                    .any(|g| g.get("name").and_then(Value::as_str) == Some(QUARANTINE_GROUP_NAME))
            }),
            revoke_managed: managed_revoke_of(s),
            revoke_managed_doc: None,
            revoke_group: revoke_group_of(s),
            revoke_group_doc: None,
        }
    }

    fn quarantined(&self, mode: QuarantineMode) -> bool {
        match mode {
            QuarantineMode::InlineDeny => {
                self.quarantine_doc.as_ref().is_some_and(is_deny_all)
                    || self.deny_all_attached
                    || self.in_quarantine_group
            }
            QuarantineMode::ManagedV3 => self.managed_v3,
        }
    }

    fn revoked_for(&self, plan_id: &str) -> bool {
        self.revoke_doc
            .as_ref()
            .and_then(revoke_cutoff)
            .is_some_and(|(_, sid)| sid == revoke_sid(plan_id))
            || self.revoke_managed.as_ref().is_some_and(|arn| {
                arn.contains(&format!(
                    "/{REVOKE_SESSIONS_MANAGED_PREFIX}{}-",
                    managed_revoke_plan_part(plan_id)
                ))
            })
            || self.revoke_group.as_ref().is_some_and(|g| {
                g.starts_with(&format!(
                    "{REVOKE_SESSIONS_MANAGED_PREFIX}{}-",
                    managed_revoke_plan_part(plan_id)
                ))
            })
    }

    /// Whether any form of cordon's session cut-off is in place.
    fn any_cutoff(&self) -> bool {
        self.revoke_doc.is_some() || self.revoke_managed.is_some() || self.revoke_group.is_some()
    }

    /// The latest cut-off in place, inline, managed or a group's (those when read):
    /// removing them re-enables the sessions issued before it. RFC 3339 UTC times in
    /// one format compare as strings.
    fn cutoff(&self) -> Option<String> {
        [
            &self.revoke_doc,
            &self.revoke_managed_doc,
            &self.revoke_group_doc,
        ]
        .into_iter()
        .flatten()
        .filter_map(revoke_cutoff)
        .map(|(c, _)| c)
        .max()
    }
}

/// cordon's managed session cut-off among a snapshot's attached policies.
fn managed_revoke_of(s: &Value) -> Option<String> {
    s.get("attached_policies")?
        .as_array()?
        .iter()
        .filter_map(|p| p.get("arn").and_then(Value::as_str))
        .find(|a| is_managed_revoke(a))
        .map(str::to_owned)
}

/// cordon's session cut-off group among a (user) snapshot's groups.
fn revoke_group_of(s: &Value) -> Option<String> {
    s.get("groups")?
        .as_array()?
        .iter()
        .filter_map(|g| {
            Some((
                g.get("name").and_then(Value::as_str)?,
                g.get("arn").and_then(Value::as_str)?,
            ))
        })
        .find(|(n, a)| is_revoke_group(n, a))
        .map(|(n, _)| n.to_owned())
}

/// Step params, parsed once. See the crate docs for their meaning.
struct Params {
    user: Option<String>,
    quarantine: QuarantineMode,
    delete_login_profile: bool,
    reactivate_key: bool,
    revive_sessions: bool,
    controls: Vec<String>,
    /// A key's step (param `credentials`): read only the user's access keys
    /// (`access-keys`, planned when the same plan quarantines the user, whose snapshot
    /// reads the rest) or all of the user's credentials (`all`, the default).
    keys_only: bool,
}

impl Params {
    fn parse(conn: &AwsConnector, ctx: &StepContext<'_>) -> Result<Params, ConnectorError> {
        let step = ctx.step;
        let quarantine = match step.param_str("quarantine") {
            Some(m) => QuarantineMode::parse(m)?,
            None => conn.config().quarantine_mode,
        };
        let flag = |k: &str, default: bool| -> Result<bool, ConnectorError> {
            match step.params.get(k) {
                None => Ok(default),
                Some(Value::Bool(b)) => Ok(*b),
                Some(other) => Err(ConnectorError::permanent(format!(
                    "step `{}` param `{k}` must be true or false, not `{other}`",
                    step.id
                ))),
            }
        };
        let controls = match step.params.get("controls") {
            None => vec![
                CONTROL_QUARANTINE.to_owned(),
                CONTROL_MANAGED_V3.to_owned(),
                CONTROL_REVOKE_SESSIONS.to_owned(),
                CONTROL_LOGIN_PROFILE.to_owned(),
            ],
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for i in items {
                    match i.as_str() {
                        Some(
                            c @ (CONTROL_QUARANTINE
                            | CONTROL_MANAGED_V3
                            | CONTROL_REVOKE_SESSIONS
                            | CONTROL_LOGIN_PROFILE),
                        ) => out.push(c.to_owned()),
                        _ => {
                            return Err(ConnectorError::permanent(format!(
                                "step `{}` param `controls` has `{i}`: use `quarantine`, \
                                 `managed-v3`, `revoke-sessions` or `login-profile`",
                                step.id
                            )))
                        }
                    }
                }
                out
            }
            Some(other) => {
                return Err(ConnectorError::permanent(format!(
                    "step `{}` param `controls` must be a list, not `{other}`",
                    step.id
                )))
            }
        };
        let keys_only = match step.params.get("credentials") {
            None => false,
            Some(Value::String(v)) if v == "all" => false,
            Some(Value::String(v)) if v == "access-keys" => true,
            Some(other) => {
                return Err(ConnectorError::permanent(format!(
                    "step `{}` param `credentials` is `{other}`: use `access-keys` or `all`",
                    step.id
                )))
            }
        };
        Ok(Params {
            keys_only,
            user: step.param_str("user").map(str::to_owned),
            quarantine,
            delete_login_profile: flag("delete_login_profile", true)?,
            reactivate_key: flag("reactivate_key", false)?,
            revive_sessions: flag("revive_sessions", false)?,
            controls,
        })
    }

    fn wants(&self, control: &str) -> bool {
        self.controls.iter().any(|c| c == control)
    }
}

fn expect_kind(target: &Target, kind: &str, action: Action) -> Result<(), ConnectorError> {
    if target.kind == kind {
        Ok(())
    } else {
        Err(ConnectorError::permanent(format!(
            "`{}` acts on a target of kind `{kind}`, not `{}` (`{}`)",
            action.id(),
            target.kind,
            target.display_name()
        )))
    }
}

fn evidence_of<'a>(ctx: &'a StepContext<'_>) -> Result<&'a Value, ConnectorError> {
    ctx.evidence.ok_or_else(|| {
        ConnectorError::permanent(format!(
            "step `{}` (`{}`) needs the evidence snapshot taken before containment: run it \
             through `cordon restore`, which loads the snapshot named by its `evidence_hash`",
            ctx.step.id,
            ctx.step.action.id()
        ))
    })
}

fn evidence_part<'a>(
    evidence: &'a Value,
    part: &str,
    target: &Target,
) -> Result<&'a Value, ConnectorError> {
    evidence.get(part).filter(|v| v.is_object()).ok_or_else(|| {
        ConnectorError::permanent(format!(
            "the evidence snapshot for `{}` has no `{part}` section: it was not taken by \
             cordon-aws for this kind of target",
            target.display_name()
        ))
    })
}

fn envelope(clients: &AccountClients, target: &Target) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("schema".into(), json!(snapshot::SCHEMA));
    m.insert("taken_at".into(), json!(now_rfc3339()));
    m.insert("account".into(), json!(clients.account));
    m.insert(
        "target".into(),
        json!({ "kind": target.kind, "id": target.id }),
    );
    m
}

// ---------------------------------------------------------------------------------------
// Live reads and writes of one control.

/// The inline policy `name` of `p`; None when IAM says there is no such entity (the
/// policy or the principal: [`get_inline`] tells them apart where it matters).
async fn read_inline(
    c: &AccountClients,
    p: Principal<'_>,
    name: &str,
) -> Result<Option<Value>, ConnectorError> {
    let res = match p {
        Principal::User(u) => c
            .iam
            .get_user_policy()
            .user_name(u)
            .policy_name(name)
            .send()
            .await
            .map(|o| decode_document(o.policy_document()))
            .map_err(coded("iam:GetUserPolicy")),
        Principal::Role(r) => c
            .iam
            .get_role_policy()
            .role_name(r)
            .policy_name(name)
            .send()
            .await
            .map(|o| decode_document(o.policy_document()))
            .map_err(coded("iam:GetRolePolicy")),
    };
    match res {
        Ok(doc) => Ok(Some(doc)),
        Err((Some(code), _)) if code == "NoSuchEntity" || code == "NoSuchEntityException" => {
            Ok(None)
        }
        Err((_, e)) => Err(e),
    }
}

async fn get_inline(
    c: &AccountClients,
    p: Principal<'_>,
    name: &str,
) -> Result<Option<Value>, ConnectorError> {
    match read_inline(c, p, name).await? {
        Some(doc) => Ok(Some(doc)),
        None => {
            // Either the policy or the principal is missing: tell them apart.
            principal_exists(c, p).await?;
            Ok(None)
        }
    }
}

/// The evidence of a session cut-off (`"view": "session-cut-off"`): the principal and the
/// cut-off policy in place, if any, in the shape of a full snapshot's `inline_policies`.
/// One round trip (the two reads run together), so the cut-off, a kill, is not queued
/// behind a full snapshot; the principal's other policies are the quarantine's evidence.
async fn session_cutoff_snapshot(
    c: &AccountClients,
    p: Principal<'_>,
) -> Result<Value, ConnectorError> {
    // The principal's existence is the other read's answer.
    let policy = read_inline(c, p, REVOKE_SESSIONS_POLICY_NAME);
    let who = async {
        match p {
            Principal::User(u) => c
                .iam
                .get_user()
                .user_name(u)
                .send()
                .await
                .map(|o| {
                    o.user().map(|u| {
                        json!({
                            "name": u.user_name(),
                            "arn": u.arn(),
                            "user_id": u.user_id(),
                            "create_date": snapshot::fmt_time(u.create_date()),
                        })
                    })
                })
                .map_err(|e| snapshot::not_found_or(&e, "iam:GetUser", "user", u, &c.account)),
            Principal::Role(r) => c
                .iam
                .get_role()
                .role_name(r)
                .send()
                .await
                .map(|o| {
                    o.role().map(|r| {
                        json!({
                            "name": r.role_name(),
                            "arn": r.arn(),
                            "role_id": r.role_id(),
                            "create_date": snapshot::fmt_time(r.create_date()),
                            "max_session_duration": r.max_session_duration(),
                        })
                    })
                })
                .map_err(|e| snapshot::not_found_or(&e, "iam:GetRole", "role", r, &c.account)),
        }
    };
    // The attached policies too: at the inline quota the cut-off is a managed policy.
    let attached = async {
        match attached_arns(c, p).await {
            Ok(a) => Ok(a),
            // The principal's existence is the other read's answer.
            Err(e) if e.message.contains("NoSuchEntity") => Ok(vec![]),
            Err(e) => Err(e),
        }
    };
    // A user's groups too: at both quotas the cut-off is a group's policy.
    let groups = async {
        match p {
            Principal::User(u) => match user_groups(c, u).await {
                Ok(g) => Ok(Some(g)),
                Err(e) if e.message.contains("NoSuchEntity") => Ok(Some(vec![])),
                Err(e) => Err(e),
            },
            Principal::Role(_) => Ok(None),
        }
    };
    let (policy, who, attached, groups) = tokio::try_join!(policy, who, attached, groups)?;
    let mut snap = who.unwrap_or_else(|| json!({}));
    if let Some(m) = snap.as_object_mut() {
        m.insert("view".into(), json!("session-cut-off"));
        if let Some(groups) = groups {
            m.insert(
                "groups".into(),
                json!(groups
                    .iter()
                    .map(|(n, a)| json!({ "name": n, "arn": a }))
                    .collect::<Vec<_>>()),
            );
        }
        m.insert(
            "attached_policies".into(),
            json!(attached
                .iter()
                .map(|a| json!({ "arn": a, "name": a.rsplit('/').next() }))
                .collect::<Vec<_>>()),
        );
        m.insert(
            "inline_policies".into(),
            json!(policy
                .map(|d| vec![json!({ "name": REVOKE_SESSIONS_POLICY_NAME, "document": d })])
                .unwrap_or_default()),
        );
    }
    Ok(snap)
}

async fn principal_exists(c: &AccountClients, p: Principal<'_>) -> Result<(), ConnectorError> {
    let res = match p {
        Principal::User(u) => c
            .iam
            .get_user()
            .user_name(u)
            .send()
            .await
            .map(|_| ())
            .map_err(coded("iam:GetUser")),
        Principal::Role(r) => c
            .iam
            .get_role()
            .role_name(r)
            .send()
            .await
            .map(|_| ())
            .map_err(coded("iam:GetRole")),
    };
    match res {
        Ok(()) => Ok(()),
        Err((Some(code), _)) if code.starts_with("NoSuchEntity") => {
            Err(ConnectorError::permanent(format!(
                "IAM {} does not exist in account `{}`: check the target's name and account",
                p.label(),
                c.account
            )))
        }
        Err((_, e)) => Err(e),
    }
}

async fn put_inline(
    c: &AccountClients,
    p: Principal<'_>,
    name: &str,
    doc: &str,
) -> Result<(), ConnectorError> {
    match p {
        Principal::User(u) => c
            .iam
            .put_user_policy()
            .user_name(u)
            .policy_name(name)
            .policy_document(doc)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("iam:PutUserPolicy", &e)),
        Principal::Role(r) => c
            .iam
            .put_role_policy()
            .role_name(r)
            .policy_name(name)
            .policy_document(doc)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("iam:PutRolePolicy", &e)),
    }
}

async fn delete_inline(
    c: &AccountClients,
    p: Principal<'_>,
    name: &str,
) -> Result<(), ConnectorError> {
    let res = match p {
        Principal::User(u) => c
            .iam
            .delete_user_policy()
            .user_name(u)
            .policy_name(name)
            .send()
            .await
            .map(|_| ())
            .map_err(coded("iam:DeleteUserPolicy")),
        Principal::Role(r) => c
            .iam
            .delete_role_policy()
            .role_name(r)
            .policy_name(name)
            .send()
            .await
            .map(|_| ())
            .map_err(coded("iam:DeleteRolePolicy")),
    };
    match res {
        Ok(()) => Ok(()),
        // Already gone (a retry after an ambiguous failure): the goal is reached.
        Err((Some(code), _)) if code.starts_with("NoSuchEntity") => Ok(()),
        Err((_, e)) => Err(e),
    }
}

async fn attached_arns(
    c: &AccountClients,
    p: Principal<'_>,
) -> Result<Vec<String>, ConnectorError> {
    let arns: Vec<String> = match p {
        Principal::User(u) => c
            .iam
            .list_attached_user_policies()
            .user_name(u)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| classify("iam:ListAttachedUserPolicies", &e))?
            .iter()
            .filter_map(|a| a.policy_arn().map(str::to_owned))
            .collect(),
        Principal::Role(r) => c
            .iam
            .list_attached_role_policies()
            .role_name(r)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| classify("iam:ListAttachedRolePolicies", &e))?
            .iter()
            .filter_map(|a| a.policy_arn().map(str::to_owned))
            .collect(),
    };
    Ok(arns)
}

/// The (name, ARN) of every group `user` is in.
async fn user_groups(
    c: &AccountClients,
    user: &str,
) -> Result<Vec<(String, String)>, ConnectorError> {
    let groups = c
        .iam
        .list_groups_for_user()
        .user_name(user)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| classify("iam:ListGroupsForUser", &e))?;
    Ok(groups
        .iter()
        .map(|g| (g.group_name().to_owned(), g.arn().to_owned()))
        .collect())
}

/// The cut-off document of cordon's session cut-off group, if it still has one.
async fn revoke_group_document(
    c: &AccountClients,
    group: &str,
) -> Result<Option<Value>, ConnectorError> {
    match c
        .iam
        .get_group_policy()
        .group_name(group)
        .policy_name(REVOKE_SESSIONS_POLICY_NAME)
        .send()
        .await
    {
        Ok(o) => Ok(Some(decode_document(o.policy_document()))),
        Err(e) if error_code(&e).is_some_and(|c| c.starts_with("NoSuchEntity")) => Ok(None),
        Err(e) => Err(classify("iam:GetGroupPolicy", &e)),
    }
}

/// Put `user` in cordon's session cut-off group `group` (under `/cordon/`), created with
/// the cut-off `doc` as its inline policy (a group has its own 5,120-character inline
/// quota, empty here). A retry of the step finds the group and writes the same document.
async fn join_revoke_group(
    c: &AccountClients,
    group: &str,
    user: &str,
    doc: &str,
) -> Result<(), ConnectorError> {
    match c
        .iam
        .create_group()
        .group_name(group)
        .path(CORDON_POLICY_PATH)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) if error_code(&e).is_some_and(|c| c.starts_with("EntityAlreadyExists")) => {}
        Err(e) => return Err(classify("iam:CreateGroup", &e)),
    }
    c.iam
        .put_group_policy()
        .group_name(group)
        .policy_name(REVOKE_SESSIONS_POLICY_NAME)
        .policy_document(doc)
        .send()
        .await
        .map_err(|e| classify("iam:PutGroupPolicy", &e))?;
    c.iam
        .add_user_to_group()
        .group_name(group)
        .user_name(user)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| classify("iam:AddUserToGroup", &e))
}

/// Take `user` out of cordon's session cut-off group and delete the group once it has no
/// member left. A failure to delete leaves an empty group, which grants and denies
/// nothing: said (returned), not fatal.
async fn leave_revoke_group(
    c: &AccountClients,
    group: &str,
    user: &str,
) -> Result<Option<String>, ConnectorError> {
    match c
        .iam
        .remove_user_from_group()
        .group_name(group)
        .user_name(user)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) if error_code(&e).is_some_and(|c| c.starts_with("NoSuchEntity")) => {}
        Err(e) => return Err(classify("iam:RemoveUserFromGroup", &e)),
    }
    Ok(delete_revoke_group(c, group).await)
}

/// Delete cordon's session cut-off group when it has no member (its policy first, as IAM
/// requires); `Some(what to do)` when it could not be deleted.
async fn delete_revoke_group(c: &AccountClients, group: &str) -> Option<String> {
    let advice = |op: &str, why: String| {
        Some(format!(
            "the group `{group}` was not deleted ({op}: {why}): delete it with `aws iam \
             delete-group-policy --group-name {group} --policy-name \
             {REVOKE_SESSIONS_POLICY_NAME}` and `aws iam delete-group --group-name {group}` \
             once it has no member"
        ))
    };
    let members = match c.iam.get_group().group_name(group).send().await {
        Ok(o) => o.users().len(),
        Err(e) if error_code(&e).is_some_and(|c| c.starts_with("NoSuchEntity")) => return None,
        Err(e) => return advice("iam:GetGroup", classify("iam:GetGroup", &e).message),
    };
    if members > 0 {
        return None;
    }
    match c
        .iam
        .delete_group_policy()
        .group_name(group)
        .policy_name(REVOKE_SESSIONS_POLICY_NAME)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) if error_code(&e).is_some_and(|c| c.starts_with("NoSuchEntity")) => {}
        Err(e) => {
            return advice(
                "iam:DeleteGroupPolicy",
                classify("iam:DeleteGroupPolicy", &e).message,
            )
        }
    }
    match c.iam.delete_group().group_name(group).send().await {
        Ok(_) => None,
        Err(e) if error_code(&e).is_some_and(|c| c.starts_with("NoSuchEntity")) => None,
        Err(e) => advice("iam:DeleteGroup", classify("iam:DeleteGroup", &e).message),
    }
}

/// Put `user` in `cordon-quarantine`, creating the group (with cordon's deny-all) when
/// this account has none yet. An existing group's deny-all is put back if it was edited.
async fn join_quarantine_group(c: &AccountClients, user: &str) -> Result<(), ConnectorError> {
    match c
        .iam
        .create_group()
        .group_name(QUARANTINE_GROUP_NAME)
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) if error_code(&e).is_some_and(|c| c.starts_with("EntityAlreadyExists")) => {}
        Err(e) => return Err(classify("iam:CreateGroup", &e)),
    }
    c.iam
        .put_group_policy()
        .group_name(QUARANTINE_GROUP_NAME)
        .policy_name(QUARANTINE_POLICY_NAME)
        .policy_document(deny_all_document())
        .send()
        .await
        .map_err(|e| classify("iam:PutGroupPolicy", &e))?;
    c.iam
        .add_user_to_group()
        .group_name(QUARANTINE_GROUP_NAME)
        .user_name(user)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| classify("iam:AddUserToGroup", &e))
}

async fn leave_quarantine_group(c: &AccountClients, user: &str) -> Result<(), ConnectorError> {
    match c
        .iam
        .remove_user_from_group()
        .group_name(QUARANTINE_GROUP_NAME)
        .user_name(user)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if error_code(&e).is_some_and(|c| c.starts_with("NoSuchEntity")) => Ok(()),
        Err(e) => Err(classify("iam:RemoveUserFromGroup", &e)),
    }
}

async fn set_managed(
    c: &AccountClients,
    p: Principal<'_>,
    attach: bool,
) -> Result<(), ConnectorError> {
    set_attached(c, p, MANAGED_QUARANTINE_POLICY_ARN, attach).await
}

async fn set_attached(
    c: &AccountClients,
    p: Principal<'_>,
    arn: &str,
    attach: bool,
) -> Result<(), ConnectorError> {
    let res = match (p, attach) {
        (Principal::User(u), true) => c
            .iam
            .attach_user_policy()
            .user_name(u)
            .policy_arn(arn)
            .send()
            .await
            .map(|_| ())
            .map_err(coded("iam:AttachUserPolicy")),
        (Principal::User(u), false) => c
            .iam
            .detach_user_policy()
            .user_name(u)
            .policy_arn(arn)
            .send()
            .await
            .map(|_| ())
            .map_err(coded("iam:DetachUserPolicy")),
        (Principal::Role(r), true) => c
            .iam
            .attach_role_policy()
            .role_name(r)
            .policy_arn(arn)
            .send()
            .await
            .map(|_| ())
            .map_err(coded("iam:AttachRolePolicy")),
        (Principal::Role(r), false) => c
            .iam
            .detach_role_policy()
            .role_name(r)
            .policy_arn(arn)
            .send()
            .await
            .map(|_| ())
            .map_err(coded("iam:DetachRolePolicy")),
    };
    match res {
        Ok(()) => Ok(()),
        Err((Some(code), _)) if !attach && code.starts_with("NoSuchEntity") => Ok(()),
        Err((_, e)) => Err(e),
    }
}

async fn has_login_profile(c: &AccountClients, user: &str) -> Result<bool, ConnectorError> {
    match c.iam.get_login_profile().user_name(user).send().await {
        Ok(_) => Ok(true),
        Err(e) if error_code(&e).is_some_and(|c| c.starts_with("NoSuchEntity")) => Ok(false),
        Err(e) => Err(classify("iam:GetLoginProfile", &e)),
    }
}

async fn read_controls(c: &AccountClients, p: Principal<'_>) -> Result<Controls, ConnectorError> {
    let quarantine_doc = get_inline(c, p, QUARANTINE_POLICY_NAME).await?;
    let revoke_doc = get_inline(c, p, REVOKE_SESSIONS_POLICY_NAME).await?;
    let attached = attached_arns(c, p).await?;
    let (login_profile, groups) = match p {
        Principal::User(u) => (has_login_profile(c, u).await?, user_groups(c, u).await?),
        Principal::Role(_) => (false, vec![]),
    };
    let in_group = groups.iter().any(|(n, _)| n == QUARANTINE_GROUP_NAME);
    let revoke_group = groups
        .iter()
        .find(|(n, a)| is_revoke_group(n, a))
        .map(|(n, _)| n.clone());
    let revoke_group_doc = match &revoke_group {
        Some(g) => revoke_group_document(c, g).await?,
        None => None,
    };
    let revoke_managed = attached.iter().find(|a| is_managed_revoke(a)).cloned();
    let revoke_managed_doc = match &revoke_managed {
        Some(arn) => managed_document(c, arn).await?,
        None => None,
    };
    Ok(Controls {
        quarantine_doc,
        revoke_doc,
        managed_v3: attached.iter().any(|a| a == MANAGED_QUARANTINE_POLICY_ARN),
        login_profile,
        deny_all_attached: attached.iter().any(|a| a == AWS_DENY_ALL_POLICY_ARN),
        in_quarantine_group: in_group,
        revoke_managed,
        revoke_managed_doc,
        revoke_group,
        revoke_group_doc,
    })
}

/// The document of a customer-managed policy cordon wrote (one version, `v1`).
async fn managed_document(c: &AccountClients, arn: &str) -> Result<Option<Value>, ConnectorError> {
    match c
        .iam
        .get_policy_version()
        .policy_arn(arn)
        .version_id("v1")
        .send()
        .await
    {
        Ok(o) => Ok(o
            .policy_version()
            .and_then(|v| v.document())
            .map(decode_document)),
        Err(e) if error_code(&e).is_some_and(|c| c.starts_with("NoSuchEntity")) => Ok(None),
        Err(e) => Err(classify("iam:GetPolicyVersion", &e)),
    }
}

/// The AWS partition of the configured region (for the ARN of a policy cordon created).
fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// Create cordon's customer-managed cut-off `name` (or find it from an earlier try of the
/// same step) and return its ARN.
async fn create_managed_revoke(
    conn: &AwsConnector,
    c: &AccountClients,
    name: &str,
    doc: &str,
    cutoff: &str,
) -> Result<String, ConnectorError> {
    match c
        .iam
        .create_policy()
        .policy_name(name)
        .path(CORDON_POLICY_PATH)
        .policy_document(doc)
        .description(format!(
            "cordon: denies sessions issued before {cutoff} (the principal's inline policies \
             were at their size quota)"
        ))
        .send()
        .await
    {
        Ok(o) => o
            .policy()
            .and_then(|p| p.arn())
            .map(str::to_owned)
            .ok_or_else(|| {
                ConnectorError::permanent(format!("`iam:CreatePolicy` of `{name}` returned no ARN"))
            }),
        // A retry of this step after an ambiguous failure: the policy is this plan's.
        Err(e) if error_code(&e).is_some_and(|c| c.starts_with("EntityAlreadyExists")) => {
            Ok(format!(
                "arn:{}:iam::{}:policy{CORDON_POLICY_PATH}{name}",
                partition_of(&conn.config().region),
                c.account
            ))
        }
        Err(e) => Err(classify("iam:CreatePolicy", &e)),
    }
}

/// Delete cordon's managed cut-off once nothing has it attached (a failure to delete
/// leaves an unattached policy, which grants and denies nothing: said, not fatal).
async fn delete_managed_revoke(c: &AccountClients, arn: &str) -> Option<String> {
    match c.iam.delete_policy().policy_arn(arn).send().await {
        Ok(_) => None,
        Err(e) if error_code(&e).is_some_and(|c| c.starts_with("NoSuchEntity")) => None,
        Err(e) => Some(format!(
            "the detached policy `{arn}` was not deleted ({}): delete it with `aws iam \
             delete-policy --policy-arn {arn}`",
            classify("iam:DeletePolicy", &e).message
        )),
    }
}

/// Apply the quarantine control in `mode`; returns what was changed.
async fn apply_quarantine(
    c: &AccountClients,
    p: Principal<'_>,
    now: &Controls,
    mode: QuarantineMode,
    changes: &mut Vec<String>,
) -> Result<(), ConnectorError> {
    if now.quarantined(mode) {
        return Ok(());
    }
    match mode {
        QuarantineMode::InlineDeny => {
            // A quota never stops containment: inline deny-all, else AWS's managed
            // AWSDenyAll, else (users) the cordon-quarantine group's deny-all.
            let inline = put_inline(c, p, QUARANTINE_POLICY_NAME, &deny_all_document()).await;
            match inline {
                Ok(()) => {
                    changes.push(format!(
                        "put inline deny-all policy `{QUARANTINE_POLICY_NAME}` on {}",
                        p.label()
                    ));
                    return Ok(());
                }
                Err(e) if !is_quota(&e) => return Err(e),
                Err(_) => {}
            }
            match set_attached(c, p, AWS_DENY_ALL_POLICY_ARN, true).await {
                Ok(()) => {
                    changes.push(format!(
                        "attached `{AWS_DENY_ALL_POLICY_ARN}` to {} (its inline policies are at \
                         their size quota, so cordon's inline deny-all did not fit)",
                        p.label()
                    ));
                    return Ok(());
                }
                Err(e) if !is_quota(&e) => return Err(e),
                Err(e) => {
                    let Principal::User(u) = p else {
                        return Err(ConnectorError::permanent(format!(
                            "cannot quarantine {}: its inline policies are at their size quota \
                             (10,240 characters) and it has as many managed policies attached as \
                             its quota allows ({}): detach one, or delete an inline policy, and \
                             run the step again; meanwhile `aws:revoke-role-sessions` ends its \
                             live sessions",
                            p.label(),
                            e.message
                        )));
                    };
                    join_quarantine_group(c, u).await?;
                    changes.push(format!(
                        "added user `{u}` to group `{QUARANTINE_GROUP_NAME}` (deny-all): its \
                         inline policies are at their size quota and its managed-policy \
                         attachments at theirs"
                    ));
                }
            }
        }
        QuarantineMode::ManagedV3 => {
            set_managed(c, p, true).await?;
            changes.push(format!(
                "attached `{MANAGED_QUARANTINE_POLICY_ARN}` to {}",
                p.label()
            ));
        }
    }
    Ok(())
}

/// Deny every session of `p` issued before a cut-off taken from AWS's clock. What the
/// IAM console's "revoke active sessions" writes for a role; for a user it ends the
/// sessions its keys minted (`GetSessionToken`, `GetFederationToken`), which survive a
/// disabled key. Long-term keys carry no token issue time: the deny never touches them.
/// https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_revoke-sessions.html
async fn apply_revoke(
    conn: &AwsConnector,
    c: &AccountClients,
    p: Principal<'_>,
    now: &Controls,
    plan_id: &str,
    changes: &mut Vec<String>,
    managed_fallback: bool,
) -> Result<(), ConnectorError> {
    if now.revoked_for(plan_id) {
        return Ok(());
    }
    let margin = conn.config().cutoff_margin;
    let (aws_time, source) = conn.aws_now(c).await?;
    let cutoff = snapshot::fmt_time(&clock::cutoff(aws_time, margin));
    let doc = revoke_sessions_document(plan_id, &cutoff);
    // A quota never stops the cut-off: the inline policy, else the same deny in a
    // customer-managed policy of this plan attached to the principal, else (a user) in a
    // group of this plan the user joins.
    let form = match put_inline(c, p, REVOKE_SESSIONS_POLICY_NAME, &doc).await {
        Ok(()) => format!("inline policy `{REVOKE_SESSIONS_POLICY_NAME}`"),
        Err(e) if is_quota(&e) && managed_fallback => {
            let (kind, name) = match p {
                Principal::User(u) => ('u', u),
                Principal::Role(r) => ('r', r),
            };
            let policy = managed_revoke_name(plan_id, kind, name);
            let arn = create_managed_revoke(conn, c, &policy, &doc, &cutoff).await?;
            match set_attached(c, p, &arn, true).await {
                Ok(()) => format!(
                    "customer-managed policy `{arn}`, attached: its inline policies are at \
                     their size quota"
                ),
                Err(e) if is_quota(&e) => {
                    let litter = delete_managed_revoke(c, &arn).await;
                    let Principal::User(u) = p else {
                        // A role cannot be in a group, and IAM has no other place for a
                        // deny on a role: a permissions boundary would replace the role's
                        // existing one (and a boundary only limits, so swapping it is not
                        // cordon's to do). At both quotas the role's sessions stay alive.
                        return Err(ConnectorError::permanent(format!(
                            "cannot end the sessions of {} issued before {cutoff}: its inline \
                             policies are at their size quota and its managed-policy \
                             attachments at theirs ({}); they stay alive until they expire \
                             (36 h at most for a user's, the role's maximum session duration \
                             for a role's): detach a managed policy or delete an inline one \
                             and run the step again, or quarantine it (the quarantine of a \
                             user at both quotas falls back to group \
                             `{QUARANTINE_GROUP_NAME}`){}",
                            p.label(),
                            e.message,
                            litter.map(|l| format!("; {l}")).unwrap_or_default()
                        )));
                    };
                    let group = revoke_group_name(plan_id, u);
                    match join_revoke_group(c, &group, u, &doc).await {
                        Ok(()) => format!(
                            "inline policy of group `{CORDON_POLICY_PATH}{group}`, which the \
                             user joined: its inline policies are at their size quota and its \
                             managed-policy attachments at theirs{}",
                            litter
                                .as_ref()
                                .map(|l| format!(" ({l})"))
                                .unwrap_or_default()
                        ),
                        Err(g) if is_quota(&g) => {
                            let left = [litter, delete_revoke_group(c, &group).await];
                            return Err(ConnectorError::permanent(format!(
                                "cannot end the sessions of user `{u}` issued before {cutoff}: \
                                 its inline policies are at their size quota, its \
                                 managed-policy attachments at theirs ({}) and its group \
                                 memberships at theirs (10 groups: {}); its sessions \
                                 (GetSessionToken, GetFederationToken) stay alive until they \
                                 expire (36 h at most); its long-term keys are not touched by \
                                 a cut-off: detach a managed policy, delete an inline one or \
                                 leave a group and run the step again, or quarantine the user \
                                 (group `{QUARANTINE_GROUP_NAME}` needs a free membership \
                                 too){}",
                                e.message,
                                g.message,
                                left.into_iter()
                                    .flatten()
                                    .map(|l| format!("; {l}"))
                                    .collect::<String>()
                            )));
                        }
                        Err(g) => return Err(g),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(e) if is_quota(&e) => {
            return Err(ConnectorError::permanent(format!(
                "cannot end the sessions of {}: its inline policies are at their size quota \
                 ({}): delete or shorten one and run the step again, or quarantine it (the \
                 quarantine falls back to `{AWS_DENY_ALL_POLICY_ARN}` at this quota)",
                p.label(),
                e.message
            )))
        }
        Err(e) => return Err(e),
    };
    let clock = match source {
        clock::TimeSource::Aws => format!(
            "AWS's time {} + {} s margin",
            snapshot::fmt_time(&aws_time),
            margin.as_secs()
        ),
        clock::TimeSource::Host => format!(
            "this host's clock + {} s margin: AWS's answer carried no Date header",
            margin.as_secs()
        ),
    };
    let whose = match p {
        Principal::User(u) => {
            format!("the sessions of user `{u}` (GetSessionToken, GetFederationToken)")
        }
        Principal::Role(r) => format!("every session of role `{r}`"),
    };
    changes.push(format!(
        "denied {whose} issued before {cutoff} ({clock}; {form})"
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Access keys.

/// The user owning the target key: the `user` param, or IAM's answer for the key.
async fn key_user(
    c: &AccountClients,
    target: &Target,
    params: &Params,
) -> Result<String, ConnectorError> {
    if let Some(u) = &params.user {
        return Ok(u.clone());
    }
    if target.id.starts_with("ASIA") {
        return Err(ConnectorError::permanent(format!(
            "`{}` is a session credential (ASIA): it cannot be disabled; revoke the role's \
             sessions with `aws:revoke-role-sessions` instead",
            target.id
        )));
    }
    key_owner(c, &target.id).await?.user.ok_or_else(|| {
        ConnectorError::permanent(format!(
            "IAM names no user for access key `{}`: pass the owner as step param `user`",
            target.id
        ))
    })
}

async fn live_key_status(
    c: &AccountClients,
    user: &str,
    key_id: &str,
) -> Result<String, ConnectorError> {
    snapshot::access_key_metadata(c, user)
        .await?
        .iter()
        .find(|k| k.access_key_id() == Some(key_id))
        .and_then(|k| k.status().map(|s| s.as_str().to_owned()))
        .ok_or_else(|| {
            ConnectorError::permanent(format!(
                "access key `{key_id}` is not a key of IAM user `{user}` in account `{}`: it \
                 was deleted, or the step names the wrong user",
                c.account
            ))
        })
}

async fn set_key_status(
    c: &AccountClients,
    user: &str,
    key_id: &str,
    status: StatusType,
) -> Result<(), ConnectorError> {
    c.iam
        .update_access_key()
        .user_name(user)
        .access_key_id(key_id)
        .status(status)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| classify("iam:UpdateAccessKey", &e))
}

/// What [`AwsConnector::describe_step`] reads for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Purpose {
    /// The evidence, before the change: a kill may share the user's key list with a kill
    /// of the same user in flight (`snapshot::KeyLists`).
    Evidence,
    /// A verification's first read-back, after the change: a kill's may share one read
    /// of the user's keys sent after its change returned (`snapshot::ReadBacks`).
    ReadBack,
    /// A read-back of its own, made afresh (a poll after an `Alive` answer).
    Fresh,
}

/// Whether the verification of this step reads back through `snapshot::ReadBacks`: a
/// kill on the access-keys view without the leaked secret (with it, `verify` probes
/// the key instead). Its change registers there, so the read waits for it.
fn read_back_shared(ctx: &StepContext<'_>, params: &Params) -> bool {
    ctx.step.action == Action::AwsDisableAccessKey
        && params.keys_only
        && !(ctx.secret.is_some() && ctx.step.target.id.starts_with("AKIA"))
}

// ---------------------------------------------------------------------------------------
// The three connector operations.

impl AwsConnector {
    /// The step's target as it is now: the evidence before the change, or a read-back
    /// after it (see [`Purpose`]; a shared read-back is always a read sent after the key's
    /// change returned, never one already under way).
    pub(crate) async fn describe_step(
        &self,
        ctx: &StepContext<'_>,
        read: Purpose,
    ) -> Result<TargetState, ConnectorError> {
        let step = ctx.step;
        let target = &step.target;
        let params = Params::parse(self, ctx)?;
        let c = self.clients_for(target.account.as_deref()).await?;
        let mut ev = envelope(&c, target);
        let contained = match step.action {
            Action::AwsDisableAccessKey | Action::AwsRestoreAccessKey => {
                expect_kind(target, "access-key", step.action)?;
                let user = key_user(&c, target, &params).await?;
                // Kill first (issue 19): a key's kill waits for the key's own state only,
                // and the user's other credentials come in the same round trip (one where
                // a full user snapshot takes four). Policies, groups and last use are the
                // evidence of the user's own steps (session cut-off, quarantine).
                let snap = match read {
                    Purpose::Evidence if params.keys_only => {
                        self.key_lists().read(&c, &user).await?
                    }
                    Purpose::ReadBack if read_back_shared(ctx, &params) => {
                        self.read_backs()
                            .read(
                                &c.account,
                                &user,
                                &target.id,
                                self.config().operation_timeout,
                                || snapshot::access_keys_snapshot(&c, &user),
                            )
                            .await?
                    }
                    _ if params.keys_only => snapshot::access_keys_snapshot(&c, &user).await?,
                    _ => snapshot::credentials_snapshot(&c, &user).await?,
                };
                let status = snapshot::key_status(&snap, &target.id).map(str::to_owned);
                let key = snap
                    .get("access_keys")
                    .and_then(Value::as_array)
                    .and_then(|ks| {
                        ks.iter().find(|k| {
                            k.get("access_key_id").and_then(Value::as_str) == Some(&target.id)
                        })
                    })
                    .cloned()
                    .ok_or_else(|| {
                        ConnectorError::permanent(format!(
                            "access key `{}` is not a key of IAM user `{user}`: it was deleted, \
                             or the step names the wrong user",
                            target.id
                        ))
                    })?;
                ev.insert("access_key".into(), key);
                ev.insert("user".into(), snap);
                if step.action == Action::AwsDisableAccessKey {
                    status.as_deref() == Some("Inactive")
                } else {
                    let evidence = evidence_of(ctx)?;
                    let want = evidence_part(evidence, "access_key", target)?
                        .get("status")
                        .and_then(Value::as_str);
                    status.as_deref() == want
                }
            }
            Action::AwsQuarantineUser | Action::AwsRevokeUserSessions | Action::AwsRestoreUser => {
                expect_kind(target, "user", step.action)?;
                let snap = if step.action == Action::AwsRevokeUserSessions {
                    session_cutoff_snapshot(&c, Principal::User(&target.id)).await?
                } else {
                    user_snapshot(&c, &target.id).await?
                };
                let now = Controls::from_snapshot(&snap);
                ev.insert("user".into(), snap);
                if step.action == Action::AwsQuarantineUser {
                    now.quarantined(params.quarantine)
                        && !(params.delete_login_profile && now.login_profile)
                } else if step.action == Action::AwsRevokeUserSessions {
                    now.revoked_for(ctx.plan_id)
                } else {
                    let want =
                        Controls::from_snapshot(evidence_part(evidence_of(ctx)?, "user", target)?);
                    restored(&now, &want, &params)
                }
            }
            Action::AwsQuarantineRole | Action::AwsRevokeRoleSessions | Action::AwsRestoreRole => {
                expect_kind(target, "role", step.action)?;
                let snap = if step.action == Action::AwsRevokeRoleSessions {
                    session_cutoff_snapshot(&c, Principal::Role(&target.id)).await?
                } else {
                    role_snapshot(&c, &target.id).await?
                };
                let now = Controls::from_snapshot(&snap);
                ev.insert("role".into(), snap);
                match step.action {
                    Action::AwsQuarantineRole => {
                        now.quarantined(params.quarantine)
                            && (now.revoked_for(ctx.plan_id) || now.deny_all_attached)
                    }
                    Action::AwsRevokeRoleSessions => now.revoked_for(ctx.plan_id),
                    _ => {
                        let want = Controls::from_snapshot(evidence_part(
                            evidence_of(ctx)?,
                            "role",
                            target,
                        )?);
                        restored(&now, &want, &params)
                    }
                }
            }
            other => return Err(unsupported(other)),
        };
        Ok(TargetState {
            contained,
            evidence: Value::Object(ev),
        })
    }

    pub(crate) async fn execute_step(
        &self,
        ctx: &StepContext<'_>,
    ) -> Result<Outcome, ConnectorError> {
        let step = ctx.step;
        let target = &step.target;
        if target.kind == "role"
            && step.action.class() == cordon_connector::DecisionClass::Contain
            && crate::identify::is_identity_center_role(&target.id)
        {
            return Err(ConnectorError::permanent(
                crate::identify::identity_center_advice(&target.id, None),
            ));
        }
        let params = Params::parse(self, ctx)?;
        let c = self.clients_for(target.account.as_deref()).await?;
        let mut changes: Vec<String> = Vec::new();
        let mut notes: Vec<String> = Vec::new();
        match step.action {
            Action::AwsDisableAccessKey => {
                expect_kind(target, "access-key", step.action)?;
                let user = key_user(&c, target, &params).await?;
                // What this run's describe read a moment ago (the evidence) decides the
                // change, so the kill costs one call; without it (a resumed step, a direct
                // call) the credentials are read here.
                let observed = ctx
                    .observed
                    .and_then(|ev| ev.get("user"))
                    .filter(|u| u.get("name").and_then(Value::as_str) == Some(user.as_str()))
                    .filter(|u| snapshot::key_status(u, &target.id).is_some());
                let status = match observed.and_then(|u| snapshot::key_status(u, &target.id)) {
                    Some(s) => Some(s.to_owned()),
                    None => match live_key_status(&c, &user, &target.id).await {
                        Ok(s) => Some(s),
                        // The read refused for good (a responder without
                        // `iam:ListAccessKeys`: the evidence rule let the kill go
                        // ahead without its snapshot): the change is idempotent, so
                        // make it, and let IAM's answer to it say whether the key exists.
                        Err(read) if read.class == cordon_connector::ErrorClass::Permanent => {
                            if let Err(e) = self.disable_key(&c, &user, ctx, &params).await {
                                return Err(
                                    if e.class == cordon_connector::ErrorClass::Permanent {
                                        read
                                    } else {
                                        e
                                    },
                                );
                            }
                            notes.push(format!(
                                "its status could not be read first ({}): set Inactive without it",
                                read.message
                            ));
                            None
                        }
                        Err(e) => return Err(e),
                    },
                };
                if status.is_none() {
                    changes.push(format!(
                        "access key `{}` of user `{user}` set to Inactive (not deleted: its id \
                         stays traceable in CloudTrail)",
                        target.id
                    ));
                } else if status.as_deref() != Some("Inactive") {
                    self.disable_key(&c, &user, ctx, &params).await?;
                    changes.push(format!(
                        "access key `{}` of user `{user}` set to Inactive (not deleted: its id \
                         stays traceable in CloudTrail)",
                        target.id
                    ));
                }
                // Say what still lets someone act as the user: the key alone is not the
                // attacker's only door. A failed read is said too, never hidden.
                let read;
                let creds = match observed {
                    Some(u) => Ok(u),
                    None => {
                        read = if params.keys_only {
                            snapshot::access_keys_snapshot(&c, &user).await
                        } else {
                            snapshot::credentials_snapshot(&c, &user).await
                        };
                        read.as_ref().map_err(Clone::clone)
                    }
                };
                if params.keys_only {
                    notes.push(format!(
                        "the other credentials of user `{user}` (console password, SSH keys, \
                         service-specific credentials, signing certificates) are read by its \
                         quarantine in this plan, whose deny-all refuses them"
                    ));
                }
                match creds {
                    Ok(creds) => {
                        let alive = snapshot::alive_beside(creds, &user, Some(&target.id));
                        if !alive.is_empty() {
                            notes.push(format!("still alive beside it: {}", alive.join("; ")));
                        }
                    }
                    Err(e) => notes.push(format!(
                        "unverified: cordon could not list the other credentials of user \
                         `{user}`: {}",
                        e.message
                    )),
                }
            }
            Action::AwsRestoreAccessKey => {
                expect_kind(target, "access-key", step.action)?;
                let evidence = evidence_of(ctx)?;
                let want = evidence_part(evidence, "access_key", target)?
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("Active")
                    .to_owned();
                let user = match &params.user {
                    Some(u) => u.clone(),
                    None => evidence_part(evidence, "user", target)?
                        .get("name")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| {
                            ConnectorError::permanent(
                                "the evidence snapshot names no user for the key",
                            )
                        })?,
                };
                let now = live_key_status(&c, &user, &target.id).await?;
                if now != want {
                    if want == "Active" && !params.reactivate_key {
                        return Err(ConnectorError::permanent(format!(
                            "restoring access key `{}` would re-activate a leaked credential: \
                             rotate it instead, or confirm by setting step param \
                             `reactivate_key: true`",
                            target.id
                        )));
                    }
                    let status = if want == "Active" {
                        StatusType::Active
                    } else {
                        StatusType::Inactive
                    };
                    set_key_status(&c, &user, &target.id, status).await?;
                    changes.push(format!(
                        "access key `{}` of user `{user}` set back to {want}",
                        target.id
                    ));
                }
            }
            Action::AwsQuarantineUser => {
                expect_kind(target, "user", step.action)?;
                let p = Principal::User(&target.id);
                let now = read_controls(&c, p).await?;
                apply_quarantine(&c, p, &now, params.quarantine, &mut changes).await?;
                notes.push(quarantine_reach(params.quarantine, &target.id));
                if params.delete_login_profile && now.login_profile {
                    match c
                        .iam
                        .delete_login_profile()
                        .user_name(&target.id)
                        .send()
                        .await
                    {
                        Ok(_) => changes.push(format!(
                            "deleted the console password of user `{}`",
                            target.id
                        )),
                        Err(e) if error_code(&e).is_some_and(|c| c.starts_with("NoSuchEntity")) => {
                        }
                        Err(e) => return Err(classify("iam:DeleteLoginProfile", &e)),
                    }
                }
            }
            Action::AwsQuarantineRole => {
                expect_kind(target, "role", step.action)?;
                let p = Principal::Role(&target.id);
                let now = read_controls(&c, p).await?;
                apply_quarantine(&c, p, &now, params.quarantine, &mut changes).await?;
                // No managed cut-off here: at the inline quota the quarantine is
                // AWSDenyAll, which refuses every session while attached.
                match apply_revoke(self, &c, p, &now, ctx.plan_id, &mut changes, false).await {
                    Ok(()) => {}
                    // At the inline quota the deny-all is AWSDenyAll, which refuses every
                    // session while attached (and a restore that lifts it asks first).
                    Err(e) if e.message.contains("size quota") => notes.push(format!(
                        "no session cut-off on role `{}`: its inline policies are at their \
                         size quota; the attached `{AWS_DENY_ALL_POLICY_ARN}` refuses every \
                         session while it is in place",
                        target.id
                    )),
                    Err(e) => return Err(e),
                }
            }
            Action::AwsRevokeRoleSessions | Action::AwsRevokeUserSessions => {
                let p = if step.action == Action::AwsRevokeRoleSessions {
                    expect_kind(target, "role", step.action)?;
                    Principal::Role(&target.id)
                } else {
                    expect_kind(target, "user", step.action)?;
                    Principal::User(&target.id)
                };
                // The cut-off in place as this run's describe read it, else read now.
                let observed = ctx
                    .observed
                    .and_then(|ev| ev.get(target.kind.as_str()))
                    .filter(|s| s.get("view").and_then(Value::as_str) == Some("session-cut-off"));
                // A user's view before this change listed its groups; an older one did not.
                let observed = observed.filter(|s| {
                    step.action == Action::AwsRevokeRoleSessions || s.get("groups").is_some()
                });
                let (revoke_doc, revoke_managed, revoke_group) = match observed {
                    Some(s) => (
                        snapshot::inline_policy(s, REVOKE_SESSIONS_POLICY_NAME).cloned(),
                        managed_revoke_of(s),
                        revoke_group_of(s),
                    ),
                    None => (
                        get_inline(&c, p, REVOKE_SESSIONS_POLICY_NAME).await?,
                        attached_arns(&c, p)
                            .await?
                            .into_iter()
                            .find(|a| is_managed_revoke(a)),
                        match p {
                            Principal::User(u) => user_groups(&c, u)
                                .await?
                                .into_iter()
                                .find(|(n, a)| is_revoke_group(n, a))
                                .map(|(n, _)| n),
                            Principal::Role(_) => None,
                        },
                    ),
                };
                let now = Controls {
                    quarantine_doc: None,
                    revoke_doc,
                    managed_v3: false,
                    login_profile: false,
                    deny_all_attached: false,
                    in_quarantine_group: false,
                    revoke_managed,
                    revoke_managed_doc: None,
                    revoke_group,
                    revoke_group_doc: None,
                };
                apply_revoke(self, &c, p, &now, ctx.plan_id, &mut changes, true).await?;
            }
            Action::AwsRestoreUser | Action::AwsRestoreRole => {
                let (kind, part) = if step.action == Action::AwsRestoreUser {
                    ("user", "user")
                } else {
                    ("role", "role")
                };
                expect_kind(target, kind, step.action)?;
                let snap = evidence_part(evidence_of(ctx)?, part, target)?;
                let want = Controls::from_snapshot(snap);
                let p = if kind == "user" {
                    Principal::User(&target.id)
                } else {
                    Principal::Role(&target.id)
                };
                let now = read_controls(&c, p).await?;
                if !params.revive_sessions {
                    let taken_at = evidence_of(ctx)?.get("taken_at").and_then(Value::as_str);
                    if let Some(why) =
                        revives_sessions(p, &now, &want, &params, taken_at, snap, self.local_now())
                    {
                        return Err(ConnectorError::permanent(why));
                    }
                }
                restore_controls(&c, p, &now, &want, &params, &mut changes, &mut notes).await?;
            }
            other => return Err(unsupported(other)),
        }
        let mut detail = if changes.is_empty() {
            if step.action.class() == cordon_connector::DecisionClass::Restore {
                format!(
                    "{} is already restored: nothing changed",
                    target.display_name()
                )
            } else {
                format!(
                    "{} is already contained: nothing changed",
                    target.display_name()
                )
            }
        } else {
            changes.join("; ")
        };
        if !notes.is_empty() {
            detail = format!("{detail}; {}", notes.join("; "));
        }
        Ok(if changes.is_empty() {
            Outcome::AlreadyContained { detail }
        } else {
            Outcome::Done { detail }
        })
    }

    /// A kill's `UpdateAccessKey` → `Inactive`. When its verification will read back
    /// through `snapshot::ReadBacks`, the change is registered there while in flight, so
    /// that a read-back of another key of the user waits for it and one read serves both.
    async fn disable_key(
        &self,
        c: &AccountClients,
        user: &str,
        ctx: &StepContext<'_>,
        params: &Params,
    ) -> Result<(), ConnectorError> {
        let key_id = &ctx.step.target.id;
        let change = read_back_shared(ctx, params)
            .then(|| self.read_backs().changing(&c.account, user, key_id));
        let r = set_key_status(c, user, key_id, StatusType::Inactive).await;
        if let (Ok(()), Some(change)) = (&r, change) {
            change.returned();
        }
        r
    }

    /// Prove the step's effect, polling through IAM's propagation delay: a containment
    /// whose credential still works is probed again (0.5 s, doubling to 5 s) until it is
    /// refused or [`crate::AwsConfig::verify_deadline`] has passed; then the result says
    /// "not yet dead", never "dead".
    pub(crate) async fn verify_step(
        &self,
        ctx: &StepContext<'_>,
    ) -> Result<Verification, ConnectorError> {
        let deadline = self.config().verify_deadline;
        let start = std::time::Instant::now();
        let mut wait = std::time::Duration::from_millis(500);
        let mut probes = 0u32;
        loop {
            probes += 1;
            // The first read-back may share a read sent after the change; a poll after an
            // `Alive` answer reads afresh.
            let read = if probes == 1 {
                Purpose::ReadBack
            } else {
                Purpose::Fresh
            };
            let v = self.verify_once(ctx, read).await?;
            let contain = ctx.step.action.class() == cordon_connector::DecisionClass::Contain;
            match v {
                Verification::Alive { detail } if contain => {
                    let waited = start.elapsed();
                    if waited + wait > deadline {
                        return Ok(Verification::NotVerified {
                            detail: format!(
                                "not yet dead: {detail} ({probes} probes over {} s, deadline \
                                 {} s); IAM changes can take time to propagate: check again \
                                 later",
                                waited.as_secs(),
                                deadline.as_secs()
                            ),
                        });
                    }
                    // Without holding the step's in-flight places (`pause`).
                    cordon_connector::pause(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(5));
                }
                Verification::Dead { detail } if probes > 1 => {
                    return Ok(Verification::Dead {
                        detail: format!(
                            "{detail} (after {probes} probes over {} s: the change took time \
                             to propagate)",
                            start.elapsed().as_secs()
                        ),
                    })
                }
                other => return Ok(other),
            }
        }
    }

    async fn verify_once(
        &self,
        ctx: &StepContext<'_>,
        read: Purpose,
    ) -> Result<Verification, ConnectorError> {
        let step = ctx.step;
        let target = &step.target;
        // A call signed with the leaked secret is the strongest proof: try it first. A
        // managed-v3 quarantine denies only listed (mostly mutating) actions, so no
        // harmless read can show it: that mode is read back instead.
        let probe_key = match step.action {
            Action::AwsDisableAccessKey => Some(target.id.clone()),
            Action::AwsQuarantineUser
                if Params::parse(self, ctx)?.quarantine == QuarantineMode::InlineDeny =>
            {
                step.param_str("access_key_id").map(str::to_owned)
            }
            _ => None,
        };
        if let (Some(secret), Some(key_id)) = (ctx.secret, probe_key) {
            if key_id.starts_with("AKIA") {
                let probed = self.probe_leaked_key(&key_id, secret, step.action).await?;
                if step.action == Action::AwsQuarantineUser {
                    if let Verification::Dead { detail } = &probed {
                        // AccessDenied may only mean the user never had this permission:
                        // dead only when the deny-all is read back too.
                        if !self.describe_step(ctx, Purpose::Fresh).await?.contained {
                            return Ok(Verification::NotVerified {
                                detail: format!(
                                    "{detail}, but the quarantine of {} is not in place: run \
                                     the step again",
                                    target.display_name()
                                ),
                            });
                        }
                    }
                }
                return Ok(probed);
            }
        }
        if let Some(dead) = self.cutoff_read_back(ctx).await? {
            return Ok(dead);
        }
        let state = self.describe_step(ctx, read).await?;
        let restore = step.action.class() == cordon_connector::DecisionClass::Restore;
        let what = target.display_name();
        // AWSCompromisedKeyQuarantineV3 denies a list of actions, not everything: in
        // place, it is a partial containment, and is said so (never "dead").
        if matches!(
            step.action,
            Action::AwsQuarantineUser | Action::AwsQuarantineRole
        ) && Params::parse(self, ctx)?.quarantine == QuarantineMode::ManagedV3
            && state.contained
        {
            return Ok(Verification::NotVerified {
                detail: format!(
                    "partial: read back `{MANAGED_QUARANTINE_POLICY_ARN}` attached to {what}, \
                     but it denies a list of high-risk actions, not everything: the principal's \
                     credentials still work for every other call; quarantine with \
                     `inline-deny` for a full deny"
                ),
            });
        }
        Ok(match (restore, state.contained) {
            (false, true) => Verification::Dead {
                detail: format!(
                    "read back: the controls of `{}` on {what} are in place",
                    step.action.id()
                ),
            },
            (false, false) => Verification::Alive {
                detail: format!(
                    "read back: the controls of `{}` on {what} are not in place",
                    step.action.id()
                ),
            },
            (true, true) => Verification::Alive {
                detail: format!("read back: {what} is restored to its snapshot"),
            },
            (true, false) => Verification::Dead {
                detail: format!("read back: {what} is not restored yet"),
            },
        })
    }

    /// A session cut-off read back in its usual form, the principal's inline policy
    /// (one read where the full view is four): `Some(Dead)` when this plan's cut-off is
    /// there, which is all the full view would conclude from; `None` (not there: another
    /// form at a quota, not in place yet, or not a cut-off step) leaves the answer to the
    /// full view.
    async fn cutoff_read_back(
        &self,
        ctx: &StepContext<'_>,
    ) -> Result<Option<Verification>, ConnectorError> {
        let target = &ctx.step.target;
        let p = match (ctx.step.action, target.kind.as_str()) {
            (Action::AwsRevokeUserSessions, "user") => Principal::User(&target.id),
            (Action::AwsRevokeRoleSessions, "role") => Principal::Role(&target.id),
            _ => return Ok(None),
        };
        let c = self.clients_for(target.account.as_deref()).await?;
        let Some(doc) = read_inline(&c, p, REVOKE_SESSIONS_POLICY_NAME).await? else {
            return Ok(None);
        };
        let mine = revoke_cutoff(&doc).is_some_and(|(_, sid)| sid == revoke_sid(ctx.plan_id));
        Ok(mine.then(|| Verification::Dead {
            detail: format!(
                "read back: the controls of `{}` on {} are in place",
                ctx.step.action.id(),
                target.display_name()
            ),
        }))
    }

    /// Sign a harmless read with the leaked key: refused means dead.
    async fn probe_leaked_key(
        &self,
        key_id: &str,
        secret: &cordon_connector::Secret,
        action: Action,
    ) -> Result<Verification, ConnectorError> {
        let leaked = self.leaked_key_client(key_id, secret, None);
        // A disabled key fails authentication on any call, even sts:GetCallerIdentity
        // (which no policy can deny); a quarantined user authenticates but is denied.
        let (op, result) = if action == Action::AwsDisableAccessKey {
            (
                "sts:GetCallerIdentity",
                leaked
                    .sts
                    .get_caller_identity()
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(coded("sts:GetCallerIdentity")),
            )
        } else {
            (
                "iam:GetUser",
                leaked
                    .iam
                    .get_user()
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(coded("iam:GetUser")),
            )
        };
        match result {
            Ok(()) => Ok(Verification::Alive {
                detail: format!("`{op}` signed with the leaked key `{key_id}` still succeeds"),
            }),
            Err((Some(code), _))
                if code == "InvalidClientTokenId" || code.starts_with("AccessDenied") =>
            {
                Ok(Verification::Dead {
                    detail: format!(
                        "`{op}` signed with the leaked key `{key_id}` is refused: {code}"
                    ),
                })
            }
            Err((Some(code), _)) if code == "SignatureDoesNotMatch" => {
                Ok(Verification::NotVerified {
                    detail: format!(
                        "the supplied secret does not belong to access key `{key_id}` \
                     (SignatureDoesNotMatch): supply the right secret, or verify without it"
                    ),
                })
            }
            Err((_, e)) => Err(e),
        }
    }
}

/// Whether the controls in scope match the snapshot. A deleted console password cannot
/// be put back (AWS never reveals it), so it does not count: restore reports it instead.
fn restored(now: &Controls, want: &Controls, params: &Params) -> bool {
    (!params.wants(CONTROL_QUARANTINE)
        || (now.quarantine_doc == want.quarantine_doc
            && now.deny_all_attached == want.deny_all_attached
            && now.in_quarantine_group == want.in_quarantine_group))
        && (!params.wants(CONTROL_MANAGED_V3) || now.managed_v3 == want.managed_v3)
        && (!params.wants(CONTROL_REVOKE_SESSIONS)
            || (now.revoke_doc == want.revoke_doc
                && now.revoke_managed == want.revoke_managed
                && now.revoke_group == want.revoke_group))
}

/// The longest a session of `p` lives: 36 hours for a user's `GetSessionToken` and
/// `GetFederationToken` sessions, the role's `MaxSessionDuration` (12 hours at most).
/// https://docs.aws.amazon.com/STS/latest/APIReference/API_GetSessionToken.html
fn max_session(p: Principal<'_>, snap: &Value) -> std::time::Duration {
    match p {
        Principal::User(_) => std::time::Duration::from_secs(36 * 3600),
        Principal::Role(_) => std::time::Duration::from_secs(
            snap.get("max_session_duration")
                .and_then(Value::as_u64)
                .unwrap_or(12 * 3600),
        ),
    }
}

fn parse_time(s: &str) -> Option<std::time::SystemTime> {
    aws_smithy_types::DateTime::from_str(s, aws_smithy_types::date_time::Format::DateTime)
        .ok()
        .and_then(|d| std::time::SystemTime::try_from(d).ok())
}

/// Why restoring now would re-enable sessions issued before containment (an attacker's),
/// or `None` when it would not. Removing a session cut-off revives the sessions issued
/// before it until they expire (cut-off + the longest session); removing a deny-all
/// revives every session issued before it, unless a cut-off stays in place. Unknown times
/// count as "too early": the restore then needs the explicit `revive_sessions`.
fn revives_sessions(
    p: Principal<'_>,
    now: &Controls,
    want: &Controls,
    params: &Params,
    taken_at: Option<&str>,
    snap: &Value,
    local_now: std::time::SystemTime,
) -> Option<String> {
    let longest = max_session(p, snap);
    let removes_cutoff = params.wants(CONTROL_REVOKE_SESSIONS)
        && ((now.revoke_doc.is_some() && now.revoke_doc != want.revoke_doc)
            || (now.revoke_managed.is_some() && now.revoke_managed != want.revoke_managed)
            || (now.revoke_group.is_some() && now.revoke_group != want.revoke_group));
    let removes_deny = (params.wants(CONTROL_QUARANTINE)
        && ((now.quarantine_doc.is_some() && want.quarantine_doc.is_none())
            || (now.deny_all_attached && !want.deny_all_attached)
            || (now.in_quarantine_group && !want.in_quarantine_group)))
        || (params.wants(CONTROL_MANAGED_V3) && now.managed_v3 && !want.managed_v3);
    let cutoff = now.cutoff();
    let taken = taken_at.and_then(parse_time);
    let (what, since) = if removes_cutoff {
        (
            format!(
                "removing the session cut-off of {} re-enables the sessions issued before `{}`",
                p.label(),
                cutoff.as_deref().unwrap_or("?")
            ),
            cutoff.as_deref().and_then(parse_time),
        )
    } else if removes_deny && !now.any_cutoff() {
        (
            format!(
                "removing the quarantine of {} re-enables every session issued before it,                  leaked ones included",
                p.label()
            ),
            taken,
        )
    } else {
        return None;
    };
    let until = since.map(|t| t + longest);
    if until.is_some_and(|u| u <= local_now) {
        return None;
    }
    let when = until
        .map(|u| {
            format!(
                "until {} (the longest session, {} h, after it)",
                crate::snapshot::fmt_time(&aws_smithy_types::DateTime::from(u)),
                longest.as_secs() / 3600
            )
        })
        .unwrap_or_else(|| "and cordon cannot tell when they expire".to_owned());
    Some(format!(
        "{what}, {when}: wait, or confirm with `cordon restore PLAN --revive-sessions` \
         (step param `revive_sessions: true`)"
    ))
}

async fn restore_controls(
    c: &AccountClients,
    p: Principal<'_>,
    now: &Controls,
    want: &Controls,
    params: &Params,
    changes: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Result<(), ConnectorError> {
    for (control, name, now_doc, want_doc) in [
        (
            CONTROL_QUARANTINE,
            QUARANTINE_POLICY_NAME,
            &now.quarantine_doc,
            &want.quarantine_doc,
        ),
        (
            CONTROL_REVOKE_SESSIONS,
            REVOKE_SESSIONS_POLICY_NAME,
            &now.revoke_doc,
            &want.revoke_doc,
        ),
    ] {
        if !params.wants(control) || now_doc == want_doc {
            continue;
        }
        match want_doc {
            None => {
                delete_inline(c, p, name).await?;
                changes.push(format!("removed inline policy `{name}` from {}", p.label()));
            }
            Some(doc) => {
                // The snapshot held an earlier version (a previous incident's): put it back.
                put_inline(c, p, name, &doc.to_string()).await?;
                changes.push(format!(
                    "put back the snapshot's inline policy `{name}` on {}",
                    p.label()
                ));
            }
        }
    }
    // The managed form of the cut-off (used at the inline quota): detached and deleted,
    // or an earlier incident's put back.
    if params.wants(CONTROL_REVOKE_SESSIONS) && now.revoke_managed != want.revoke_managed {
        if let Some(arn) = &now.revoke_managed {
            set_attached(c, p, arn, false).await?;
            changes.push(format!("detached `{arn}` from {}", p.label()));
            notes.extend(delete_managed_revoke(c, arn).await);
        }
        if let Some(arn) = &want.revoke_managed {
            set_attached(c, p, arn, true).await?;
            changes.push(format!(
                "re-attached the snapshot's `{arn}` to {}",
                p.label()
            ));
        }
    }
    // The group form (a user at both quotas): out of the group, deleted once empty, or an
    // earlier incident's membership put back.
    if let Principal::User(u) = p {
        if params.wants(CONTROL_REVOKE_SESSIONS) && now.revoke_group != want.revoke_group {
            if let Some(g) = &now.revoke_group {
                notes.extend(leave_revoke_group(c, g, u).await?);
                changes.push(format!(
                    "removed user `{u}` from group `{CORDON_POLICY_PATH}{g}` (its session \
                     cut-off)"
                ));
            }
            if let Some(g) = &want.revoke_group {
                match c
                    .iam
                    .add_user_to_group()
                    .group_name(g)
                    .user_name(u)
                    .send()
                    .await
                {
                    Ok(_) => changes.push(format!(
                        "put user `{u}` back in the snapshot's group `{CORDON_POLICY_PATH}{g}`"
                    )),
                    Err(e) if error_code(&e).is_some_and(|c| c.starts_with("NoSuchEntity")) => {
                        notes.push(format!(
                            "the snapshot's session cut-off group `{g}` of user `{u}` no longer \
                             exists: not put back"
                        ))
                    }
                    Err(e) => return Err(classify("iam:AddUserToGroup", &e)),
                }
            }
        }
    }
    if params.wants(CONTROL_QUARANTINE) && now.deny_all_attached != want.deny_all_attached {
        set_attached(c, p, AWS_DENY_ALL_POLICY_ARN, want.deny_all_attached).await?;
        changes.push(format!(
            "{} `{AWS_DENY_ALL_POLICY_ARN}` {} {}",
            if want.deny_all_attached {
                "re-attached"
            } else {
                "detached"
            },
            if want.deny_all_attached { "to" } else { "from" },
            p.label()
        ));
    }
    if let Principal::User(u) = p {
        if params.wants(CONTROL_QUARANTINE) && now.in_quarantine_group != want.in_quarantine_group {
            if want.in_quarantine_group {
                join_quarantine_group(c, u).await?;
            } else {
                leave_quarantine_group(c, u).await?;
            }
            changes.push(format!(
                "user `{u}` {} group `{QUARANTINE_GROUP_NAME}`",
                if want.in_quarantine_group {
                    "put back in"
                } else {
                    "removed from"
                }
            ));
        }
    }
    if params.wants(CONTROL_MANAGED_V3) && now.managed_v3 != want.managed_v3 {
        set_managed(c, p, want.managed_v3).await?;
        changes.push(format!(
            "{} `{MANAGED_QUARANTINE_POLICY_ARN}` {} {}",
            if want.managed_v3 {
                "re-attached"
            } else {
                "detached"
            },
            if want.managed_v3 { "to" } else { "from" },
            p.label()
        ));
    }
    if let Principal::User(u) = p {
        if params.wants(CONTROL_LOGIN_PROFILE) && want.login_profile && !now.login_profile {
            notes.push(format!(
                "the console password of user `{u}` was deleted at containment and cannot be \
                 restored (AWS never reveals a password): set a new one with `aws iam \
                 create-login-profile --user-name {u} --password-reset-required`"
            ));
        }
    }
    Ok(())
}

/// An IAM quota refused the change (`LimitExceeded`).
fn is_quota(e: &ConnectorError) -> bool {
    e.class == cordon_connector::ErrorClass::Permanent
        && e.message.contains("failed: LimitExceeded")
}

/// What a user quarantine reaches, said with every quarantine outcome.
fn quarantine_reach(mode: QuarantineMode, user: &str) -> String {
    match mode {
        QuarantineMode::InlineDeny => format!(
            "the deny-all refuses every request authorized by user `{user}`'s policies: its \
             other access keys, SSH public keys (CodeCommit), service-specific credentials, \
             signing certificates and sessions"
        ),
        QuarantineMode::ManagedV3 => format!(
            "partial: `{MANAGED_QUARANTINE_POLICY_ARN}` denies a list of high-risk actions, not \
             everything: user `{user}`'s keys and other credentials can still make every other \
             call; for a full deny run with `CORDON_AWS_QUARANTINE=inline-deny`"
        ),
    }
}

pub(crate) fn unsupported(action: Action) -> ConnectorError {
    ConnectorError::permanent(format!(
        "the AWS connector does not handle `{}`: route it to the `{}` connector",
        action.id(),
        action.provider().as_str()
    ))
}
