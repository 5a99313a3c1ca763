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
        let mut keys = Vec::new();
        for k in access_key_metadata(c, user).await? {
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
    let other = other_credentials(c, user).await;

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
        "ssh_public_keys": other.ssh_public_keys,
        "service_specific_credentials": other.service_specific_credentials,
        "signing_certificates": other.signing_certificates,
        "tags": tags_map(tags.iter().map(|t| (t.key(), t.value()))),
    }))
}

/// A user's credentials besides access keys and the console password. Each list is JSON
/// (`[{id, status, ...}]`), or `{"error": ...}` when it could not be read: a missing read
/// permission (or a peer that lacks the call) is said, and never blocks containment.
pub(crate) struct OtherCredentials {
    pub ssh_public_keys: Value,
    pub service_specific_credentials: Value,
    pub signing_certificates: Value,
}

pub(crate) async fn other_credentials(c: &AccountClients, user: &str) -> OtherCredentials {
    let iam = &c.iam;
    let ssh = async {
        match iam
            .list_ssh_public_keys()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
        {
            Ok(keys) => Value::Array(
                keys.iter()
                    .map(|k| {
                        json!({
                            "id": k.ssh_public_key_id(),
                            "status": k.status().as_str(),
                            "upload_date": fmt_time(k.upload_date()),
                        })
                    })
                    .collect(),
            ),
            Err(e) => json!({ "error": classify("iam:ListSSHPublicKeys", &e).message }),
        }
    };
    let service = async {
        match iam
            .list_service_specific_credentials()
            .user_name(user)
            .send()
            .await
        {
            Ok(out) => Value::Array(
                out.service_specific_credentials()
                    .iter()
                    .map(|k| {
                        json!({
                            "id": k.service_specific_credential_id(),
                            "service": k.service_name(),
                            "service_user_name": k.service_user_name(),
                            "status": k.status().as_str(),
                            "create_date": fmt_time(k.create_date()),
                        })
                    })
                    .collect(),
            ),
            Err(e) => {
                json!({ "error": classify("iam:ListServiceSpecificCredentials", &e).message })
            }
        }
    };
    let certs = async {
        match iam
            .list_signing_certificates()
            .user_name(user)
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
        {
            Ok(certs) => Value::Array(
                certs
                    .iter()
                    .map(|k| {
                        json!({
                            "id": k.certificate_id(),
                            "status": k.status().as_str(),
                            "upload_date": k.upload_date().map(fmt_time),
                        })
                    })
                    .collect(),
            ),
            Err(e) => json!({ "error": classify("iam:ListSigningCertificates", &e).message }),
        }
    };
    let (ssh_public_keys, service_specific_credentials, signing_certificates) =
        tokio::join!(ssh, service, certs);
    OtherCredentials {
        ssh_public_keys,
        service_specific_credentials,
        signing_certificates,
    }
}

/// The credentials of `user` only (keys, console password, the others), in the shape of
/// [`user_snapshot`] (with `"view": "credentials"`): the evidence of a key's kill and the
/// source of [`alive_beside`]. One round trip (the reads run together), where a full
/// snapshot is four; no policies, groups or last use (the user's own steps read those).
/// Only the access-key list is required: the others are said as `{"error": ...}` when
/// they cannot be read, and never stop the kill.
pub(crate) async fn credentials_snapshot(
    c: &AccountClients,
    user: &str,
) -> Result<Value, ConnectorError> {
    let iam = &c.iam;
    let login = async {
        match iam.get_login_profile().user_name(user).send().await {
            Ok(out) => match out.login_profile() {
                Some(lp) => json!({ "create_date": fmt_time(lp.create_date()) }),
                None => json!({}),
            },
            Err(e)
                if matches!(
                    error_code(&e),
                    Some("NoSuchEntity" | "NoSuchEntityException")
                ) =>
            {
                Value::Null
            }
            Err(e) => json!({ "error": classify("iam:GetLoginProfile", &e).message }),
        }
    };
    let (keys, login, other) = tokio::join!(list_keys(c, user), login, other_credentials(c, user));
    Ok(json!({
        "name": user,
        "view": "credentials",
        "access_keys": keys?,
        "login_profile": login,
        "ssh_public_keys": other.ssh_public_keys,
        "service_specific_credentials": other.service_specific_credentials,
        "signing_certificates": other.signing_certificates,
    }))
}

/// The access keys of `user` only, in the shape of [`credentials_snapshot`] (with
/// `"view": "access-keys"`): the evidence of a key's kill when the same plan quarantines
/// the user, whose snapshot reads the user's other credentials (one read where the
/// credentials view is five).
pub(crate) async fn access_keys_snapshot(
    c: &AccountClients,
    user: &str,
) -> Result<Value, ConnectorError> {
    Ok(json!({
        "name": user,
        "view": "access-keys",
        "access_keys": list_keys(c, user).await?,
    }))
}

