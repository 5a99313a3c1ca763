//! Evidence: read-only snapshots of an identity, taken before any change. A snapshot has
//! no secret in it (AWS never returns secret keys or passwords on these reads).

use aws_sdk_iam::primitives::{DateTime, DateTimeFormat};
use cordon_connector::ConnectorError;
use serde_json::{json, Map, Value};

use crate::client::AccountClients;
use crate::error::{classify, error_code};
use crate::policy::decode_document;

pub(crate) const SCHEMA: &str = "cordon-aws/1";

pub(crate) fn fmt_time(t: &DateTime) -> String {
    t.fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| t.secs().to_string())
}

pub(crate) fn now_rfc3339() -> String {
    fmt_time(&DateTime::from(std::time::SystemTime::now()))
}

fn tags_map<'a>(tags: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    let mut m = Map::new();
    for (k, v) in tags {
        m.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    Value::Object(m)
}

/// The owner of an access key and when, where and for what the key was last used.
pub(crate) struct KeyOwner {
    pub user: Option<String>,
    pub last_used: Value,
}

pub(crate) async fn key_owner(
    c: &AccountClients,
    key_id: &str,
) -> Result<KeyOwner, ConnectorError> {
    let out = c
        .iam
        .get_access_key_last_used()
        .access_key_id(key_id)
        .send()
        .await
        .map_err(|e| {
            if matches!(
                error_code(&e),
                Some("NoSuchEntity" | "NoSuchEntityException")
            ) {
                ConnectorError::permanent(format!(
                    "access key `{key_id}` does not exist in account `{}`: it may have been \
                     deleted, or it belongs to another account (check the target's account)",
                    c.account
                ))
            } else {
                classify("iam:GetAccessKeyLastUsed", &e)
            }
        })?;
    let last_used = match out.access_key_last_used() {
        Some(lu) => json!({
            "date": lu.last_used_date().map(fmt_time),
            "service": lu.service_name(),
            "region": lu.region(),
        }),
        None => Value::Null,
    };
    Ok(KeyOwner {
        user: out.user_name().map(str::to_owned),
        last_used,
    })
}

/// Everything about a user that a containment or its restore may touch or need.
pub(crate) async fn user_snapshot(c: &AccountClients, user: &str) -> Result<Value, ConnectorError> {
    let iam = &c.iam;
    let got = iam
        .get_user()
        .user_name(user)
        .send()
        .await
        .map_err(|e| not_found_or(&e, "iam:GetUser", "user", user, &c.account))?;
    let u = got.user().ok_or_else(|| {
        ConnectorError::permanent(format!("`iam:GetUser` returned no user for `{user}`"))
    })?;

    // The reads after GetUser do not depend on each other: issued together,
    // a snapshot costs four round trips instead of ten (the same calls).
    let keys = async {
        let listed = iam
            .list_access_keys()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| classify("iam:ListAccessKeys", &e))?;
        let mut keys = Vec::new();
        for k in listed {
            let id = k.access_key_id().unwrap_or_default().to_owned();
            let owner = key_owner(c, &id).await?;
            keys.push(json!({
                "access_key_id": id,
                "status": k.status().map(|s| s.as_str()),
                "create_date": k.create_date().map(fmt_time),
                "last_used": owner.last_used,
            }));
        }
        Ok::<_, ConnectorError>(keys)
    };

    let inline = async {
        let names = iam
            .list_user_policies()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| classify("iam:ListUserPolicies", &e))?;
        let mut inline = Vec::new();
        for name in names {
            let p = iam
                .get_user_policy()
                .user_name(user)
                .policy_name(&name)
                .send()
                .await
                .map_err(|e| classify("iam:GetUserPolicy", &e))?;
            inline.push(json!({ "name": name, "document": decode_document(p.policy_document()) }));
        }
        Ok::<_, ConnectorError>(inline)
    };

    let attached = async {
        Ok::<_, ConnectorError>(
            iam.list_attached_user_policies()
                .user_name(user)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(|e| classify("iam:ListAttachedUserPolicies", &e))?
                .iter()
                .map(|p| json!({ "name": p.policy_name(), "arn": p.policy_arn() }))
                .collect::<Vec<Value>>(),
        )
    };

    let groups = async {
        Ok::<_, ConnectorError>(
            iam.list_groups_for_user()
                .user_name(user)
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .map_err(|e| classify("iam:ListGroupsForUser", &e))?
                .iter()
                .map(|g| json!({ "name": g.group_name(), "arn": g.arn() }))
                .collect::<Vec<Value>>(),
        )
    };

    let login_profile = async {
        match iam.get_login_profile().user_name(user).send().await {
            Ok(out) => Ok(match out.login_profile() {
                Some(lp) => json!({
                    "create_date": fmt_time(lp.create_date()),
                    "password_reset_required": lp.password_reset_required(),
                }),
                None => Value::Null,
            }),
            Err(e)
                if matches!(
                    error_code(&e),
                    Some("NoSuchEntity" | "NoSuchEntityException")
                ) =>
            {
                Ok(Value::Null)
            }
            Err(e) => Err(classify("iam:GetLoginProfile", &e)),
        }
    };

    let tags = async {
        iam.list_user_tags()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| classify("iam:ListUserTags", &e))
    };

    let (keys, inline, attached, groups, login_profile, tags) =
        tokio::try_join!(keys, inline, attached, groups, login_profile, tags)?;

    Ok(json!({
        "name": u.user_name(),
        "arn": u.arn(),
        "user_id": u.user_id(),
        "path": u.path(),
        "create_date": fmt_time(u.create_date()),
        "password_last_used": u.password_last_used().map(fmt_time),
        "access_keys": keys,
        "inline_policies": inline,
        "attached_policies": attached,
        "groups": groups,
        "login_profile": login_profile,
        "tags": tags_map(tags.iter().map(|t| (t.key(), t.value()))),
    }))
}