/// One user's access-key list in flight, by account and user.
type InFlight = std::collections::HashMap<
    (String, String),
    std::sync::Arc<tokio::sync::OnceCell<Result<Value, ConnectorError>>>,
>;

/// Reads of a user's access keys in flight, shared (issue 19): the kills of two keys of
/// one user start together, and the one `ListAccessKeys` that one of them started serves
/// both as the state of each key before its change. A read is shared only while it is in
/// flight (it leaves the table before it answers, so a kill that starts later reads
/// afresh) and only between evidence snapshots (never a read-back): every step's evidence
/// is a read that was under way when the step asked for it and that answered before the
/// step's change, as its own read would have.
#[derive(Default)]
pub(crate) struct KeyLists {
    inflight: std::sync::Arc<std::sync::Mutex<InFlight>>,
}

impl KeyLists {
    fn table(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.inflight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// [`access_keys_snapshot`], joined to the read of the same user in flight if any.
    pub(crate) async fn read(
        &self,
        c: &AccountClients,
        user: &str,
    ) -> Result<Value, ConnectorError> {
        let key = (c.account.clone(), user.to_owned());
        let cell = self.table().entry(key.clone()).or_default().clone();
        cell.get_or_init(|| async {
            let read = access_keys_snapshot(c, user).await;
            let mut table = self.table();
            if table
                .get(&key)
                .is_some_and(|now| std::sync::Arc::ptr_eq(now, &cell))
            {
                table.remove(&key);
            }
            read
        })
        .await
        .clone()
    }
}

/// Every page of `iam:ListAccessKeys` for `user`.
pub(crate) async fn access_key_metadata(
    c: &AccountClients,
    user: &str,
) -> Result<Vec<aws_sdk_iam::types::AccessKeyMetadata>, ConnectorError> {
    c.iam
        .list_access_keys()
        .user_name(user)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .map_err(|e| classify("iam:ListAccessKeys", &e))
}

async fn list_keys(c: &AccountClients, user: &str) -> Result<Vec<Value>, ConnectorError> {
    Ok(access_key_metadata(c, user)
        .await?
        .iter()
        .map(|k| {
            json!({
                "access_key_id": k.access_key_id(),
                "status": k.status().map(|s| s.as_str()),
                "create_date": k.create_date().map(fmt_time),
            })
        })
        .collect())
}

/// What still lets someone act as `user` besides `except_key`, one plain sentence each
/// with the command or call that ends it, read from a user snapshot.
pub(crate) fn alive_beside(snap: &Value, user: &str, except_key: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    let active = |v: &Value| v.get("status").and_then(Value::as_str) == Some("Active");
    for k in snap
        .get("access_keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = k.get("access_key_id").and_then(Value::as_str).unwrap_or("");
        if Some(id) != except_key && active(k) {
            out.push(format!(
                "the user's other access key `{id}` is still active: `cordon revoke aws-key {id}`"
            ));
        }
    }
    match snap.get("login_profile") {
        Some(Value::Object(p)) if p.contains_key("error") => {
            out.push(format!(
            "unverified: cordon could not read whether user `{user}` has a console password ({})",
            p.get("error").and_then(Value::as_str).unwrap_or("no answer")
        ))
        }
        Some(p) if !p.is_null() => out.push(format!(
            "user `{user}` still has a console password: `cordon quarantine aws-user {user}` \
             (deletes it), or `aws iam delete-login-profile --user-name {user}`"
        )),
        _ => {}
    }
    let lists: [(&str, &str, &str); 3] = [
        (
            "ssh_public_keys",
            "SSH public key (CodeCommit)",
            "aws iam update-ssh-public-key --user-name {user} --ssh-public-key-id {id} --status Inactive",
        ),
        (
            "service_specific_credentials",
            "service-specific credential",
            "aws iam update-service-specific-credential --user-name {user} --service-specific-credential-id {id} --status Inactive",
        ),
        (
            "signing_certificates",
            "signing certificate",
            "aws iam update-signing-certificate --user-name {user} --certificate-id {id} --status Inactive",
        ),
    ];
    for (field, what, fix) in lists {
        match snap.get(field) {
            Some(Value::Array(items)) => {
                for item in items.iter().filter(|i| active(i)) {
                    let id = item.get("id").and_then(Value::as_str).unwrap_or("");
                    let service = item
                        .get("service")
                        .and_then(Value::as_str)
                        .map(|s| format!(" for `{s}`"))
                        .unwrap_or_default();
                    out.push(format!(
                        "{what} `{id}`{service} of user `{user}` is still active: `{}`",
                        fix.replace("{user}", user).replace("{id}", id)
                    ));
                }
            }
            Some(Value::Object(e)) => out.push(format!(
                "unverified: cordon could not list the {what}s of user `{user}` ({})",
                e.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no answer")
            )),
            _ => {}
        }
    }
    out
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

pub(crate) fn not_found_or<E>(
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