/// Everything about a role that a containment or its restore may touch or need.
pub(crate) async fn role_snapshot(c: &AccountClients, role: &str) -> Result<Value, ConnectorError> {
    let iam = &c.iam;
    let got = iam
        .get_role()
        .role_name(role)
        .send()
        .await
        .map_err(|e| not_found_or(&e, "iam:GetRole", "role", role, &c.account))?;
    let r = got.role().ok_or_else(|| {
        ConnectorError::permanent(format!("`iam:GetRole` returned no role for `{role}`"))
    })?;

    let mut inline = Vec::new();
    let names = iam
        .list_role_policies()
        .role_name(role)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| classify("iam:ListRolePolicies", &e))?;
    for name in names {
        let p = iam
            .get_role_policy()
            .role_name(role)
            .policy_name(&name)
            .send()
            .await
            .map_err(|e| classify("iam:GetRolePolicy", &e))?;
        inline.push(json!({ "name": name, "document": decode_document(p.policy_document()) }));
    }

    let attached: Vec<Value> = iam
        .list_attached_role_policies()
        .role_name(role)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| classify("iam:ListAttachedRolePolicies", &e))?
        .iter()
        .map(|p| json!({ "name": p.policy_name(), "arn": p.policy_arn() }))
        .collect();

    let tags = iam
        .list_role_tags()
        .role_name(role)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| classify("iam:ListRoleTags", &e))?;

    Ok(json!({
        "name": r.role_name(),
        "arn": r.arn(),
        "role_id": r.role_id(),
        "path": r.path(),
        "create_date": fmt_time(r.create_date()),
        "max_session_duration": r.max_session_duration(),
        "trust_policy": r.assume_role_policy_document().map(decode_document),
        "last_used": r.role_last_used().map(|lu| json!({
            "date": lu.last_used_date().map(fmt_time),
            "region": lu.region(),
        })),
        "inline_policies": inline,
        "attached_policies": attached,
        "tags": tags_map(tags.iter().map(|t| (t.key(), t.value()))),
    }))
}

fn not_found_or<E>(
    e: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
    op: &str,
    what: &str,
    name: &str,
    account: &str,
) -> ConnectorError
where
    E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + 'static,
{
    if matches!(
        error_code(e),
        Some("NoSuchEntity" | "NoSuchEntityException")
    ) {
        ConnectorError::permanent(format!(
            "IAM {what} `{name}` does not exist in account `{account}`: check the target's name and account"
        ))
    } else {
        classify(op, e)
    }
}

/// Small readers over a snapshot's JSON.
pub(crate) fn inline_policy<'a>(snapshot: &'a Value, name: &str) -> Option<&'a Value> {
    snapshot
        .get("inline_policies")?
        .as_array()?
        .iter()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|p| p.get("document"))
}

pub(crate) fn has_attached(snapshot: &Value, arn: &str) -> bool {
    snapshot
        .get("attached_policies")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .any(|p| p.get("arn").and_then(Value::as_str) == Some(arn))
        })
}

pub(crate) fn has_login_profile(snapshot: &Value) -> bool {
    snapshot.get("login_profile").is_some_and(|v| !v.is_null())
}

pub(crate) fn key_status<'a>(snapshot: &'a Value, key_id: &str) -> Option<&'a str> {
    snapshot
        .get("access_keys")?
        .as_array()?
        .iter()
        .find(|k| k.get("access_key_id").and_then(Value::as_str) == Some(key_id))?
        .get("status")?
        .as_str()
}
